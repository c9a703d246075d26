"""Test-set bounds on log p(x): the ELBO and the importance-weighted (IWAE) estimate.

Discrete latent sites that the model marks for parallel enumeration and the guide leaves out
(the ``enum`` guide) are summed out exactly in both, as ``TraceEnum_ELBO`` does in training.
Evaluation has no side effects: it runs under ``torch.no_grad`` with its own seeded random
stream (``torch.random.fork_rng``), so it changes neither a parameter, the optimizer, nor the
random numbers that training draws next. The test set is scored in chunks of a fixed size, chunk
c drawing from the stream seeded with ``seed + c`` (``over_chunks``): each point's number depends
on neither the order of the chunks nor the processes they are shared among, so in a torchrun job
(``experiments.common.distributed.shared_work``) the ranks split the chunks and every number
equals one process's.
"""
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import pyro
import torch
from pyro import poutine
from pyro.distributions import TorchDistribution
from pyro.infer import TraceEnum_ELBO
from tqdm import tqdm

from experiments.common.distributed import split_chunks
from experiments.common.rng import isolated_rng

EVAL_SEED = 2024
# samples × data points held at once: bounds the memory of IWAE (about 140 MiB for a 784-400-20
# VAE, 4× less than chunks of 2^16). Smaller chunks fit a processor's cache but take more (and
# smaller) operations, which a machine shared with other processes makes slow; 2^14 was never
# slower than 2^16 in benchmarks/ (section 3 of RESULTS.md)
CHUNK_ELEMENTS = 1 << 14


