"""Fit free per-point variational parameters for a fixed model: the non-amortized optimum.

    (m_i*, s_i*) = argmax_{m_i, s_i} ELBO(x_i; θ),   q(z_i) = N(m_i, diag s_i²),   θ fixed

A non-amortized (``local``) guide holds parameters only for its training points, so its test
numbers come from such a fit on the test set; started from an encoder's output, the same fit
measures how far amortization falls short (the amortization gap).
"""
from typing import Union

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from experiments.common.rng import isolated_rng
from experiments.evaluation.likelihood import EVAL_SEED
from guides.base import AmortizedGuide
from models.base import LatentVariableModel
from models.plates import data_plate


class FittedLocalPosterior:
    """A guide with fixed tensors, q(z_i) = N(z_i | m_i, diag s_i²) for the i-th row of the
    data it was fitted on. It holds no Pyro parameters, so it can sit beside a training guide
    without touching Pyro's parameter store."""

    def __init__(self, site: str, loc: torch.Tensor, scale: torch.Tensor):
        self.site, self.loc, self.scale = site, loc, scale

    def posterior(self, index: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(self.loc[index], self.scale[index]).to_event(1)

    def __call__(self, x: torch.Tensor, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data) as index:
            pyro.sample(self.site, self.posterior(index))


def fit_local_posterior(model: LatentVariableModel, x: torch.Tensor, steps: int = 300,
                        lr: float = 0.02, num_particles: int = 8,
                        init: Union[None, AmortizedGuide, FittedLocalPosterior] = None,
                        seed: int = EVAL_SEED) -> FittedLocalPosterior:
    """q(z_i) for every row of ``x`` after ``steps`` Adam steps on Σ_i ELBO(x_i), each step
    estimated with K = ``num_particles`` reparameterized samples z_ik = m_i + s_i ε_ik, started
    at N(0, I), at an encoder's q(z|x_i), or where an earlier fit ended.

    Only (m, log s) move: the model is scored by conditioning it on z, and gradients are taken
    with respect to (m, log s) alone, so the model's parameters, their ``.grad`` and the
    training random stream stay untouched.
    """
    if len(model.latent_sites) != 1:
        raise ValueError(f"a per-point q(z_i) is fitted for one latent site, and the model has "
                         f"{len(model.latent_sites)} ({', '.join(model.latent_sites)})")
    (site,) = model.latent_sites.values()
    with torch.no_grad():
        if init is None:
            loc, scale = x.new_zeros(len(x), site.size), x.new_ones(len(x), site.size)
        else:
            start = init.posterior(torch.arange(len(x), device=x.device)
                                   if isinstance(init, FittedLocalPosterior) else x)
            loc, scale = start.base_dist.loc.clone(), start.base_dist.scale.clone()   # (N, d)
    loc, log_scale = loc.requires_grad_(), scale.log().requires_grad_()
    optimizer = torch.optim.Adam([loc, log_scale], lr=lr)
    with isolated_rng(seed, x.device):
        for _ in range(steps):
            q = dist.Normal(loc, log_scale.exp()).to_event(1)
            z = q.rsample((num_particles,))                                      # (K, N, d)
            with pyro.plate("particles", num_particles, dim=-(model.max_plate_nesting + 1)):
                joint = poutine.trace(poutine.condition(model, data={site.name: z})).get_trace(x)
            loss = (q.log_prob(z).sum() - joint.log_prob_sum()) / num_particles
            loc.grad, log_scale.grad = torch.autograd.grad(loss, [loc, log_scale])
            optimizer.step()
    return FittedLocalPosterior(site.name, loc.detach(), log_scale.detach().exp())
