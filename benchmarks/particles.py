"""Target 2: training steps with K vectorized particles, ``iwae`` and ``trace``, K = 10 and 100.

ELBO Lab trains ``--elbo iwae`` or ``--elbo trace`` (also with ``--jit``) with
``--num-particles K --vectorize-particles``; the reference computes the same K-sample objective
in plain PyTorch (``benchmarks.reference.iwae_loss`` and ``elbo_loss``): the encoder once per
minibatch, the decoder on all K × B samples at once. Minibatches of 128, the two taking turns
of a step or two.

Both compute the same bound: per data point the log-mean-exp of its K weights, the minibatch
scale N/B applied to the sum over points (``tests/test_benchmarks.py`` checks it at B < N).
Until ELBO Lab had its own ``IWAE_ELBO``, its ``iwae`` was Pyro's ``RenyiELBO``, which puts the
scale inside the log-mean-exp (docs/pyro-renyi-subsampling.md); the rows here are the fixed one.
"""
import functools

from benchmarks import reference
from benchmarks.report import Section, Target, paragraphs, table
from benchmarks.timing import alternate, format_ratio
from benchmarks.training import lab_trainer, reference_trainer
from experiments.data.datasets import Dataset
from experiments.training.config import Config
from experiments.training.optim import adam

GOAL = 1.2
#: (label, estimator, --jit, the reference's objective)
ESTIMATORS = [("iwae", "iwae", False, reference.iwae_loss),
              ("trace", "trace", False, reference.elbo_loss),
              ("trace --jit", "trace", True, reference.elbo_loss)]


def benchmark(config: Config, data: Dataset, rounds: int, particles=(10, 100)) -> Section:
    config = config.replace(batch_size=128, vectorize_particles=True)
    rows, targets = [], []
    for k in particles:
        per_turn = max(1, 20 // k)
        for label, elbo, jit, objective in ESTIMATORS:
            run = config.replace(elbo=elbo, jit=jit, num_particles=k)
            lab, _ = lab_trainer(run, data, adam(run.lr))
            ref, _ = reference_trainer(run, data, run.seed, objective(k), fused=True)
            timings = alternate({"ELBO Lab": functools.partial(lab, per_turn),
                                 "reference": functools.partial(ref, per_turn)}, rounds)
            ratio = timings.ratio("ELBO Lab", "reference")
            rows.append((label, k, f"{1e3 * timings.median('ELBO Lab') / per_turn:.1f}",
                         f"{1e3 * timings.median('reference') / per_turn:.1f}",
                         format_ratio(ratio)))
            targets.append(Target(f"2. {label}, K = {k}, vectorized", format_ratio(ratio),
                                  f"≤ {GOAL}×", ratio[0] <= GOAL))
    body = (paragraphs(__doc__) + f"\n\n{rounds} timed turns each:\n\n" +
            table(["estimator", "K", "ELBO Lab ms / step", "reference ms / step",
                   "× reference"], rows))
    return Section("2. K-particle estimators", body, targets)
