"""The importance-weighted (IWAE) and Rényi bounds, per data point, under minibatches.

Pyro's ``RenyiELBO`` computes the bound's log-mean-exp over particles from the *scaled*
log-densities: under ``pyro.plate("data", N, subsample=…)`` with B of the N points its loss is
−Σ_i log (1/K) Σ_k w_ik^{N/B}, which is neither the bound nor an unbiased estimate of it, and its
gradient pushes q away from p(z|x) (docs/design/pyro-renyi-subsampling.md). ``Renyi_ELBO`` below
keeps Pyro's interface and scales outside the log-mean-exp.
"""
import math

import torch
from pyro.infer import RenyiELBO

from experiments.estimators.surrogate import DifferentiableLossMixin
from experiments.estimators.traits import EstimatorTraits
from experiments.estimators.weights import particle_log_weights


class Renyi_ELBO(DifferentiableLossMixin, EstimatorTraits, RenyiELBO):
    """The Rényi α bound (Li & Turner 2016), estimated per data point and scaled after:

        L_α(x_i) = 1/(1 − α) · log (1/K) Σ_k w_ik^{1−α},   w_ik = p_θ(x_i, z_ik) / q_φ(z_ik|x_i),
        loss     = −(N/B) Σ_{i in the minibatch} L_α(x_i),

    an unbiased estimate of −Σ_{i=1}^N E[L_α(x_i)] (α = 0: the IWAE bound; K = 1 or α → 1: the
    ELBO). The loss is one differentiable tensor (``differentiable_loss``): with reparameterized
    z_ik its gradient is the bound's, Σ_k w̃_ik ∇ log w_ik with w̃_ik = softmax_k((1 − α) log w_ik).
    Every guide site must be reparameterized (``ValueError`` otherwise), every sample site must
    lie in the data plate ``"data"``, and all sites must share the plate's scale N/B.

    :param float alpha: the order α ≠ 1.
    :param int num_particles: K, the samples of z per data point.

    References

    [1] `Rényi Divergence Variational Inference`, Yingzhen Li, Richard E. Turner (NeurIPS 2016)

    [2] `Importance Weighted Autoencoders`, Yuri Burda, Roger Grosse, Ruslan Salakhutdinov
        (ICLR 2016)
    """

    reparameterized = True
    k_sample = True
    bound = "Rényi bound"

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """−(N/B) Σ_i L_α(x_i), as a tensor whose gradient is the bound's."""
        log_w, scale = particle_log_weights(self, model, guide, args, kwargs)    # (K, B)
        loss = -scale * self.point_bounds(log_w).sum()
        return loss

    def point_bounds(self, log_w: torch.Tensor) -> torch.Tensor:
        """L_α(x_i) from log w of shape (K, B): shape (B,)."""
        k = log_w.shape[0]
        return (torch.logsumexp((1 - self.alpha) * log_w, 0) - math.log(k)) / (1 - self.alpha)


class IWAE_ELBO(Renyi_ELBO):
    """The importance-weighted bound (Burda et al. 2016): ``Renyi_ELBO`` at α = 0.

        L_K(x_i) = log (1/K) Σ_k w_ik,   ELBO = L_1 ≤ L_K ≤ L_{K+1} ≤ log p(x_i),

    per data point, the minibatch's sum scaled by N/B outside the log-mean-exp.
    """

    bound = "IWAE bound"

    def __init__(self, num_particles=2, max_plate_nesting=float("inf"),
                 vectorize_particles=False, strict_enumeration_warning=True):
        super().__init__(alpha=0.0, num_particles=num_particles,
                         max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles,
                         strict_enumeration_warning=strict_enumeration_warning)

