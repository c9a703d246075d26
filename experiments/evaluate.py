"""Test-set bounds on log p(x): the ELBO and the importance-weighted (IWAE) estimate.

Evaluation has no side effects: it runs under ``torch.no_grad`` with its own seeded random
stream (``torch.random.fork_rng``), so it changes neither a parameter, the optimizer, nor the
random numbers that training draws next.
"""
import contextlib
import math
from typing import Callable, Iterator, Optional, Tuple

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

EVAL_SEED = 2024
CHUNK_ELEMENTS = 1 << 16   # samples × data points held at once: bounds the memory of IWAE


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Draw from a fresh stream seeded with ``seed``, restoring the caller's stream after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def chunks(x: torch.Tensor, size: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(rows, their indices) in chunks of ``size``: guides with per-point parameters find
    their rows through the index of the data plate."""
    index = torch.arange(len(x), device=x.device)
    return zip(x.split(size), index.split(size))


def mean_elbo(model: Callable, guide: Callable, x: torch.Tensor, seed: int = EVAL_SEED,
              chunk: int = 2048, elbo=None) -> float:
    """(1/N) Σ_i ELBO(x_i), ELBO(x) = E_{q(z|x)}[log p(x, z) − log q(z|x)], one sample of z
    per data point, in nats per example. ``elbo`` defaults to ``Trace_ELBO()``.

    Each chunk of B rows is passed with its index and N, so its loss is scaled by N / B.
    """
    elbo = elbo or Trace_ELBO()
    total = 0.0
    with torch.no_grad(), isolated_rng(seed, x.device):
        for x_chunk, index in chunks(x, chunk):
            total -= elbo.loss(model, guide, x_chunk, index, len(x)) * len(x_chunk) / len(x)
    return total / len(x)


def log_importance_weights(model: Callable, guide: Callable, x: torch.Tensor,
                           num_samples: int, max_plate_nesting: int = 1,
                           index: Optional[torch.Tensor] = None,
                           num_data: Optional[int] = None) -> torch.Tensor:
    """log w_ki = log p(x_i, z_ki) − log q(z_ki|x_i), z_ki ~ q(z|x_i); shape (num_samples, N).

    This is ``pyro.infer.importance.vectorized_importance_weights`` kept per data point: that
    function sums the weights over the data plate, which estimates log p(x_1, …, x_N) jointly
    instead of each log p(x_i). Samples are drawn in a ``pyro.plate`` left of the model's plates.
    """
    particles = pyro.plate("iwae_particles", num_samples, dim=-(max_plate_nesting + 1))
    with particles:
        guide_trace = poutine.trace(guide).get_trace(x, index, num_data)
    with particles:
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            x, index, num_data)
    log_w = x.new_zeros(num_samples, x.shape[0])
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":       # unscaled: a minibatch's plate scale is N / B
                log_w = log_w + sign * site["unscaled_log_prob"]
    return log_w


def iwae_log_likelihood(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int,
                        seed: int = EVAL_SEED, max_plate_nesting: int = 1,
                        chunk_elements: int = CHUNK_ELEMENTS) -> Tuple[float, float]:
    """The importance-sampled estimate of log p(x) with K = ``num_samples`` samples of q(z|x):

        log p̂(x_i) = log (1/K) Σ_k w_ki,   E[log p̂(x_i)] ≤ log p(x_i), tight as K → ∞,

    averaged over the N data points, with its standard error over data points. Samples and
    data points are taken in chunks of about ``chunk_elements`` pairs, combined with
    log-sum-exp, so the memory held does not grow with K × N.
    """
    points_per_chunk = max(1, chunk_elements // num_samples)
    samples_per_chunk = min(num_samples, chunk_elements)
    estimates = []
    with torch.no_grad(), isolated_rng(seed, x.device):
        for x_chunk, index in chunks(x, points_per_chunk):
            running = x_chunk.new_full((x_chunk.shape[0],), -math.inf)
            for start in range(0, num_samples, samples_per_chunk):
                k = min(samples_per_chunk, num_samples - start)
                log_w = log_importance_weights(model, guide, x_chunk, k, max_plate_nesting,
                                               index, len(x))
                running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
            estimates.append(running - math.log(num_samples))
    per_point = torch.cat(estimates)
    stderr = per_point.std().item() / math.sqrt(len(per_point)) if len(per_point) > 1 else 0.0
    return per_point.mean().item(), stderr
