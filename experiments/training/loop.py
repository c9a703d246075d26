"""The epoch loop: an attempt (one starting point) trained up to ``--epochs`` epochs, evaluated
on the test set and checkpointed after every epoch."""
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pyro
import torch
from pyro.infer import ELBO, SVI
from pyro.optim import PyroOptim
from tqdm import tqdm

from experiments.common.console import log
from experiments.common.distributed import joined_group, shared_work
from experiments.common.files import write_csv
from experiments.common.ranks import leader
from experiments.config.config import Config
from experiments.data.datasets import Dataset
from experiments.data.labels import stratified_minibatches
from experiments.evaluation.baselines import train_classifier
from experiments.evaluation.metrics import metrics_on_test_set, scoring_guide
from experiments.parts.build import Parts, parts_for
from experiments.recording.svi import RecordedSVI
from experiments.training import batches, distributed
from experiments.training.board import Board
from experiments.training.divergence import DivergenceWatch
from experiments.training.folder import save_checkpoint
from experiments.training.free_bits import FreeBitsModel
from experiments.training.initialize import initialize
from experiments.training.optim import adam
from experiments.training.weighting import LatentScale, beta_at


@dataclass
class Attempt:
    """One training from one starting point: its config (``seed``), parts, optimizer, and the
    metrics of the epochs done so far."""

    config: Config
    parts: Parts
    optim: PyroOptim
    metrics: List[dict]


def start_attempt(config: Config, data: Dataset, device: torch.device) -> Attempt:
    """Fresh parts for ``config.seed``, started from the training data as ``--init`` says;
    refuses what the parts refuse before any file is written."""
    pyro.set_rng_seed(config.seed)
    parts = parts_for(config, data.shape, device)
    initialize(parts.model, data.x_train, config.init, config.seed)
    return Attempt(config, parts, adam(config.lr), [])


def fit(attempt: Attempt, data: Dataset, folder: Path,
        on_epoch: Optional[Callable[[dict], None]] = None) -> Attempt:
    """Train from the attempt's last epoch up to ``config.epochs``, evaluating on the test set
    and writing ``metrics.csv`` and ``checkpoint.pt`` into ``folder`` after every epoch (in a
    torchrun job: every rank trains, scores its share of the test set; rank 0 writes). With
    ``--beta`` or ``--kl-warmup`` the latent terms are weighted by the epoch's β
    (``experiments.training.weighting``), recorded as the column ``beta``; the test metrics
    are the bounds at β = 1. Each row times the training steps (``seconds``) and the test
    metrics (``eval_seconds``)."""
    config, parts = attempt.config, attempt.parts
    if not attempt.metrics and parts.model.conditional:     # a resumed run has it in its state
        parts.model.fit_baseline(data.x_train, config.epochs, config.batch_size, config.lr,
                                 config.seed, binarize=config.binarize == "dynamic")
    given = labeled_test_inputs(parts, data, config)
    svi = stepper(parts, attempt.optim, config)
    weight = LatentScale()            # β on the latent sites of model and guide, while training
    board = Board(folder, attempt.optim) if config.tensorboard and leader() else None
    watch = DivergenceWatch(len(data.x_train))
    try:
        for epoch in range(len(attempt.metrics) + 1, config.epochs + 1):
            weight.scale = beta_at(config, epoch)
            with weight:
                row = train_epoch(svi, parts.elbo, data, config, epoch, watch)
            if config.beta != 1 or config.kl_warmup:
                row["beta"] = weight.scale
            start, progress = time.perf_counter(), config.progress and leader()
            scorer = scoring_guide(parts, data.x_test, progress=progress)
            with shared_work():
                row.update(metrics_on_test_set(parts.model, scorer, data.x_test,
                                               config.iwae_samples, progress=progress, **given))
            row["eval_seconds"] = time.perf_counter() - start
            distributed.check_in_sync(parts.model, parts.guide)
            attempt.metrics.append(row)
            _report(config, parts.elbo, row)
            if on_epoch is not None:
                on_epoch(row)
            if leader():
                write_csv(folder / "metrics.csv", attempt.metrics)
                save_checkpoint(folder / "checkpoint.pt", config=config, epoch=epoch,
                                model=parts.model, guide=parts.guide, optim=attempt.optim,
                                metrics=attempt.metrics, data=data.shape)
            if board is not None:
                board.epoch(row, parts.model, scorer, data)
    finally:
        if board is not None:
            board.close()
    return attempt


def stepper(parts: Parts, optim: PyroOptim, config: Config):
    """What takes the training steps: in one process ``RecordedSVI``, which replays the step
    it recorded (``experiments.recording``); ``pyro.infer.SVI`` with ``--eager`` and for the
    estimators that are not ``recordable`` (``meanfield``, ``tracegraph``, ``enum``); in a
    torchrun job ``DistributedSVI``, whose gradients DistributedDataParallel averages as they
    are computed. Where recording is refused, the line saying why is printed once; recordings
are kept between runs in ``--recording-cache`` (``experiments.recording.cache``). With
    ``--free-bits`` the model they train carries its correction (``free_bits``)."""
    model = FreeBitsModel(parts.model, parts.guide, config.free_bits) if config.free_bits \
        else parts.model
    if joined_group():
        return distributed.DistributedSVI(model, parts.guide, optim, parts.elbo)
    if config.eager or not parts.elbo.recordable:
        return SVI(model, parts.guide, optim, parts.elbo)

    def fall_back(reason: str) -> None:
        log(config, f"every step now runs through Pyro's handlers (the same numbers, slower): "
                    f"{reason}", force=True)

    return RecordedSVI(model, parts.guide, optim, parts.elbo, on_fallback=fall_back,
                       cache=config.recording_cache)


