"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015): log p(x) sandwiched between two
AIS runs on data simulated from the model itself.

Drawing (z_i, x_i) ~ p(z) p(x|z) gives, for each simulated x_i, an exact sample z_i of its
posterior p(z|x_i). Forward AIS from the base to p(x, z) is a stochastic lower bound on
log p(x_i); reverse AIS, started at z_i and annealed back to the base, a stochastic upper bound
(``experiments.evaluation.ais``). Both tighten as the number of steps grows, so the gap

    upper − lower ≥ E[log p(x)] − E[lower]     (the forward bound's own error, at most)

is a certificate of how far the forward estimate can be from the truth on data like the
model's, which no lower bound alone (IWAE, AIS) can give. All C reverse chains of a point start
from its one exact sample: each chain's weight is still an unbiased estimate of 1/p(x_i).

Reference: Grosse, Ghahramani & Adams (2015) Sandwiching the marginal likelihood using
bidirectional Monte Carlo; Wu et al. (2017) use it to validate AIS on decoder-based models.
"""
from dataclasses import dataclass
from typing import Tuple

import torch
from pyro import poutine

from experiments.common.rng import isolated_rng
from experiments.evaluation.ais import AISEstimate, Latents, ais_estimate
from experiments.evaluation.likelihood import EVAL_SEED


@dataclass
class Sandwich:
    """The forward (``lower``) and reverse (``upper``) AIS estimates of the mean log p(x) over the
    simulated points ``x``, whose exact posterior samples are ``z``."""

    lower: AISEstimate
    upper: AISEstimate
    x: torch.Tensor
    z: Latents

    @property
    def gap(self) -> float:
        """upper − lower, nats per point: the bound on the forward estimate's error."""
        return self.upper.value - self.lower.value


def simulate(model, num_points: int, seed: int = EVAL_SEED) -> Tuple[torch.Tensor, Latents]:
    """``num_points`` draws (x_i, z_i) ~ p(z) p(x|z) of ``model`` by ancestral sampling, from a
    seeded stream: x (N, D) and {site: (N, size)}."""
    like = model.like(None)
    with torch.no_grad(), isolated_rng(seed, like.device):
        trace = poutine.trace(model).get_trace(None, None, num_points)
    z = {name: trace.nodes[name]["value"] for name in model.latent_sites}
    return trace.nodes["x"]["value"], z


def bdmc(model, guide, num_points: int = 100, num_steps: int = 500, num_chains: int = 16, *,
         seed: int = EVAL_SEED, **options) -> Sandwich:
    """Forward and reverse AIS (``ais_estimate`` with ``options``: base, leapfrog_steps,
    progress, …) on ``num_points`` points simulated from ``model``."""
    x, z = simulate(model, num_points, seed)
    lower = ais_estimate(model, guide, x, num_steps, num_chains, seed=seed, **options)
    upper = ais_estimate(model, guide, x, num_steps, num_chains, seed=seed, start=z, **options)
    return Sandwich(lower, upper, x, z)
