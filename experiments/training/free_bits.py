"""Free bits (``--free-bits λ``, Kingma et al. 2016): no pressure on a latent unit to carry less
than λ nats.

The training objective becomes, per dimension j of z and with KL̄_j the minibatch's mean
KL(q(z_j|x) ‖ p(z_j)) (in closed form, for a diagonal Gaussian q and a factorized Gaussian p),

    E_q[log p(x|z)] − Σ_j max(λ, KL̄_j)
      = ELBO + Σ_j min(0, KL̄_j − λ),

so a unit below λ nats feels no gradient from the KL term and the others feel it fully. The
second form is how it is trained: the chosen estimator's ELBO plus a ``pyro.factor`` of
N · Σ_j min(0, KL̄_j − λ) added to the model (N the data set's size, as the data plate scales
the ELBO of a minibatch to the data set). Only training sees it: every test number is the
plain bound, and ``experiments.parts.compatibility.free_bits_error`` refuses the guides,
priors and estimators it does not fit.
"""
import pyro
import torch

from experiments.parts.kl_per_unit import kl_per_point_and_dimension


class FreeBitsModel:
    """``model`` with the free-bits correction of ``guide``'s q(z|x) at λ = ``free_bits``; what
    the training loop reads of a model (``takes_labels``, …) is the model's own."""

    def __init__(self, model, guide, free_bits: float):
        self.model, self.guide, self.free_bits = model, guide, free_bits

    def __call__(self, x: torch.Tensor, index=None, num_data=None) -> None:
        self.model(x, index, num_data)
        kl = kl_per_point_and_dimension(self.guide.posterior(x), self.model.prior(x)).mean(0)
        correction = (kl - kl.clamp(min=self.free_bits)).sum()       # Σ_j min(0, KL̄_j − λ)
        pyro.factor("free_bits", (num_data or len(x)) * correction, has_rsample=True)

    def __getattr__(self, name: str):
        return getattr(self.model, name)
