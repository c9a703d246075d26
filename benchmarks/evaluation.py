"""Targets 3 and 4: test-set evaluation — the IWAE estimate of log p(x) with 5,000 samples per
example, and the exact log-likelihoods of the models that have one.

IWAE: ELBO Lab's ``experiments.evaluation.likelihood.iwae_log_likelihood`` (Pyro's traces,
vectorized over samples in a ``pyro.plate``, in chunks of about ``CHUNK_ELEMENTS`` (sample,
point) pairs) against ``ReferenceVAE.iwae_log_likelihood`` (the same arithmetic in plain
PyTorch, same chunks), on blocks of images taken in turns. Peak memory is the largest total of
tensors alive at once, read from PyTorch's profiler's allocation records; it depends on the
chunk, not on the number of images. The networks are untrained (seeded): the cost does not
depend on the weights.
"""
import math
from typing import Callable, Dict, Iterator, Tuple

import pyro
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.reference import ReferenceVAE
from benchmarks.report import Section, Target, paragraphs, table
from benchmarks.timing import Timings, alternate, format_ratio
from experiments.config.config import Config
from experiments.evaluation.likelihood import CHUNK_ELEMENTS, iwae_log_likelihood
from experiments.parts.build import build_model, build_parts
from models import MODELS

SAMPLES = 5000
BEFORE_CHUNK = 1 << 16      # the foundation's chunk
BEFORE = f"ELBO Lab, chunk {BEFORE_CHUNK} (before)"
IWAE_GOAL = 1.0
VECTORIZED_SPEED_UP = 10


def peak_memory(fn: Callable[[], object]) -> float:
    """Peak bytes of tensors alive at once while ``fn`` runs, NaN where the profiler does not
    expose its allocation records."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:
        return math.nan
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def _blocks(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    while True:
        yield from x.split(size)


def _evaluations(config: Config, x: torch.Tensor) -> Dict[str, Callable[[torch.Tensor], object]]:
    """The IWAE estimates of log p(x) to time: ELBO Lab's, the reference's, and ELBO Lab's
    with the foundation's chunk size."""
    torch.manual_seed(config.seed)
    pyro.clear_param_store()
    parts = build_parts(config, x.shape[1], len(x), x.device)
    vae = ReferenceVAE(x.shape[1], config.latent_dim, config.hidden_dims)
    return {
        "ELBO Lab": lambda xs: iwae_log_likelihood(parts.model, parts.guide, xs, SAMPLES),
        "reference": lambda xs: vae.iwae_log_likelihood(xs, SAMPLES, CHUNK_ELEMENTS),
        BEFORE: lambda xs: iwae_log_likelihood(parts.model, parts.guide, xs, SAMPLES,
                                               chunk_elements=BEFORE_CHUNK),
    }


def iwae(config: Config, x: torch.Tensor, rounds: int) -> Section:
    """The candidates take turns over ``rounds`` blocks covering the images ``x`` (the one with
    the foundation's chunk, for comparison, on a fifth of each block)."""
    evaluations = _evaluations(config, x)
    block = math.ceil(len(x) / rounds)
    sizes = {name: block for name in evaluations} | {BEFORE: max(1, block // 5)}
    blocks = {name: _blocks(x, sizes[name]) for name in evaluations}
    timings = alternate({name: (lambda f=f, b=blocks[name]: f(next(b)))
                         for name, f in evaluations.items()}, rounds, warmup=0)
    per_image = Timings({name: [t / sizes[name] for t in seconds]
                         for name, seconds in timings.seconds.items()})
    probe = x[:2 * max(1, BEFORE_CHUNK // SAMPLES)]       # two chunks of the largest
    memory = {name: peak_memory(lambda f=f: f(probe)) / 2**20 for name, f in evaluations.items()}
    rows = [(name, f"{1e3 * per_image.median(name):.1f}",
             format_ratio(per_image.ratio(name, "reference")), f"{memory[name]:.0f}")
            for name in evaluations]
    body = (paragraphs(__doc__, 1) + "\n\n" +
            f"{SAMPLES} samples per image, {rounds} blocks of {block} images "
            f"({rounds * block} images per candidate), chunks of {CHUNK_ELEMENTS} (sample, point) "
            f"pairs; peak memory measured on {len(probe)} images:\n\n" +
            table(["candidate", "ms / image", "× reference", "peak MiB"], rows))
    ratio = per_image.ratio("ELBO Lab", "reference")
    return Section("3. Test-set IWAE, 5,000 samples per image", body, [
        Target(f"3. IWAE evaluation, {SAMPLES} samples × {rounds * block} images",
               f"{format_ratio(ratio)}, peak {memory['ELBO Lab']:.0f} MiB",
               f"≤ {IWAE_GOAL}×, memory bounded by the chunk", ratio[0] <= IWAE_GOAL)])


def exact(config: Config, num_points: int = 1000, loop_points: int = 20,
          rounds: int = 3) -> Section:
    """Every model in ``MODELS`` that has an exact log-likelihood, at its default settings:
    its time on ``num_points`` 2-D points in one call, against calling it point by point. A
    vectorized computation is many times faster per point than the loop; one that loops over
    the points itself is not."""
    x = torch.randn(num_points, 2, generator=torch.Generator().manual_seed(config.seed))
    rows, speed_ups = [], []
    for name, cls in MODELS.items():
        if cls.has_exact_log_likelihood:
            try:
                per_point, loop_per_point = _exact_times(name, x, loop_points, rounds)
                speed_ups.append(loop_per_point / per_point)
                rows.append((name, f"{1e6 * per_point:.1f}", f"{1e6 * loop_per_point:.0f}",
                             f"{speed_ups[-1]:.0f}×"))
            except Exception as exc:  # any error: the row says why, the run goes on
                rows.append((name, f"fails: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                             "", ""))
    if not rows:
        body = ("No model in `MODELS` has an `exact_log_likelihood(x)` yet. Every model that "
                "has one gets a row here automatically: `lvm` (quadrature) and `gmm` "
                "(log-sum-exp over components) will, once they are merged.")
    else:
        body = (f"`exact_log_likelihood` of {num_points} standard-normal 2-D points, untrained "
                f"parameters, in one call and point by point ({loop_points} points):\n\n" +
                table(["model", "ms / 1,000 points, in one call", "ms / 1,000 points, one by one",
                       "speed-up"], rows))
    met = all(s >= VECTORIZED_SPEED_UP for s in speed_ups) and len(speed_ups) == len(rows)
    return Section("4. Exact log-likelihoods", body, [
        Target("4. exact log-likelihoods vectorized",
               f"{len(speed_ups)} of {len(rows)} model(s) measured" if rows else
               "no model has one yet",
               f"no Python loop over data points (≥ {VECTORIZED_SPEED_UP}× faster per point "
               "than one by one)", met if rows else None)])


def _exact_times(name: str, x: torch.Tensor, loop_points: int, rounds: int) -> Tuple[float, float]:
    """Seconds per point of ``exact_log_likelihood``: over all of ``x`` in one call, and called
    on one point at a time."""
    model = build_model(name, data_dim=x.shape[1], **Config().to_dict())
    with torch.no_grad():
        timings = alternate({
            "one call": lambda: model.exact_log_likelihood(x),
            "one by one": lambda: [model.exact_log_likelihood(x[i:i + 1])
                                   for i in range(loop_points)]}, rounds)
    return timings.median("one call") / len(x), timings.median("one by one") / loop_points
