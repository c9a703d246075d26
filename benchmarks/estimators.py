"""Target 5: what a training step costs with every registered estimator, ``vae`` + ``normal``.

Every entry of ``experiments.estimators.ELBOS`` is trained as a run trains it (its recorded step,
``experiments.recording``, where the estimator is recordable; Pyro's step otherwise) with one
particle and with K = 10 vectorized particles, on minibatches of 128, the estimators taking
turns of two steps. A new estimator gets its row by being registered; one that cannot run with
this pair gets a row saying why.
"""
import functools
import warnings

from benchmarks.report import Section, Target, paragraphs, table
from benchmarks.timing import alternate
from benchmarks.training import lab_trainer
from experiments.config.config import Config
from experiments.data.datasets import Dataset
from experiments.estimators import ELBOS
from experiments.training.optim import adam

WARMUP_STEPS = 3      # Pyro's first step, then two recordings
SETTINGS = {
    "K = 1": {"num_particles": 1, "vectorize_particles": False},
    "K = 10, vectorized": {"num_particles": 10, "vectorize_particles": True},
}


def benchmark(config: Config, data: Dataset, rounds: int, per_turn: int = 2) -> Section:
    config = config.replace(batch_size=128)
    estimators = [(name, name) for name in ELBOS]
    steps, cells = {}, {}
    with warnings.catch_warnings():          # e.g. enum's note that it enumerates nothing
        warnings.simplefilter("ignore")
        for label, name in estimators:
            for setting, options in SETTINGS.items():
                run = config.replace(elbo=name, **options)
                try:
                    take_steps, _ = lab_trainer(run, data, adam(run.lr))
                    take_steps(WARMUP_STEPS)  # an estimator that cannot run fails here
                    steps[f"{label}, {setting}"] = functools.partial(take_steps, per_turn)
                except Exception as exc:      # any error: the row says why, the run goes on
                    reason = str(exc).strip().splitlines()[0].split("; ")[0]
                    cells[f"{label}, {setting}"] = f"fails: {type(exc).__name__}: {reason}"
        timings = alternate(steps, rounds, warmup=0)
    for key in steps:
        cells[key] = f"{1e3 * timings.median(key) / per_turn:.1f}"
    rows = [(label, "recorded" if ELBOS[name].recordable else "Pyro's",
             *(cells[f"{label}, {setting}"] for setting in SETTINGS))
            for label, name in estimators]
    body = (paragraphs(__doc__) + f"\n\nMilliseconds per step, {rounds} timed turns "
            "each:\n\n" + table(["estimator", "step", *SETTINGS], rows))
    measured = sum(1 for label, _ in estimators for s in SETTINGS
                   if not cells[f"{label}, {s}"].startswith("fails"))
    return Section("5. Time per step of every estimator", body, [
        Target("5. every registered estimator timed",
               f"{len(estimators)} estimators, {measured} of {len(estimators) * len(SETTINGS)} "
               "settings run", "a row each", True)])
