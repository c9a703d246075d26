"""The epoch loop: an attempt (one starting point) trained up to ``--epochs`` epochs, evaluated
on the test set and checkpointed after every epoch."""
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pyro
import torch
from pyro.infer import SVI
from pyro.optim import PyroOptim
from tqdm import tqdm

from experiments.common.errors import UserError
from experiments.common.files import write_csv
from experiments.data.datasets import Dataset
from experiments.estimators import ELBOS
from experiments.evaluation.metrics import metrics_on_test_set, scoring_guide
from experiments.parts.build import Parts, build
from experiments.training.config import Config
from experiments.training.folder import save_checkpoint
from experiments.training.initialize import initialize
from experiments.training.optim import adam


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Attempt:
    """One training from one starting point: its config (``seed``), parts, optimizer, and the
    metrics of the epochs done so far."""

    config: Config
    parts: Parts
    optim: PyroOptim
    metrics: List[dict]


def build_parts(config: Config, data_dim: int, num_data: int, device: torch.device) -> Parts:
    """The parts ``config`` names, for data of dimension ``data_dim``, on ``device``."""
    parts = build(config.model, config.guide, config.elbo, data_dim=data_dim,
                  num_data=num_data, **config.part_options())
    parts.model.to(device)
    parts.guide.to(device)
    return parts


def start_attempt(config: Config, data: Dataset, device: torch.device) -> Attempt:
    """Fresh parts for ``config.seed``, started from the training data as ``--init`` says;
    refuses what the parts refuse before any file is written."""
    pyro.set_rng_seed(config.seed)
    parts = build_parts(config, data.data_dim, len(data.x_train), device)
    initialize(parts.model, data.x_train, config.init, config.seed)
    return Attempt(config, parts, adam(config.lr), [])


def fit(attempt: Attempt, data: Dataset, folder: Path,
        on_epoch: Optional[Callable[[dict], None]] = None) -> Attempt:
    """Train from the attempt's last epoch up to ``config.epochs``, evaluating on the test set
    and writing ``metrics.csv`` and ``checkpoint.pt`` into ``folder`` after every epoch; each
    row times the training steps (``seconds``) and the test metrics (``eval_seconds``)."""
    config, parts = attempt.config, attempt.parts
    svi = SVI(parts.model, parts.guide, attempt.optim, parts.elbo)
    for epoch in range(len(attempt.metrics) + 1, config.epochs + 1):
        row = train_epoch(svi, data, config, epoch)
        start = time.perf_counter()
        row.update(metrics_on_test_set(
            parts.model, scoring_guide(parts, data.x_test, progress=config.progress),
            data.x_test, config.iwae_samples, progress=config.progress))
        row["eval_seconds"] = time.perf_counter() - start
        attempt.metrics.append(row)
        exact = row.get("test_exact_log_likelihood")
        log(config, f"epoch {epoch:3d}/{config.epochs}  train ELBO {_nats(row['train_elbo'])}"
                    f"  test ELBO {_nats(row['test_elbo'])}"
                    + ("" if exact is None else f"  exact log p(x) {exact:9.3f}")
                    + f"  ({row['seconds']:.2f} s training, {row['eval_seconds']:.2f} s test)")
        if on_epoch is not None:
            on_epoch(row)
        write_csv(folder / "metrics.csv", attempt.metrics)
        save_checkpoint(folder / "checkpoint.pt", config=config, epoch=epoch,
                        model=parts.model, guide=parts.guide, optim=attempt.optim,
                        metrics=attempt.metrics)
    return attempt


def train_epoch(svi: SVI, data: Dataset, config: Config, epoch: int) -> dict:
    """One pass over the training set: the steps of ``training_steps``, with a progress bar.

    Each step's loss estimates −ELBO of the whole training set (the data plate scales the
    minibatch by N / B), so the epoch's train ELBO is −mean(loss) / N nats per example; an
    estimator without a loss value (tail-adaptive) leaves it empty.
    """
    has_loss = ELBOS[config.elbo].has_loss
    n = len(data.x_train)
    num_steps = math.ceil(n / config.batch_size)
    bar = tqdm(training_steps(svi, data, config, epoch), total=num_steps, leave=False,
               desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, file=sys.stderr)
    total, start = 0.0, time.perf_counter()
    for step, loss in enumerate(bar, 1):
        total += loss
        if has_loss and step % 10 == 0:
            bar.set_postfix_str(f"ELBO {-total / (step * n):.3f}", refresh=False)
    seconds = time.perf_counter() - start
    train_elbo = -total / (num_steps * n) if has_loss else None
    return {"epoch": epoch, "train_elbo": train_elbo, "test_elbo": None, "seconds": seconds}


def training_steps(svi: SVI, data: Dataset, config: Config, epoch: int) -> Iterator[float]:
    """The SVI steps of one epoch, taken one per ``next()``, each yielding its loss: minibatches
    in an order fixed by (seed, epoch), binarized afresh with ``--binarize dynamic``. A loss
    that is NaN or infinite stops training (tail-adaptive, which reports none, is not checked)."""
    has_loss = ELBOS[config.elbo].has_loss
    n = len(data.x_train)
    order_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    batches = torch.randperm(n, generator=order_rng).to(data.x_train.device).split(config.batch_size)
    for step, index in enumerate(batches, 1):
        x = data.x_train[index]
        if config.binarize == "dynamic":
            x = torch.bernoulli(x)
        loss = svi.step(x, index, num_data=n)          # keywords: --jit traces tensors only
        if has_loss and not math.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged at epoch {epoch}, step {step}: the loss is {loss}; the last "
                f"good checkpoint (epoch {epoch - 1}) is kept; try a smaller --lr, a larger "
                "--batch-size, or --likelihood bernoulli for [0, 1] data")
        yield loss if has_loss else 0.0


def log(config: Config, message: str, force: bool = False) -> None:
    """A line on stderr beside the progress bars, unless ``--no-progress`` (or ``force``)."""
    if config.progress or force:
        tqdm.write(message, file=sys.stderr)


def _nats(value: Optional[float]) -> str:
    return "      n/a" if value is None else f"{value:9.3f}"
