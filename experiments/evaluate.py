"""Test-set bounds on log p(x): the ELBO and the importance-weighted (IWAE) estimate.

Evaluation has no side effects: it runs under ``torch.no_grad`` with its own seeded random
stream (``torch.random.fork_rng``), so it changes neither a parameter, the optimizer, nor the
random numbers that training draws next.
"""
import contextlib
import math
from typing import Callable, Iterator, Tuple

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

EVAL_SEED = 2024
# samples × data points held at once: bounds the memory of IWAE (about 140 MiB for a 784-400-20
# VAE, 4× less than chunks of 2^16). Smaller chunks fit a processor's cache but take more (and
# smaller) operations, which a machine shared with other processes makes slow; 2^14 was never
# slower than 2^16 in benchmarks/ (section 3 of RESULTS.md)
CHUNK_ELEMENTS = 1 << 14


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Draw from a fresh stream seeded with ``seed``, restoring the caller's stream after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def mean_elbo(model: Callable, guide: Callable, x: torch.Tensor, seed: int = EVAL_SEED,
              chunk: int = 2048, elbo=None) -> float:
    """(1/N) Σ_i ELBO(x_i), ELBO(x) = E_{q(z|x)}[log p(x, z) − log q(z|x)], one sample of z
    per data point, in nats per example. ``elbo`` defaults to ``Trace_ELBO()``."""
    elbo = elbo or Trace_ELBO()
    total = 0.0
    with torch.no_grad(), isolated_rng(seed, x.device):
        for x_chunk in x.split(chunk):
            total -= elbo.loss(model, guide, x_chunk)
    return total / len(x)


def log_importance_weights(model: Callable, guide: Callable, x: torch.Tensor,
                           num_samples: int, max_plate_nesting: int = 1) -> torch.Tensor:
    """log w_ki = log p(x_i, z_ki) − log q(z_ki|x_i), z_ki ~ q(z|x_i); shape (num_samples, N).

    This is ``pyro.infer.importance.vectorized_importance_weights`` kept per data point: that
    function sums the weights over the data plate, which estimates log p(x_1, …, x_N) jointly
    instead of each log p(x_i). Samples are drawn in a ``pyro.plate`` left of the model's plates.
    """
    particles = pyro.plate("iwae_particles", num_samples, dim=-(max_plate_nesting + 1))
    with particles:
        guide_trace = poutine.trace(guide).get_trace(x)
    with particles:
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_w = x.new_zeros(num_samples, x.shape[0])
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":
                log_w = log_w + sign * site["log_prob"]
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
        for x_chunk in x.split(points_per_chunk):
            running = x_chunk.new_full((x_chunk.shape[0],), -math.inf)
            for start in range(0, num_samples, samples_per_chunk):
                k = min(samples_per_chunk, num_samples - start)
                log_w = log_importance_weights(model, guide, x_chunk, k, max_plate_nesting)
                running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
            estimates.append(running - math.log(num_samples))
    per_point = torch.cat(estimates)
    stderr = per_point.std().item() / math.sqrt(len(per_point)) if len(per_point) > 1 else 0.0
    return per_point.mean().item(), stderr
