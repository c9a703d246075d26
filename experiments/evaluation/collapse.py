"""Posterior collapse: which latent units a model uses, and what its KL term is made of.

For a model with one continuous latent site z ∈ R^d and a guide q(z|x), over N test points x_n:

    active units     A = #{j : Cov_x(E_q[z_j | x]) > 0.01}               (Burda et al. 2016)
    KL per dimension KL_j = (1/N) Σ_n KL(q(z_j|x_n) ‖ p(z_j))           (factorized q and p)

and the "ELBO surgery" of the mean KL term (Hoffman & Johnson 2016), with the aggregate
posterior q(z) = (1/N) Σ_n q(z|x_n):

    (1/N) Σ_n KL(q(z|x_n) ‖ p(z)) = I(x; z) + KL(q(z) ‖ p(z)),
    I(x; z) = (1/N) Σ_n E_{q(z|x_n)}[log q(z|x_n) − log q(z)]  ≤ log N

the mutual information between the data index and the code under q (how much the code says
about x), and how far the codes' aggregate lies from the prior. I(x; z) is a Monte Carlo
estimate over draws z ~ q(z|x_n), with log q(z) = log Σ_m q(z|x_m) − log N summed over every
point; the mean KL is the closed form where there is one; KL(q(z) ‖ p(z)) is their difference.
Under a conditional prior p(z|x_v) (the cvae) each point's KL is against its own prior, and the
surgery, which needs one p(z) for all points, is not reported (``surgery_applies``).
"""
import math
from typing import Dict

import torch
from torch.distributions import kl_divergence

from experiments.common.rng import isolated_rng
from experiments.evaluation.likelihood import EVAL_SEED, guide_distribution
from experiments.parts.kl_per_unit import kl_per_point_and_dimension, surgery_applies

ACTIVE_THRESHOLD = 0.01
#: test points at most (the aggregate posterior costs N² densities per draw)
MAX_POINTS = 1000
#: draws of q(z|x_n) per point for the surgery, and for E_q[z] where q has no closed-form mean
SURGERY_SAMPLES = 2
MEAN_SAMPLES = 64
ROWS_PER_BLOCK = 64      # draws scored against all N components of q(z) at once


def posterior_means(q, num_samples: int = MEAN_SAMPLES) -> torch.Tensor:
    """E_q[z | x_n], (N, d): the closed form, or a Monte Carlo mean (a flow)."""
    try:
        return q.mean
    except NotImplementedError:
        return q.sample((num_samples,)).mean(0)


def active_units(means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """The number of coordinates j whose E_q[z_j|x] varies over the points by more than
    ``threshold`` (its variance over the rows of ``means``, (N, d))."""
    return int((means.var(0) > threshold).sum())


def mean_kl(q, prior, num_samples: int = SURGERY_SAMPLES) -> float:
    """(1/N) Σ_n KL(q(z|x_n) ‖ p(z)): the closed form where there is one, else the Monte Carlo
    mean of log q(z|x_n) − log p(z) over ``num_samples`` draws per point."""
    try:
        return kl_divergence(q, prior).mean().item()
    except NotImplementedError:
        z = q.sample((num_samples,))
        return (q.log_prob(z) - prior.log_prob(z)).mean().item()


def mutual_information(q, num_samples: int = SURGERY_SAMPLES) -> float:
    """I(x; z) = (1/N) Σ_n E_{q(z|x_n)}[log q(z|x_n) − log q(z)] over ``num_samples`` draws per
    point, q with batch shape (N,)."""
    z = q.sample((num_samples,))                                          # (S, N, d)
    log_aggregate = torch.cat([_log_aggregate(q, block) for block in
                               z.reshape(-1, z.shape[-1]).split(ROWS_PER_BLOCK)])
    return (q.log_prob(z) - log_aggregate.reshape(z.shape[:-1])).mean().item()


def elbo_surgery(q, prior, num_samples: int = SURGERY_SAMPLES) -> Dict[str, float]:
    """The mean KL(q(z|x) ‖ p(z)), I(x; z) and KL(q(z) ‖ p(z)) = their difference (the
    module's formulas) for q with batch shape (N,)."""
    kl, information = mean_kl(q, prior, num_samples), mutual_information(q, num_samples)
    return {"kl": kl, "mutual_information": information, "marginal_kl": kl - information}


def _log_aggregate(q, z: torch.Tensor) -> torch.Tensor:
    """log q(z) = log (1/N) Σ_m q(z|x_m) at each row of z, (rows,)."""
    return q.log_prob(z.unsqueeze(1)).logsumexp(1) - math.log(q.batch_shape[0])


def posterior_and_prior(model, guide, x: torch.Tensor, seed: int = EVAL_SEED):
    """q(z|x_n) for the first ``MAX_POINTS`` rows of x (batch shape (N,)) and p(z)."""
    x = x[:MAX_POINTS]
    return guide_distribution(guide, x, next(iter(model.latent_sites)), seed), model.prior(x)


def collapse_diagnostics(model, guide, x: torch.Tensor, seed: int = EVAL_SEED) -> Dict:
    """Active units, the mean KL, the surgery's other two numbers where it applies
    (``surgery_applies``: not under a conditional prior), and where q and p are factorized the
    KL per dimension (a list), on the first ``MAX_POINTS`` rows of x, from a seeded stream."""
    with torch.no_grad(), isolated_rng(seed, x.device):
        q, prior = posterior_and_prior(model, guide, x, seed)
        found = {"active_units": active_units(posterior_means(q)),
                 **(elbo_surgery(q, prior) if surgery_applies(model)
                    else {"kl": mean_kl(q, prior)})}
        per_dimension = kl_per_point_and_dimension(q, prior)
    if per_dimension is not None:
        found["kl_per_dimension"] = per_dimension.mean(0).tolist()
    return found