def chunks(x: torch.Tensor, size: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(rows, their indices) in chunks of ``size``: guides with per-point parameters find
    their rows through the index of the data plate."""
    index = torch.arange(len(x), device=x.device)
    return zip(x.split(size), index.split(size))


def over_chunks(score: Callable[[torch.Tensor, torch.Tensor], object], x: torch.Tensor,
                size: int, seed: Optional[int] = None) -> List:
    """``score(rows, indices)`` of every chunk of ``size`` rows of x, in order; chunk c draws
    from its own stream seeded with ``seed + c`` (when a seed is given), so its value is the
    same whichever process scores it (``experiments.common.distributed.split_chunks``)."""
    pieces = list(chunks(x, size))

    def compute(c: int):
        if seed is None:
            return score(*pieces[c])
        with isolated_rng(seed + c, x.device):
            return score(*pieces[c])

    return split_chunks(compute, len(pieces), x.device)


def mean_elbo(model: Callable, guide: Callable, x: torch.Tensor, seed: int = EVAL_SEED,
              chunk: int = 2048, elbo=None, max_plate_nesting: int = 1) -> float:
    """(1/N) Σ_i ELBO(x_i), ELBO(x) = E_{q(z|x)}[log p(x, z) − log q(z|x)], one sample of z
    per data point, in nats per example.

    ``elbo`` defaults to ``TraceEnum_ELBO``: the one-sample ``Trace_ELBO`` where nothing is
    enumerated, and where the model enumerates a discrete z that the guide leaves out, the
    exact log Σ_z p(x, z) = log p(x), so the ``enum`` guide's test ELBO is log p(x) itself.
    Each chunk of B rows is passed with its index and N, so its loss is scaled by N / B.
    """
    elbo = elbo or TraceEnum_ELBO(max_plate_nesting=max_plate_nesting,
                                  strict_enumeration_warning=False)
    with torch.no_grad():
        losses = over_chunks(lambda x_chunk, index: elbo.loss(model, guide, x_chunk, index,
                                                              len(x)) * len(x_chunk) / len(x),
                             x, chunk, seed)
    total = 0.0
    for loss in losses:
        total -= loss
    return total / len(x)


def log_importance_weights(model: Callable, guide: Callable, x: torch.Tensor,
                           num_samples: int, max_plate_nesting: int = 1,
                           index: Optional[torch.Tensor] = None,
                           num_data: Optional[int] = None,
                           observed_only: bool = False) -> torch.Tensor:
    """log w_ki = log p(x_i, z_ki) − log q(z_ki|x_i), z_ki ~ q(z|x_i); shape (num_samples, N).
    Every latent site of the guide counts: z = (z₁, z₂, …) for a hierarchy. With
    ``observed_only``, log p(x_i | z_ki) alone (the model's observed sites), at the same draws
    for the same random state (a model without enumerated sites).

    This is ``pyro.infer.importance.vectorized_importance_weights`` kept per data point: that
    function sums the weights over the data plate, which estimates log p(x_1, …, x_N) jointly
    instead of each log p(x_i). Samples are drawn in a ``pyro.plate`` left of the model's plates;
    model sites marked for enumeration that the guide leaves out take all their values in
    dimensions left of that, and are summed out: p(x, z_guide) = Σ_{z_enum} p(x, z_guide, z_enum).
    """
    particles = pyro.plate("iwae_particles", num_samples, dim=-(max_plate_nesting + 1))
    with particles:
        guide_trace = poutine.trace(guide).get_trace(x, index, num_data)
    model = poutine.enum(poutine.replay(model, trace=guide_trace),
                         first_available_dim=-(max_plate_nesting + 2))
    with particles:
        model_trace = poutine.trace(model).get_trace(x, index, num_data)
    log_w = x.new_zeros(num_samples, x.shape[0])
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample" and (site["is_observed"] or not observed_only):
                # unscaled: a minibatch's plate scale is N / B
                log_w = log_w + sign * site["unscaled_log_prob"]    # (enumerated…, samples, N)
    while log_w.dim() > 2:
        log_w = log_w.logsumexp(0)
    return log_w


@dataclass
class IWAEEstimate:
    """The IWAE estimate of the mean log p(x) over N data points, and its two kinds of error.

    :param per_point: log p̂(x_i) = log (1/K) Σ_k w_ki for every data point, shape (N,).
    :param per_point_mc_var: the Monte Carlo variance of each log p̂(x_i) over the K samples,
        by the delta method: Var[log mean_k w_k] ≈ Var_k(w) / (K · mean_k(w)²), shape (N,);
        nan for K = 1 (one sample has no spread to measure).
    """

    per_point: torch.Tensor
    per_point_mc_var: torch.Tensor
    num_samples: int

    @property
    def value(self) -> float:
        """(1/N) Σ_i log p̂(x_i), nats per example."""
        return self.per_point.mean().item()

    @property
    def mc_stderr(self) -> float:
        """The Monte Carlo standard error of ``value`` (another seed, the same data and
        parameters): √(Σ_i Var[log p̂(x_i)]) / N. Zero where every weight is p(x_i) itself
        (the ``enum`` guide)."""
        return self.per_point_mc_var.sum().sqrt().item() / len(self.per_point)

    @property
    def point_sd(self) -> float:
        """The spread of log p̂(x_i) over the data points (their standard deviation)."""
        return self.per_point.std().item() if len(self.per_point) > 1 else 0.0

    @property
    def point_stderr(self) -> float:
        """``point_sd`` / √N: how far another test set of N points could move ``value``."""
        return self.point_sd / math.sqrt(len(self.per_point))


def iwae_estimate(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int,
                  seed: int = EVAL_SEED, max_plate_nesting: int = 1,
                  chunk_elements: int = CHUNK_ELEMENTS, progress: bool = False) -> IWAEEstimate:
    """The importance-sampled estimate of log p(x) with K = ``num_samples`` samples of q(z|x):

        log p̂(x_i) = log (1/K) Σ_k w_ki,   E[log p̂(x_i)] ≤ log p(x_i), tight as K → ∞,

    for each data point, with the Monte Carlo variance of each (``IWAEEstimate``). Where the
    guide samples nothing and the model's z is enumerated (the ``enum`` guide) every weight is
    p(x_i) itself, so the estimate is the exact log-likelihood for any K, with no Monte Carlo
    error. Samples and data points are taken in chunks of about ``chunk_elements`` pairs,
    combined with log-sum-exp (of w and of w², for the variance), so the memory held does not
    grow with K × N; ``progress`` shows a bar over the chunks on stderr.
    """
    points_per_chunk = max(1, chunk_elements // num_samples)
    samples_per_chunk = min(num_samples, chunk_elements)
    bar = tqdm(total=math.ceil(len(x) / points_per_chunk), desc=f"IWAE, {num_samples} samples",
               leave=False, disable=not progress, file=sys.stderr)

    def estimate(x_chunk: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        log_s1 = x_chunk.new_full((x_chunk.shape[0],), -math.inf, dtype=torch.float64)
        log_s2 = log_s1.clone()                         # log Σ_k w_k and log Σ_k w_k², (B,)
        for start in range(0, num_samples, samples_per_chunk):
            k = min(samples_per_chunk, num_samples - start)
            log_w = log_importance_weights(model, guide, x_chunk, k, max_plate_nesting,
                                           index, len(x)).double()
            log_s1 = torch.logaddexp(log_s1, torch.logsumexp(log_w, dim=0))
            log_s2 = torch.logaddexp(log_s2, torch.logsumexp(2 * log_w, dim=0))
        bar.update(1)
        return torch.stack([log_s1 - math.log(num_samples),
                            delta_method_variance(log_s1, log_s2, num_samples)]).to(x.dtype)

    with bar, torch.no_grad():
        per_point, mc_var = torch.cat(over_chunks(estimate, x, points_per_chunk, seed), dim=1)
    return IWAEEstimate(per_point, mc_var, num_samples)


def delta_method_variance(log_s1: torch.Tensor, log_s2: torch.Tensor, k: int) -> torch.Tensor:
    """Var[log mean_k w_k] ≈ Var_k(w) / (K mean(w)²) from S1 = Σ w and S2 = Σ w², with the
    unbiased Var_k(w) = (S2 − S1²/K) / (K − 1): (K S2 / S1² − 1) / (K − 1), in logs so
    that weights of any size work; rounding below zero (equal weights) is clamped to zero."""
    if k < 2:
        return torch.full_like(log_s1, math.nan)
    relative = torch.expm1(math.log(k) + log_s2 - 2 * log_s1).clamp(min=0.0)
    return relative / (k - 1)


def iwae_log_likelihood(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int,
                        seed: int = EVAL_SEED, max_plate_nesting: int = 1,
                        chunk_elements: int = CHUNK_ELEMENTS) -> Tuple[float, float]:
    """``iwae_estimate``'s mean log p̂(x) over the N data points, with its standard error over
    data points (``point_stderr``; the Monte Carlo error is ``iwae_estimate(…).mc_stderr``)."""
    estimate = iwae_estimate(model, guide, x, num_samples, seed, max_plate_nesting,
                             chunk_elements)
    return estimate.value, estimate.point_stderr


def iwae_per_point(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int,
                   seed: int = EVAL_SEED, max_plate_nesting: int = 1,
                   chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """log p̂(x_i) = log (1/K) Σ_k w_ki for every row of x, shape (N,), as
    ``iwae_log_likelihood`` averages it (for paired comparisons point by point)."""
    return iwae_estimate(model, guide, x, num_samples, seed, max_plate_nesting,
                         chunk_elements).per_point


def elbo_per_point(model: Callable, guide: Callable, x: torch.Tensor, seed: int = EVAL_SEED,
                   chunk: int = 2048, max_plate_nesting: int = 1) -> torch.Tensor:
    """ELBO(x_i) = log p(x_i, z_i) − log q(z_i|x_i), one z_i ~ q(z|x_i) per data point, shape
    (N,): the per-point terms whose mean is ``mean_elbo`` (the same draws, in the same chunks,
    from the same seeds); enumerated sites are summed out as there."""
    with torch.no_grad():
        return torch.cat(over_chunks(
            lambda x_chunk, index: log_importance_weights(model, guide, x_chunk, 1,
                                                          max_plate_nesting, index, len(x))[0],
            x, chunk, seed))


def guide_distribution(guide: Callable, x: torch.Tensor, site: str,
                       seed: int = EVAL_SEED) -> Optional[TorchDistribution]:
    """q(z|x) at ``site`` as the guide builds it for the rows of x (batch shape (N,)), or None
    where the guide leaves the site out (the ``enum`` guide: there q(z|x) is p(z|x) exactly)."""
    with torch.no_grad(), isolated_rng(seed, x.device):
        node = poutine.trace(guide).get_trace(x).nodes.get(site)
    return None if node is None else node["fn"]
