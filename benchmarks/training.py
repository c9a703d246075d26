"""Target 1: training time of ``vae``/``normal``/``trace`` against the reference, per epoch.

ELBO Lab trains through its own ``experiments.training.loop.training_steps`` (the loop of
``train_epoch``) and the stepper a run uses (``experiments.training.loop.stepper``); the
reference through ``benchmarks.reference.training_steps``. Both see the same data tensors,
minibatches drawn and binarized inside the timed steps. The candidates take turns of a few
steps each, epoch after epoch; a turn is short, so all candidates of a round meet the same
load, and the time per epoch is the median time per step × steps per epoch. The ELBO Lab rows
show what each change bought: Pyro's step with Pyro's per-parameter ``pyro.optim.Adam`` (what
the foundation trained with), Pyro's step with one fused Adam (``--eager``), and the recorded
step (the default, ``experiments/recording``). The references with other seeds measure the
noise, of the timings and of the final test ELBO; the one with PyTorch's default (unfused) Adam
shows where a hand-written loop usually stands. NumPyro's rows (``benchmarks.numpyro_peer``)
train the same network with NumPyro's SVI, compiled by JAX per update or per epoch. The final
test ELBOs (one sample of z per test image) are compared as two groups of runs: ELBO Lab's
variants against the PyTorch references.

The first epoch of the default path also records its steps: Pyro's first step, then two
recordings of each minibatch shape, each kept in the recording cache
(``experiments.recording.cache``), from which a later run of the same program loads them
instead, checking each against Pyro's step at its first replay. Its cost is measured apart, on
a fresh run: the time of epoch 1 against the median of epochs 2–4, with an empty cache (cold:
a first run) and with the cache the cold run filled (warm: every later run); and whole runs,
what a short run (a student's, a comparison's) costs: a fresh model trained 10 epochs, first
epoch included, ELBO Lab's default cold (an empty cache each time) and warm (the cache an
earlier run filled) against the reference, the three in random order round after round. The
benchmark keeps its caches in a folder of its own, never the user's.

The reference trained with another seed is the reference timed against itself: its ratio should
read 1.00, and how far it strays is the error of every other ratio of its table.
"""
import collections
import functools
import itertools
import math
import statistics
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Tuple

import pyro
import torch

from benchmarks import numpyro_peer, reference
from benchmarks.report import Section, Target, paragraphs, table
from benchmarks.timing import alternate, format_ratio
from experiments.common.rng import isolated_rng
from experiments.config.config import Config
from experiments.data.datasets import Dataset
from experiments.evaluation.likelihood import EVAL_SEED, mean_elbo
from experiments.parts.build import build_parts
from experiments.recording.cache import cache_folder
from experiments.training.loop import stepper, training_steps
from experiments.training.optim import adam

REFERENCE = "reference (fused Adam, as ELBO Lab)"
LAB = "ELBO Lab (recorded step, the default)"
COLD = "ELBO Lab, empty recording cache"
WARM = "ELBO Lab, recordings from an earlier run"
EAGER = "ELBO Lab --eager (Pyro's step, fused Adam)"
NUMPYRO_STEP = "NumPyro, jax.jit per update"
NUMPYRO_EPOCH = "NumPyro, an epoch in one jax.jit (lax.fori_loop)"
SELF = "reference, another seed"
GOALS = {128: 1.00, 32: 1.05}
FIRST_EPOCH_GOAL = 3.0      # seconds of recording on top of a later epoch
SELF_TOLERANCE = 0.05       # the reference against itself: 1.00 ± this
WHOLE_RUN_EPOCHS = 10
WHOLE_RUN_GOAL = 1.10
STEPS_PER_TURN = {128: 4, 32: 8}

#: (take_steps(n): the next n training steps, epoch after epoch; the test ELBO so far)
Trainer = Tuple[Callable[[int], None], Callable[[], float]]


def _stepper(epoch_steps: Callable[[int], Iterator[float]]) -> Callable[[int], None]:
    """take_steps(n) goes n steps further through epoch 1's steps, then epoch 2's, …"""
    steps = itertools.chain.from_iterable(map(epoch_steps, itertools.count(1)))
    return lambda n: collections.deque(itertools.islice(steps, n), maxlen=0)