def _report(config: Config, estimator: ELBO, row: dict) -> None:
    exact = row.get("test_exact_log_likelihood")
    objective = estimator.objective(config.num_particles)
    log(config, f"epoch {row['epoch']:3d}/{config.epochs}  train {objective} "
                f"{_nats(row['train_elbo'])}"
                f"  test ELBO {_nats(row['test_elbo'])}"
                + ("" if exact is None else f"  exact log p(x) {exact:9.3f}")
                + f"  ({row['seconds']:.2f} s training, {row['eval_seconds']:.2f} s test)")


def labeled_test_inputs(parts: Parts, data: Dataset, config: Config) -> dict:
    """What the test metrics of a model with labels read beside the model, guide and x: the
    test ``labels``, and the ``classifier`` of q(y|x)'s architecture trained on the labeled
    training points alone (the baseline to beat), for as many steps as SVI takes in
    ``--epochs``; for other models, nothing."""
    if not parts.model.takes_labels:
        return {}
    known = data.y_train >= 0
    steps = config.epochs * math.ceil(len(data.x_train) / config.batch_size)
    classifier = train_classifier(parts.guide.classifier, data.x_train[known],
                                  data.y_train[known], steps, config.batch_size, config.lr,
                                  config.seed, binarize=config.binarize == "dynamic")
    return {"labels": data.y_test, "classifier": classifier}


def train_epoch(svi, estimator: ELBO, data: Dataset, config: Config, epoch: int,
                watch: Optional[DivergenceWatch] = None) -> dict:
    """One pass over the training set: the steps of ``training_steps``, with a progress bar.

    Each step's loss estimates −ELBO of the whole training set (the data plate scales the
    minibatch by N / B; in a torchrun job, the mean over the ranks), so the epoch's train ELBO
    is −mean(loss) / N nats per example; an estimator without a loss value (``has_loss``)
    leaves it empty.
    """
    has_loss = estimator.has_loss
    n = len(data.x_train)
    bar = tqdm(training_steps(svi, estimator, data, config, epoch, watch),
               total=batches.steps_per_epoch(n, config.batch_size), leave=False,
               desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress or not leader(),
               file=sys.stderr)
    total, start, step = 0.0, time.perf_counter(), 0
    for step, loss in enumerate(bar, 1):
        total += loss
        if has_loss and step % 10 == 0:
            bar.set_postfix_str(f"ELBO {-total / (step * n):.3f}", refresh=False)
    seconds = time.perf_counter() - start
    train_elbo = -total / (step * n) if has_loss else None
    return {"epoch": epoch, "train_elbo": train_elbo, "test_elbo": None, "seconds": seconds}


def training_steps(svi, estimator: ELBO, data: Dataset, config: Config, epoch: int,
                   watch: Optional[DivergenceWatch] = None) -> Iterator[float]:
    """The SVI steps of one epoch with ``estimator`` (the one ``svi`` steps), taken one per
    ``next()``, each yielding its loss: minibatches in an order fixed by (seed, epoch) (in a
    torchrun job, this rank's shares of them: ``experiments.training.batches``), binarized
    afresh with ``--binarize dynamic``. A loss that shows divergence to ``watch`` (a new one:
    from this epoch's first step) stops training (an estimator that reports no loss is not
    checked)."""
    has_loss = estimator.has_loss
    n = len(data.x_train)
    watch = watch or DivergenceWatch(n)
    labels = data.y_train if svi.model.takes_labels else None       # (N,), −1: unlabeled
    batches.seed_rank(config.seed, epoch)
    order, given = epoch_minibatches(n, labels, config, epoch, data.x_train.device)
    for step, index in enumerate(order, 1):
        x = data.x_train.index_select(0, index)       # x_train[index], 40 µs a step sooner
        if config.binarize == "dynamic":
            x = torch.bernoulli(x)
        given = {**given, "y": labels[index]} if labels is not None else given
        loss = svi.step(x, index, num_data=n, **given)
        if has_loss:
            watch.check(loss, epoch, step)
        yield loss if has_loss else 0.0


def epoch_minibatches(n: int, labels: Optional[torch.Tensor], config: Config, epoch: int,
                      device) -> Tuple[List[torch.Tensor], dict]:
    """The epoch's minibatches (indices) and what every step passes the model beside them:
    where rows drawn alike would give a minibatch fewer than ``--labeled-batch`` labeled rows
    on average (N_l·B < L·N, and some rows unlabeled), ``stratified_minibatches`` and the
    number of labeled points; otherwise rows drawn alike, in an order fixed by (seed, epoch)
    (``batches.minibatches``)."""
    known = 0 if labels is None else int((labels >= 0).sum())
    if 0 < known < n and known * config.batch_size < config.labeled_batch * n:
        order = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        drawn = stratified_minibatches(labels.cpu(), config.batch_size, config.labeled_batch,
                                       order)
        return [b.to(device) for b in drawn], {"num_labeled": known}
    return batches.minibatches(n, config.batch_size, config.seed, epoch, device), {}



def _nats(value: Optional[float]) -> str:
    return "      n/a" if value is None else f"{value:9.3f}"
