"""Target 2: training steps with K vectorized particles, K = 10 and 100.

ELBO Lab trains ``--elbo iwae``, ``dreg``, ``stl`` and ``trace`` with ``--num-particles K
--vectorize-particles``, as a run does (the recorded step; ``iwae --eager`` shows Pyro's step);
the reference computes the same K-sample bound in plain PyTorch (``benchmarks.reference``'s
``iwae_loss`` for iwae and dreg, whose gradients differ but whose bound is IWAE's, ``elbo_loss``
for stl and trace): the encoder once per minibatch, the decoder on all K × B samples at once.
Minibatches of 128, the two taking turns of a step or two after three untimed steps each
(ELBO Lab's first step is Pyro's, its next two are recorded; ``training``'s section measures
what that costs).

Both compute the same bound: per data point the log-mean-exp of its K weights, the minibatch
scale N/B applied to the sum over points (``tests/test_benchmarks.py`` checks it at B < N).
Until ELBO Lab had its own ``IWAE_ELBO``, its ``iwae`` was Pyro's ``RenyiELBO``, which puts the
scale inside the log-mean-exp (docs/design/pyro-renyi-subsampling.md); the rows here are the fixed
one.
"""
import functools

from benchmarks import reference
from benchmarks.report import Section, Target, paragraphs, table
from benchmarks.timing import alternate, format_ratio
from benchmarks.training import lab_trainer, reference_trainer
from experiments.config.config import Config
from experiments.data.datasets import Dataset
from experiments.training.optim import adam

GOAL = 1.0
WARMUP_STEPS = 3
#: (label, estimator, --eager, the reference's objective)
ESTIMATORS = [("iwae --eager", "iwae", True, reference.iwae_loss),
              ("iwae", "iwae", False, reference.iwae_loss),
              ("dreg", "dreg", False, reference.iwae_loss),
              ("stl", "stl", False, reference.elbo_loss),
              ("trace", "trace", False, reference.elbo_loss)]


def benchmark(config: Config, data: Dataset, rounds: int, particles=(10, 100)) -> Section:
    config = config.replace(batch_size=128, vectorize_particles=True)
    rows, targets = [], []
    for k in particles:
        per_turn = max(1, 20 // k)
        for label, elbo, eager, objective in ESTIMATORS:
            run = config.replace(elbo=elbo, eager=eager, num_particles=k)
            lab, _ = lab_trainer(run, data, adam(run.lr))
            ref, _ = reference_trainer(run, data, run.seed, objective(k), fused=True)
            lab(WARMUP_STEPS)                    # Pyro's first step and the two recordings
            ref(WARMUP_STEPS)
            timings = alternate({"ELBO Lab": functools.partial(lab, per_turn),
                                 "reference": functools.partial(ref, per_turn)}, rounds)
            ratio = timings.ratio("ELBO Lab", "reference")
            rows.append((label, k, f"{1e3 * timings.median('ELBO Lab') / per_turn:.1f}",
                         f"{1e3 * timings.median('reference') / per_turn:.1f}",
                         format_ratio(ratio)))
            if not eager:
                targets.append(Target(f"2. {label}, K = {k}, vectorized", format_ratio(ratio),
                                      f"≤ {GOAL:.2f}×", ratio[0] <= GOAL))
    body = (paragraphs(__doc__) + f"\n\n{rounds} timed turns each:\n\n" +
            table(["estimator", "K", "ELBO Lab ms / step", "reference ms / step",
                   "× reference"], rows))
    return Section("2. K-particle estimators", body, targets)