def lab_trainer(config: Config, data: Dataset, optim) -> Trainer:
    """ELBO Lab's training, in a parameter store of its own, so that several ELBO Lab
    candidates can take turns in one process."""
    store = pyro.get_param_store()
    with store.scope() as scope:
        pyro.set_rng_seed(config.seed)
        parts = build_parts(config, data.data_dim, len(data.x_train), data.x_train.device)
        svi = stepper(parts, optim, config)
    take_steps = _stepper(lambda epoch: training_steps(svi, parts.elbo, data, config, epoch))

    def take_steps_in_scope(n: int) -> None:
        with store.scope(scope):
            take_steps(n)

    def test_elbo() -> float:
        with store.scope(scope):
            return mean_elbo(parts.model, parts.guide, data.x_test)

    return take_steps_in_scope, test_elbo


def reference_trainer(config: Config, data: Dataset, seed: int, loss_fn=reference.elbo_loss(),
                      **adam_options) -> Trainer:
    torch.manual_seed(seed)
    vae = reference.ReferenceVAE(data.data_dim, config.latent_dim, config.hidden_dims)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr, **adam_options)
    take_steps = _stepper(lambda epoch: reference.training_steps(vae, optimizer, data.x_train,
                                                                 config.batch_size, loss_fn))

    def test_elbo() -> float:
        with isolated_rng(EVAL_SEED, data.x_test.device):
            return reference.test_elbo(vae, data.x_test)

    return take_steps, test_elbo


def candidates(config: Config, data: Dataset) -> Dict[str, Trainer]:
    return {
        REFERENCE: reference_trainer(config, data, config.seed, fused=True),
        SELF: reference_trainer(config, data, config.seed + 1, fused=True),
        "reference, PyTorch's default Adam, a third seed":
            reference_trainer(config, data, config.seed + 2),
        "ELBO Lab, Pyro's step and pyro.optim.Adam (before)":
            lab_trainer(config.replace(eager=True), data, pyro.optim.Adam({"lr": config.lr})),
        EAGER: lab_trainer(config.replace(eager=True), data, adam(config.lr)),
        LAB: lab_trainer(config, data, adam(config.lr)),
    }


def numpyro_trainers(config: Config, data: Dataset) -> Dict[str, Tuple[Trainer, int]]:
    """NumPyro's rows, each with the updates one call of its take_steps makes per step asked
    (1 per update; ⌊N/B⌋ for the whole-epoch program, whose one call is an epoch)."""
    if not numpyro_peer.available():
        return {}
    trainers = {}
    for name, whole in ((NUMPYRO_STEP, False), (NUMPYRO_EPOCH, True)):
        take, test, unit = numpyro_peer.trainer(
            data.data_dim, config.latent_dim, config.hidden_dims, config.lr, data.x_train,
            config.batch_size, config.seed, whole_epoch=whole)
        trainers[name] = ((take, functools.partial(test, data.x_test)), unit)
    return trainers


def first_epoch(config: Config, data: Dataset, epochs: int = 4) -> Tuple[float, float]:
    """(seconds of epoch 1, median seconds of epochs 2 … ``epochs``) of a fresh default run."""
    store = pyro.get_param_store()
    with store.scope():
        pyro.set_rng_seed(config.seed)
        parts = build_parts(config, data.data_dim, len(data.x_train), data.x_train.device)
        svi = stepper(parts, adam(config.lr), config)
        seconds = []
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            collections.deque(training_steps(svi, parts.elbo, data, config, epoch), maxlen=0)
            seconds.append(time.perf_counter() - start)
    return seconds[0], statistics.median(seconds[1:])


def empty_cache(config: Config) -> Config:
    """``config`` with a recording cache of its own, empty: a new folder inside the config's
    (the benchmark gives every run one inside its own temporary folder); off stays off."""
    folder = cache_folder(config.recording_cache)
    if folder is None:
        return config
    folder.mkdir(parents=True, exist_ok=True)
    return config.replace(recording_cache=tempfile.mkdtemp(dir=folder))


