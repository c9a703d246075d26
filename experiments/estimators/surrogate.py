"""ELBOs whose value and gradient come from one differentiable tensor."""
import torch


class DifferentiableLossMixin:
    """Listed before a Pyro ELBO among a class's bases, derives ``loss`` and ``loss_and_grads``
    from the class's ``differentiable_loss``: a tensor whose value is the loss and whose
    gradient is the estimator's. Any training loop can then call ``backward`` on it itself (a
    distributed one too); ``SVI`` calls ``loss_and_grads``."""

    def loss(self, model, guide, *args, **kwargs):
        """The loss, as a number."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The loss as a number, after accumulating its gradient in the parameters' ``.grad``."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return loss.item()
