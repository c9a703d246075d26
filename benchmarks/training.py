"""Target 1: training time of ``vae``/``normal``/``trace`` against the reference, per epoch.

ELBO Lab trains through its own ``experiments.training.loop.training_steps`` (the loop of
``train_epoch``) and ``pyro.infer.SVI``; the reference through
``benchmarks.reference.training_steps``. Both see the same data tensors, minibatches drawn and
binarized inside the timed steps. The candidates take turns of a few steps each, epoch after
epoch; a turn is short, so all candidates of a round meet the same load, and the time per epoch
is the median time per step × steps per epoch. The ELBO Lab rows show what each speed-up
bought: Pyro's per-parameter ``pyro.optim.Adam`` (what the foundation trained with), one Adam
over all parameters, the fused Adam (the default), and ``--jit``. The references with other
seeds measure the noise, of the timings and of the final test ELBO; the one with PyTorch's
default (unfused) Adam also shows where a hand-written loop usually stands. The final test
ELBOs (one sample of z per test image) of ELBO Lab's variants and of the references are
compared as two groups of runs.
"""
import collections
import functools
import itertools
import math
import statistics
from typing import Callable, Dict, Iterator, Tuple

import pyro
import torch
from pyro.infer import SVI

from benchmarks import reference
from benchmarks.report import Section, Target, paragraphs, table
from benchmarks.timing import alternate, format_ratio
from experiments.common.rng import isolated_rng
from experiments.data.datasets import Dataset
from experiments.evaluation.likelihood import EVAL_SEED, mean_elbo
from experiments.training.config import Config
from experiments.training.loop import build_parts, stepper, training_steps
from experiments.training.optim import JointOptim, adam

REFERENCE = "reference (fused Adam, as ELBO Lab)"
LAB = "ELBO Lab (fused Adam, the default)"
LAB_JIT = "ELBO Lab --jit"
GOALS = {128: 1.10, 32: 1.25}
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
    take_steps = _stepper(lambda epoch: training_steps(svi, data, config, epoch))

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
        "reference, another seed": reference_trainer(config, data, config.seed + 1, fused=True),
        "reference, PyTorch's default Adam, a third seed":
            reference_trainer(config, data, config.seed + 2),
        "ELBO Lab, pyro.optim.Adam (one Adam per parameter; before)":
            lab_trainer(config, data, pyro.optim.Adam({"lr": config.lr})),
        "ELBO Lab, one Adam over all parameters, unfused":
            lab_trainer(config, data, JointOptim(torch.optim.Adam, {"lr": config.lr})),
        LAB: lab_trainer(config, data, adam(config.lr)),
        LAB_JIT: lab_trainer(config.replace(jit=True), data, adam(config.lr)),
    }


def benchmark(config: Config, data: Dataset, rounds: int, batch_sizes=(128, 32)) -> Section:
    bodies, targets = [], []
    for batch_size in batch_sizes:
        trainers = candidates(config.replace(batch_size=batch_size), data)
        per_turn = STEPS_PER_TURN.get(batch_size, 4)
        timings = alternate({name: functools.partial(take_steps, per_turn)
                             for name, (take_steps, _) in trainers.items()}, rounds)
        elbos = {name: test_elbo() for name, (_, test_elbo) in trainers.items()}
        steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
        epochs = (rounds + 1) * per_turn / steps_per_epoch
        rows = [(name, f"{timings.median(name) / per_turn * steps_per_epoch:.3f}",
                 format_ratio(timings.ratio(name, REFERENCE)), f"{elbos[name]:.2f}")
                for name in trainers]
        bodies.append(f"Batch size {batch_size} ({steps_per_epoch} steps per epoch): {rounds} "
                      f"timed turns of {per_turn} steps each after an untimed one, "
                      f"{epochs:.1f} epochs of training in all:\n\n" +
                      table(["candidate", "s / epoch", "× reference", "test ELBO"], rows))
        goal = GOALS.get(batch_size)
        for name in (LAB, LAB_JIT):
            ratio = timings.ratio(name, REFERENCE)
            targets.append(Target(f"1. epoch time, batch {batch_size}, {name}",
                                  format_ratio(ratio), f"≤ {goal:.2f}×" if goal else "—",
                                  ratio[0] <= goal if goal else None))
        targets.append(_same_elbo_target(batch_size, elbos))
    return Section("1. Training time per epoch (784-400-20)",
                   "\n\n".join([paragraphs(__doc__), *bodies]), targets)


def _same_elbo_target(batch_size: int, elbos: Dict[str, float]) -> Target:
    """ELBO Lab's final test ELBO against the reference's: the mean over ELBO Lab's variants
    (the same algorithm; their rounding differs, so they train apart) against the mean over the
    references' three seeds, the difference within three standard errors."""
    lab = [elbo for name, elbo in elbos.items() if name.startswith("ELBO Lab")]
    ref = [elbo for name, elbo in elbos.items() if name.startswith("reference")]
    difference = statistics.mean(lab) - statistics.mean(ref)
    stderr = math.sqrt(statistics.variance(lab) / len(lab) + statistics.variance(ref) / len(ref))
    return Target(f"1. final test ELBO, batch {batch_size}",
                  f"ELBO Lab − reference = {difference:+.2f} ± {stderr:.2f} nats "
                  f"({len(lab)} and {len(ref)} runs)", "within 3 standard errors",
                  abs(difference) <= 3 * stderr)
