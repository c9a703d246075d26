"""ELBOs whose value and gradient come from one differentiable tensor."""
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.trace_elbo import _compute_log_r
from pyro.infer.trace_mean_field_elbo import check_fully_reparametrized
from pyro.infer.util import is_identically_zero, is_validation_enabled
from torch.distributions import kl_divergence


class DifferentiableLossMixin:
    """Listed before a Pyro ELBO among a class's bases, derives ``loss`` and ``loss_and_grads``
    from the class's ``differentiable_loss``: a tensor whose value is the loss and whose
    gradient is the estimator's. Any training loop can then call ``backward`` on it itself (a
    distributed one too); ``SVI`` calls ``loss_and_grads``.

    The loss is a pure function of the tensors of model and guide: it never reads a value back
    into Python (no ``.item()``, no ``warn_if_nan``), so a training step can be recorded once and
    replayed (``experiments.recording``); the training loop checks that the loss is finite."""

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


class TensorTrace_ELBO(DifferentiableLossMixin, Trace_ELBO):
    """Pyro's ``Trace_ELBO``, its loss one tensor: the same value and the same gradient.

    With K particles, per particle k (Pyro's terms, in the seeds' notation)

        loss_k      = −[Σ_model sites log p(·) − Σ_guide sites log q(·)]   = −log w_k
        surrogate_k = −[Σ_model log p − Σ_guide (entropy term) + Σ_guide (log r · score term)]

    with the score-function terms only at sites that are not reparameterized (log r the
    downstream cost Pyro's ``_compute_log_r`` gives); the result is
    ``surrogate + (loss − surrogate).detach()`` with loss = (1/K) Σ_k loss_k and likewise the
    surrogate: −ELBO's estimate as its value, the surrogate's gradient.

    Pyro 1.9 adds up the loss from every site's log-density turned into a Python number
    (``torch_item``) and subtracts the surrogate's number at the end: a device synchronization
    per site, and numbers a recording of the step would freeze. Reproduction::

        from torch.fx.experimental.proxy_tensor import make_fx
        make_fx(lambda x: Trace_ELBO().differentiable_loss(model, guide, x))(x)
        # RuntimeError: … get value out of a tracing tensor with aten._local_scalar_dense
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss, surrogate = 0.0, 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle_loss, particle_surrogate = self._differentiable_loss_particle(
                model_trace, guide_trace)
            loss = loss + particle_loss / self.num_particles
            surrogate = surrogate + particle_surrogate / self.num_particles
        surrogate = torch.as_tensor(surrogate)
        return surrogate + (loss - surrogate).detach()

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        """(loss_k, surrogate_k) of one particle, both tensors (Pyro's code, without
        ``torch_item``)."""
        elbo, surrogate_elbo, log_r = 0.0, 0.0, None
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo + site["log_prob_sum"]
                surrogate_elbo = surrogate_elbo + site["log_prob_sum"]
        for site in guide_trace.nodes.values():
            if site["type"] == "sample":
                _, score_function_term, entropy_term = site["score_parts"]
                elbo = elbo - site["log_prob_sum"]
                if not is_identically_zero(entropy_term):
                    surrogate_elbo = surrogate_elbo - entropy_term.sum()
                if not is_identically_zero(score_function_term):
                    if log_r is None:
                        log_r = _compute_log_r(model_trace, guide_trace)
                    downstream = log_r.sum_to(site["cond_indep_stack"])
                    surrogate_elbo = surrogate_elbo + (downstream * score_function_term).sum()
        return -elbo, -surrogate_elbo


class TensorMeanField_ELBO(TensorTrace_ELBO, TraceMeanField_ELBO):
    """Pyro's ``TraceMeanField_ELBO``, its loss one tensor: per particle

        ELBO_k = Σ_observed log p(x|·) − Σ_latent KL(q(z|x) ‖ p(z|·))

    with each KL in closed form where PyTorch has one, else sampled (log p − log q at z_k), and
    the guide's auxiliary sites' −log q. Every site is reparameterized, so the loss and the
    surrogate are one tensor. Pyro 1.9 turns each particle's ELBO into a Python number
    (``torch_item``) unless ``torch.jit`` is tracing; this is its code without that."""

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        elbo = 0.0
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                elbo = elbo + model_site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            if is_validation_enabled():
                check_fully_reparametrized(guide_site)
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
            except NotImplementedError:
                elbo = elbo + model_site["log_prob_sum"] - \
                    guide_site["score_parts"].entropy_term.sum()
                continue
            kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
            elbo = elbo - (kl.sum() if torch.is_tensor(kl) else
                           kl * torch.Size(guide_site["fn"].batch_shape).numel())
        for name, guide_site in guide_trace.nodes.items():
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                if is_validation_enabled():
                    check_fully_reparametrized(guide_site)
                elbo = elbo - guide_site["score_parts"].entropy_term.sum()
        return -elbo, -elbo
