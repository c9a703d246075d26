"""Posterior collapse layer by layer, for a hierarchy of two continuous latent layers (the hvae:
z₂ ~ p(z₂) = N(0, I), z₁ ~ p(z₁|z₂), x ~ p(x|z₁); guide q(z₁|x) q(z₂|z₁)).

Every number is a Monte Carlo average over S draws z₁ˢ ~ q(z₁|x_n) per test point (and, in
layer 1, the draw z₂ˢ ~ q(z₂|z₁ˢ) that goes with each):

    active units   A_l = #{j : Cov_x(E_q[z_l,j | x]) > 0.01},
                   E_q[z₁|x] in closed form, E_q[z₂|x] = E_{z₁~q(z₁|x)} E_q[z₂|z₁]
    KL per unit    layer 2: KL₂,j = (1/N) Σ_n E_{z₁~q(z₁|x_n)}[KL(q(z₂,j|z₁) ‖ N(0, 1))]
                   layer 1: KL₁,j = (1/N) Σ_n E_{q(z₁,z₂|x_n)}[log q(z₁,j|x_n) − log p(z₁,j|z₂)]

(q and p(z₁|z₂) diagonal Gaussians), so Σ_j KL₁,j + Σ_j KL₂,j is the mean KL term of the ELBO,
(1/N) Σ_n E_q[log q(z₁, z₂|x_n) − log p(z₁|z₂) − log p(z₂)].

The ELBO surgery of the top layer: p(z₂) is one prior for all points, and the layer-2 KL term
splits as (Hoffman & Johnson 2016, with the N·S pairs (n, s) in place of the points)

    (1/NS) Σ_{n,s} KL(q(z₂|z₁ⁿˢ) ‖ p(z₂)) = I + KL(q(z₂) ‖ p(z₂)),
    q(z₂) = (1/NS) Σ_{n,s} q(z₂|z₁ⁿˢ)   (the aggregate: a mixture over points and z₁ draws),

where I is the mutual information between the draw z₁ⁿˢ and z₂, I(z₁; z₂) under the empirical
q(z₁) of the N·S draws, ≤ log NS. Since z₂ sees x only through z₁, I ≥ I(x; z₂) (data
processing): it is what is reported as ``mutual_information_z2``, an upper bound on I(x; z₂),
whose q(z₂|x) = ∫ q(z₁|x) q(z₂|z₁) dz₁ has no closed form. Layer 1 has no surgery: its prior
p(z₁|z₂) is one per draw of z₂, as the cvae's is one per point.
"""
from typing import Callable, Dict, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from experiments.common.rng import isolated_rng
from experiments.evaluation.collapse import (
    MAX_POINTS,
    MEAN_SAMPLES,
    SURGERY_SAMPLES,
    active_units,
    mutual_information,
)
from experiments.evaluation.likelihood import EVAL_SEED
from experiments.parts.kl_per_unit import kl_per_point_and_dimension

#: the two layers, from x outwards, as the hvae names its sites
LAYERS = ("z1", "z2")


class ChainDraws(NamedTuple):
    """S draws of the chain for each of N points: q(z₁|x_n) and z₁ˢ, q(z₂|z₁ˢ) and z₂ˢ, each
    distribution with batch shape (S, N), each draw (S, N, d_l)."""

    q1: object
    z1: torch.Tensor
    q2: object
    z2: torch.Tensor


def hierarchy_applies(model) -> bool:
    """A model with two continuous latent layers z₁, z₂ and a conditional prior p(z₁|z₂)
    (``model.z1_prior``) under p(z₂) (``model.prior``): the hvae."""
    sites = model.latent_sites
    return (tuple(sites) == LAYERS and not any(site.discrete for site in sites.values())
            and callable(getattr(model, "z1_prior", None)))


def chain_draws(guide, x: torch.Tensor, num_samples: int) -> ChainDraws:
    """The guide run once on x inside a plate of ``num_samples`` draws (dim −2, outside the
    data plate): q(z₁|x) is computed once per point, q(z₂|z₁) once per draw."""
    with pyro.plate("draws", num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(x)
    z1, z2 = (trace.nodes[site] for site in LAYERS)
    return ChainDraws(z1["fn"], z1["value"], z2["fn"], z2["value"])


def layer_means(draws: ChainDraws) -> Dict[str, torch.Tensor]:
    """E_q[z₁|x_n] (closed form) and E_q[z₂|x_n] (the mean of E_q[z₂|z₁ˢ] over the draws),
    (N, d_l) each."""
    return {"z1": draws.q1.mean[0], "z2": draws.q2.mean.mean(0)}


def layer_kl_per_dimension(model, draws: ChainDraws) -> Dict[str, torch.Tensor]:
    """KL₁,j and KL₂,j of the module's formulas, (d_l,) each, the mean over all S·N draws."""
    prior = model.prior(draws.z2)
    top = kl_per_point_and_dimension(draws.q2, prior)                           # (S, N, d₂)
    bottom = (draws.q1.base_dist.log_prob(draws.z1)
              - model.z1_prior(draws.z2).base_dist.log_prob(draws.z1))          # (S, N, d₁)
    return {"z1": bottom.mean((0, 1)), "z2": top.mean((0, 1))}


def unit_diagnostics(model, guide, x: torch.Tensor) -> Dict:
    """Active units, KL per unit and the KL term of each layer (keys suffixed ``_z1``,
    ``_z2``) from ``MEAN_SAMPLES`` draws of the chain per row of x, from the current stream."""
    draws = chain_draws(guide, x, MEAN_SAMPLES)
    means, per_dimension = layer_means(draws), layer_kl_per_dimension(model, draws)
    found = {}
    for layer in LAYERS:
        found[f"active_units_{layer}"] = active_units(means[layer])
        found[f"kl_per_dimension_{layer}"] = per_dimension[layer].tolist()
        found[f"kl_{layer}"] = per_dimension[layer].sum().item()
    return found


def top_layer_information(guide, x: torch.Tensor) -> float:
    """I(z₁; z₂) of the module's surgery, from ``SURGERY_SAMPLES`` draws of z₁ per row of x
    (the aggregate q(z₂) costs (S·N)² densities), from the current stream."""
    q2 = chain_draws(guide, x, SURGERY_SAMPLES).q2.base_dist                   # (S, N, d₂)
    return mutual_information(dist.Normal(q2.loc.flatten(0, 1), q2.scale.flatten(0, 1))
                              .to_event(1))


def hierarchy_diagnostics(model, guide, x: torch.Tensor, seed: int = EVAL_SEED) -> Dict:
    """``unit_diagnostics`` and the top layer's surgery, I(z₁; z₂) and KL(q(z₂) ‖ p(z₂)) =
    KL₂ − I (as for one layer), on the first ``MAX_POINTS`` rows of x, each from the stream
    ``seed``."""
    found = {**seeded(lambda rows: unit_diagnostics(model, guide, rows), x, seed),
             "mutual_information_z2": seeded(lambda rows: top_layer_information(guide, rows),
                                             x, seed)}
    return {**found, "marginal_kl_z2": found["kl_z2"] - found["mutual_information_z2"]}


def seeded(compute: Callable, x: torch.Tensor, seed: int = EVAL_SEED):
    """``compute`` on the first ``MAX_POINTS`` rows of x, without gradients, from the stream
    ``seed`` (so every metric sees the same draws as the summary)."""
    with torch.no_grad(), isolated_rng(seed, x.device):
        return compute(x[:MAX_POINTS])