def first_epochs(config: Config, data: Dataset) -> Tuple[str, List[Target]]:
    """Epoch 1's extra cost, cold (an empty recording cache) and warm (the cache the cold run
    filled): a paragraph and its two targets."""
    cold = empty_cache(config)
    (first, later), (warm_first, warm_later) = first_epoch(cold, data), first_epoch(cold, data)
    recording, loading = first - later, warm_first - warm_later
    body = (f"First epoch of a fresh default run at batch size {config.batch_size}: {first:.2f} s "
            f"with an empty recording cache, {warm_first:.2f} s with the recordings of an "
            f"earlier run; later epochs {later:.2f} s and {warm_later:.2f} s (median of epochs "
            f"2–4): recording costs {recording:.2f} s once, loading and checking "
            f"{loading:.2f} s.")
    return body, [
        Target(f"1. first epoch's recording, batch {config.batch_size}", f"{recording:.2f} s",
               f"≤ {FIRST_EPOCH_GOAL:.0f} s, reported apart", recording <= FIRST_EPOCH_GOAL),
        Target(f"1. first epoch's recordings loaded from the cache, batch {config.batch_size}",
               f"{loading:.2f} s", "reported apart", None)]


def whole_runs(config: Config, data: Dataset, rounds: int) -> Tuple[str, List[Target]]:
    """Fresh default runs of ``WHOLE_RUN_EPOCHS`` epochs, cold (an empty recording cache each)
    and warm (the cache the untimed first round filled), against a fresh reference run, in
    random order for ``rounds`` rounds (after an untimed one): a paragraph and its targets."""
    steps = WHOLE_RUN_EPOCHS * math.ceil(len(data.x_train) / config.batch_size)
    warm = empty_cache(config)
    timings = alternate({
        COLD: lambda: lab_trainer(empty_cache(config), data, adam(config.lr))[0](steps),
        WARM: lambda: lab_trainer(warm, data, adam(config.lr))[0](steps),
        REFERENCE: lambda: reference_trainer(config, data, config.seed, fused=True)[0](steps),
    }, rounds, seed=config.seed + 1)
    ratios = {name: timings.ratio(name, REFERENCE) for name in (COLD, WARM)}
    body = (f"Whole runs at batch size {config.batch_size}: a fresh model trained "
            f"{WHOLE_RUN_EPOCHS} epochs ({steps} steps, the first epoch included), {rounds} "
            f"rounds: ELBO Lab's default {timings.median(COLD):.2f} s with an empty recording "
            f"cache (ratio {format_ratio(ratios[COLD])}), {timings.median(WARM):.2f} s with the "
            f"recordings of an earlier run (ratio {format_ratio(ratios[WARM])}), the reference "
            f"{timings.median(REFERENCE):.2f} s.")
    name = f"1. whole {WHOLE_RUN_EPOCHS}-epoch run, first epoch included, batch " \
           f"{config.batch_size}"
    return body, [
        Target(f"{name}, recordings from an earlier run (warm)", format_ratio(ratios[WARM]),
               f"≤ {WHOLE_RUN_GOAL:.2f}×", ratios[WARM][0] <= WHOLE_RUN_GOAL),
        Target(f"{name}, empty recording cache (cold: a first run)",
               format_ratio(ratios[COLD]), "— (records; reported apart)", None)]


def whole_runs_section(config: Config, data: Dataset, rounds: int,
                       batch_size: int = 128) -> Section:
    """The first epoch and whole runs at ``batch_size`` alone (``benchmarks.run --only
    whole-runs``): cold and warm, against the reference."""
    run = config.replace(batch_size=batch_size)
    parts = [first_epochs(run, data), whole_runs(run, data, rounds)]
    return Section("1. Training time per epoch (784-400-20): first epochs and whole runs",
                   "\n\n".join(body for body, _ in parts),
                   [target for _, targets in parts for target in targets])


def _self_target(batch_size: int, ratio: Tuple[float, float, float]) -> Target:
    """The reference against itself: what the method's error is (turn order, load)."""
    return Target(f"1. reference against itself, batch {batch_size}", format_ratio(ratio),
                  f"1.00 ± {SELF_TOLERANCE:.2f}", abs(ratio[0] - 1) <= SELF_TOLERANCE)


