"""The ELBO and the bounds above it, per data point, from one set of importance weights.

With z_k ~ q(z|x) and weights w_k = p(x, z_k) / q(z_k|x), k = 1 … S:

    ELBO(x)  = E_q[log w]
             = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))        (reconstruction − regularizer)
             = log p(x) − KL(q(z|x) ‖ p(z|x))             (evidence − inference gap)
    L_K(x)   = E[log (1/K) Σ_{k≤K} w_k]                   (IWAE, Burda et al. 2016)
             ELBO = L_1 ≤ L_K ≤ L_{K+1} ≤ log p(x),  L_K → log p(x) as K → ∞
    L_α(x)   = 1/(1 − α) log E_q[w^{1−α}]                 (Rényi, Li & Turner 2016)
             L_1 = ELBO (the limit α → 1), L_0 = log p(x), nonincreasing in α

The estimates below reuse the same S weights for every K and α: L_K averages the S / K disjoint
groups of K weights, and L_α replaces E_q by the mean over all S.
"""
import math
from typing import Dict, Optional, Sequence

import torch
from pyro import poutine
from torch.distributions import kl_divergence

from experiments.common.rng import isolated_rng
from experiments.evaluation.likelihood import (
    CHUNK_ELEMENTS,
    EVAL_SEED,
    chunks,
    guide_distribution,
    log_importance_weights,
)


def importance_weights(model, guide, x: torch.Tensor, num_samples: int,
                       seed: int = EVAL_SEED, observed_only: bool = False) -> torch.Tensor:
    """log w_ki for S = ``num_samples`` draws z_ki ~ q(z|x_i), shape (S, N), from a seeded
    stream and without gradients, in chunks of data points of about ``CHUNK_ELEMENTS`` pairs;
    with ``observed_only``, log p(x_i | z_ki) at the very same draws."""
    points = max(1, CHUNK_ELEMENTS // num_samples)
    with torch.no_grad(), isolated_rng(seed, x.device):
        return torch.cat([log_importance_weights(model, guide, chunk, num_samples,
                                                 model.max_plate_nesting, index, len(x),
                                                 observed_only)
                          for chunk, index in chunks(x, points)], dim=1)


def elbo_terms(model, guide, x: torch.Tensor, log_w: torch.Tensor,
               seed: int = EVAL_SEED) -> Dict[str, torch.Tensor]:
    """Per point, shape (N,) each: ``elbo`` = mean_k log w_ki, ``kl_prior`` = KL(q(z|x_i) ‖ p(z))
    and ``expected_log_likelihood`` = E_q[log p(x_i|z)] = ELBO + KL(q ‖ p(z)), for a model with
    a decoder and a guide that samples every latent site, where ``log_w`` is
    ``importance_weights(model, guide, x, S, seed)``.

    KL(q ‖ p(z)) is the closed form where the model has one latent site with a prior p(z) that
    q has a closed-form KL to (``vae``, ``lvm`` with ``normal``, ``mvn``); otherwise (a
    hierarchy, whose p(z) = p(z₁|z₂) p(z₂); a flow) E_q[log p(x_i|z)] is averaged over the
    draws of ``log_w`` and KL(q ‖ p(z)) = E_q[log q(z|x_i) − log p(z)] is what remains."""
    elbo = log_w.mean(0)
    kl_prior = _closed_form_kl(model, guide, x)
    if kl_prior is None:
        expected = importance_weights(model, guide, x, log_w.shape[0], seed, observed_only=True)
        return {"elbo": elbo, "kl_prior": expected.mean(0) - elbo,
                "expected_log_likelihood": expected.mean(0)}
    return {"elbo": elbo, "kl_prior": kl_prior, "expected_log_likelihood": elbo + kl_prior}


def _closed_form_kl(model, guide, x: torch.Tensor) -> Optional[torch.Tensor]:
    """KL(q(z|x_i) ‖ p(z)) in closed form, shape (N,), or None where there is none."""
    if len(model.latent_sites) != 1:
        return None
    (site,) = model.latent_sites
    with torch.no_grad():
        try:
            return kl_divergence(guide_distribution(guide, x, site), model.prior(x))
        except NotImplementedError:
            return None


def reconstruction_and_kl(model, guide, x: torch.Tensor, seed: int = EVAL_SEED,
                          chunk: int = 2048) -> Optional[Dict[str, float]]:
    """The two terms of the one-sample ELBO, averaged over the rows of x, from one draw
    z_i ~ q(z|x_i) per row: ``reconstruction`` = log p(x_i|z_i) (the model's observed sites)
    and ``kl`` = log q(z_i|x_i) − log p(z_i) (its latent sites, a Monte Carlo estimate of
    KL(q(z|x) ‖ p(z)) for any guide), so that reconstruction − kl is the ELBO estimate; drawn
    as ``experiments.evaluation.likelihood.mean_elbo`` draws (same seed, same chunks), so it is
    that function's test ELBO split in two. None where the guide leaves a latent site to be
    summed out (the ``enum`` guide: there is no q)."""
    totals = {"reconstruction": 0.0, "kl": 0.0}
    with torch.no_grad(), isolated_rng(seed, x.device):
        for x_chunk, _ in chunks(x, chunk):
            guide_trace = poutine.trace(guide).get_trace(x_chunk)
            replayed = poutine.replay(model, trace=guide_trace)
            terms = _terms(poutine.trace(replayed).get_trace(x_chunk), guide_trace)
            if terms is None:
                return None
            for name, per_point in terms.items():
                totals[name] += per_point.sum().item() / len(x)
    return totals


def _terms(model_trace, guide_trace) -> Optional[Dict[str, torch.Tensor]]:
    """Per row: Σ log p(x|z) over the observed sites, Σ log q − Σ log p(z) over the latent."""
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    reconstruction, kl = 0.0, 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"]:
            reconstruction = reconstruction + site["unscaled_log_prob"]
        elif name not in guide_trace.nodes:
            return None
        else:
            kl = kl - site["unscaled_log_prob"]
    for site in guide_trace.nodes.values():
        if site["type"] == "sample":
            kl = kl + site["unscaled_log_prob"]
    return {"reconstruction": reconstruction, "kl": kl}


def iwae_bounds(log_w: torch.Tensor, ks: Sequence[int]) -> Dict[int, torch.Tensor]:
    """L_K(x_i) for each K in ``ks`` (each at most S), shape (N,) each: the mean over the
    ⌊S / K⌋ disjoint groups of log (1/K) Σ_{k in group} w_k."""
    bounds = {}
    for k in ks:
        groups = log_w[: (log_w.shape[0] // k) * k].reshape(-1, k, log_w.shape[1])
        bounds[k] = (groups.logsumexp(1) - math.log(k)).mean(0)
    return bounds


def renyi_bounds(log_w: torch.Tensor, alphas: Sequence[float]) -> Dict[float, torch.Tensor]:
    """L_α(x_i) = 1/(1 − α) log (1/S) Σ_k w_ki^{1−α} for each α in ``alphas``, shape (N,) each;
    α = 1 is its limit, the mean of log w (the ELBO)."""
    bounds = {}
    for alpha in alphas:
        if alpha == 1:
            bounds[alpha] = log_w.mean(0)
        else:
            scaled = (1 - alpha) * log_w
            bounds[alpha] = (scaled.logsumexp(0) - math.log(log_w.shape[0])) / (1 - alpha)
    return bounds