def benchmark(config: Config, data: Dataset, rounds: int, batch_sizes=(128, 32),
              whole_run_rounds: int = 3) -> Section:
    """The tables of every batch size, and whole runs at the first one."""
    bodies, targets = [], []
    if not numpyro_peer.available():
        bodies.append(numpyro_peer.MISSING + ".")
    for batch_size in batch_sizes:
        run = config.replace(batch_size=batch_size)
        trainers = candidates(run, data)
        peers = numpyro_trainers(run, data)
        per_turn = STEPS_PER_TURN.get(batch_size, 4)
        steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
        # a whole-epoch program runs one epoch per call: a turn of it is one call
        calls = {name: functools.partial(take_steps, per_turn)
                 for name, (take_steps, _) in trainers.items()}
        calls.update({name: functools.partial(take_steps, 1 if unit > 1 else per_turn)
                      for name, ((take_steps, _), unit) in peers.items()})
        per_step = {name: per_turn for name in calls}
        per_step.update({name: unit for name, (_, unit) in peers.items() if unit > 1})
        timings = alternate(calls, rounds, seed=config.seed)
        for name in calls:                  # seconds per step, round by round
            timings.seconds[name] = [t / per_step[name] for t in timings.seconds[name]]
        elbos = {name: test_elbo() for name, (_, test_elbo) in trainers.items()}
        elbos.update({name: test_elbo() for name, ((_, test_elbo), _) in peers.items()})
        epochs = (rounds + 1) * per_turn / steps_per_epoch
        rows = [(name, f"{timings.median(name) * steps_per_epoch:.3f}",
                 format_ratio(timings.ratio(name, REFERENCE)), f"{elbos[name]:.2f}")
                for name in calls]
        bodies.append(f"Batch size {batch_size} ({steps_per_epoch} steps per epoch): {rounds} "
                      f"timed turns of {per_turn} steps each (NumPyro's whole-epoch program: "
                      f"one epoch a turn) after an untimed one, {epochs:.1f} epochs of "
                      "training in all:\n\n" +
                      table(["candidate", "s / epoch", "× reference", "test ELBO"], rows))
        goal = GOALS.get(batch_size)
        ratio = timings.ratio(LAB, REFERENCE)
        targets.append(Target(f"1. epoch time, batch {batch_size}, {LAB}", format_ratio(ratio),
                              f"≤ {goal:.2f}×" if goal else "—",
                              ratio[0] <= goal if goal else None))
        targets.append(_self_target(batch_size, timings.ratio(SELF, REFERENCE)))
        if NUMPYRO_EPOCH in timings.seconds:
            versus = timings.ratio(LAB, NUMPYRO_EPOCH)
            targets.append(Target(f"1. epoch time, batch {batch_size}, ELBO Lab against "
                                  f"{NUMPYRO_EPOCH}", format_ratio(versus), "≤ 1.00× (moonshot)",
                                  versus[0] <= 1.0))
        targets.append(_same_elbo_target(batch_size, elbos))
        for body, more in [first_epochs(run, data)] + (
                [whole_runs(run, data, whole_run_rounds)] if batch_size == batch_sizes[0] else []):
            bodies.append(body)
            targets.extend(more)
    return Section("1. Training time per epoch (784-400-20)",
                   "\n\n".join([paragraphs(__doc__), *bodies]), targets)


def _same_elbo_target(batch_size: int, elbos: Dict[str, float]) -> Target:
    """ELBO Lab's final test ELBO against the reference's: the mean over ELBO Lab's variants
    (the same algorithm; their optimizers differ) against the mean over the references' three
    seeds, the difference within three standard errors."""
    lab = [elbo for name, elbo in elbos.items() if name.startswith("ELBO Lab")]
    ref = [elbo for name, elbo in elbos.items() if name.startswith("reference")]
    difference = statistics.mean(lab) - statistics.mean(ref)
    stderr = math.sqrt(statistics.variance(lab) / len(lab) + statistics.variance(ref) / len(ref))
    return Target(f"1. final test ELBO, batch {batch_size}",
                  f"ELBO Lab − reference = {difference:+.2f} ± {stderr:.2f} nats "
                  f"({len(lab)} and {len(ref)} runs)", "within 3 standard errors",
                  abs(difference) <= 3 * stderr)
