"""Train a model and guide with SVI, evaluate them, and leave a run folder behind.

    python -m experiments.train --model vae --guide normal --elbo trace --data digits

From Python the same run is ``experiments.train.run(Config(...))``.
"""
import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import pyro
import torch
from pyro.infer import SVI
from tqdm import tqdm

from experiments import runs
from experiments.build import Parts, build, check_names
from experiments.cli import add_training_options, config_from_args, explicit_options
from experiments.config import Config
from experiments.data import BINARIZE_SEED, Dataset, binarize, load_dataset
from experiments.errors import UserError
from experiments.evaluate import iwae_log_likelihood, mean_elbo
from experiments.figures import plot_autoencoder_figures, plot_training_curves
from experiments.optim import adam
from models.likelihoods import LIKELIHOODS

#: options that may differ when a run is resumed (the rest must match the saved config)
RESUMABLE = {"epochs", "progress", "device", "out"}


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    metrics: List[dict]


def run(config: Config, *, force: bool = False, resume: Optional[Path] = None) -> RunResult:
    """Train ``config``'s model and guide, or continue the run in ``resume`` up to
    ``config.epochs`` epochs in total; write its folder and return its summary."""
    config = resolve(config.validate())
    check_names(config.model, config.guide, config.elbo, config.jit)
    with pyro.validation_enabled(config.pyro_validation):
        device = _device(config.device)
        data = prepare_data(config, device)
        pyro.clear_param_store()
        pyro.set_rng_seed(config.seed)
        parts = build_parts(config, data.data_dim, device)
        optim = adam(config.lr)
        if resume is not None:
            run_dir, start, metrics = Path(resume), *_restore(resume, parts, optim)
        else:
            run_dir = runs.prepare_run_dir(Path(config.out) if config.out else
                                           runs.default_run_dir(config), force)
            start, metrics = 0, []
            runs.write_json(run_dir / "config.json", config.to_dict())
        svi = SVI(parts.model, parts.guide, optim, parts.elbo)
        for epoch in range(start + 1, config.epochs + 1):
            row = train_epoch(svi, data, config, epoch)
            row["test_elbo"] = mean_elbo(parts.model, parts.guide, data.x_test)
            metrics.append(row)
            _log(config, f"epoch {epoch:3d}/{config.epochs}  train ELBO {row['train_elbo']:9.3f}"
                         f"  test ELBO {row['test_elbo']:9.3f}  ({row['seconds']:.2f} s)")
            runs.write_csv(run_dir / "metrics.csv", metrics)
            runs.save_checkpoint(run_dir / "checkpoint.pt", config=config, epoch=epoch,
                                 model=parts.model, guide=parts.guide, optim=optim,
                                 metrics=metrics)
        summary = summarize(config, parts, data, metrics, run_dir)
        runs.write_json(run_dir / "summary.json", summary)
        plot_training_curves(metrics, run_dir / "elbo.png")
        plot_autoencoder_figures(parts.model, parts.guide, data.x_test, data.y_test,
                                 data.image_shape, run_dir)
    return RunResult(run_dir, summary, metrics)


def resolve(config: Config) -> Config:
    """Settings that do not apply are recorded as what happens: ``--binarize`` only acts on a
    Bernoulli likelihood."""
    if config.likelihood != "bernoulli" and config.binarize != "none":
        return config.replace(binarize="none")
    return config


def prepare_data(config: Config, device: torch.device) -> Dataset:
    """The data set on ``device``, checked against the likelihood's support and binarized:
    the test set (and with ``static`` the training set) once, with a fixed seed."""
    data = load_dataset(config.data, config.data_dir, config.num_train, config.num_test,
                        config.test_fraction)
    low, high = LIKELIHOODS[config.likelihood].support
    for x in (data.x_train, data.x_test):
        if x.min() < low or x.max() > high:
            raise UserError(f"{config.data}: values span [{x.min():.3g}, {x.max():.3g}] but the "
                            f"{config.likelihood} likelihood needs [{low}, {high}]; rescale the "
                            "data or choose --likelihood gaussian")
    if config.likelihood == "bernoulli":
        if config.binarize == "none":
            _log(config, "warning: --binarize none scores grey levels with a Bernoulli "
                         "likelihood, which is not a normalized density: these numbers are "
                         "not comparable with the binarized-MNIST literature", force=True)
        else:
            data.x_test = binarize(data.x_test, seed=BINARIZE_SEED)
        if config.binarize == "static":
            data.x_train = binarize(data.x_train, seed=BINARIZE_SEED + 1)
    return data.to(device)


def build_parts(config: Config, data_dim: int, device: torch.device) -> Parts:
    options = {k: v for k, v in config.to_dict().items() if k not in ("model", "guide", "elbo")}
    parts = build(config.model, config.guide, config.elbo, data_dim=data_dim, **options)
    parts.model.to(device)
    parts.guide.to(device)
    return parts


def train_epoch(svi: SVI, data: Dataset, config: Config, epoch: int) -> dict:
    """One pass over the training set: the steps of ``training_steps``, with a progress bar.

    Each step's loss estimates −ELBO of the whole training set (the data plate scales the
    minibatch by N / B), so the epoch's train ELBO is −mean(loss) / N nats per example.
    """
    n = len(data.x_train)
    num_steps = math.ceil(n / config.batch_size)
    bar = tqdm(training_steps(svi, data, config, epoch), total=num_steps, leave=False,
               desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, file=sys.stderr)
    total, start = 0.0, time.perf_counter()
    for step, loss in enumerate(bar, 1):
        total += loss
        if step % 10 == 0:
            bar.set_postfix_str(f"ELBO {-total / (step * n):.3f}", refresh=False)
    seconds = time.perf_counter() - start
    return {"epoch": epoch, "train_elbo": -total / (num_steps * n), "test_elbo": None,
            "seconds": seconds}


def training_steps(svi: SVI, data: Dataset, config: Config, epoch: int) -> Iterator[float]:
    """The SVI steps of one epoch, taken one per ``next()``, each yielding its loss: minibatches
    in an order fixed by (seed, epoch), binarized afresh with ``--binarize dynamic``."""
    n = len(data.x_train)
    order_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    batches = torch.randperm(n, generator=order_rng).to(data.x_train.device).split(config.batch_size)
    for step, index in enumerate(batches, 1):
        x = data.x_train[index]
        if config.binarize == "dynamic":
            x = torch.bernoulli(x)
        loss = svi.step(x, index, num_data=n)          # keywords: --jit traces tensors only
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged at epoch {epoch}, step {step}: the loss is {loss}; the last "
                f"good checkpoint (epoch {epoch - 1}) is kept; try a smaller --lr, a larger "
                "--batch-size, or --likelihood bernoulli for [0, 1] data")
        yield loss


def summarize(config: Config, parts: Parts, data: Dataset, metrics: List[dict],
              run_dir: Path) -> dict:
    iwae, stderr = iwae_log_likelihood(parts.model, parts.guide, data.x_test, config.iwae_samples,
                                       max_plate_nesting=parts.model.max_plate_nesting)
    return {
        "status": "completed",
        "run_dir": str(run_dir),
        "model": config.model, "guide": config.guide, "elbo": config.elbo, "data": config.data,
        "binarize": config.binarize,
        "num_train": len(data.x_train), "num_test": len(data.x_test),
        "epochs": metrics[-1]["epoch"],
        "train_elbo": metrics[-1]["train_elbo"],
        "test_elbo": metrics[-1]["test_elbo"],
        "test_iwae": iwae, "test_iwae_stderr": stderr, "iwae_samples": config.iwae_samples,
        "seconds_per_epoch": sum(row["seconds"] for row in metrics) / len(metrics),
    }


def _restore(run_dir: Path, parts: Parts, optim) -> tuple:
    state = runs.load_checkpoint(run_dir)
    try:
        parts.model.load_state_dict(state["model"])
        parts.guide.load_state_dict(state["guide"])
    except (RuntimeError, KeyError) as exc:
        raise UserError(f"--resume {run_dir}: the checkpoint does not fit this model and guide "
                        f"({str(exc).splitlines()[0]})") from None
    optim.set_state(state["optim"])
    runs.restore_rng(state)
    return state["epoch"], list(state["metrics"])


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: PyTorch sees no CUDA GPU here; use --device cpu")
    return torch.device(name)


def _log(config: Config, message: str, force: bool = False) -> None:
    if config.progress or force:
        tqdm.write(message, file=sys.stderr)


def parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.train",
        description="Train a latent variable model p(z)p(x|z) with a guide q(z|x) by SVI.")
    add_training_options(p, suppress_defaults)
    p.add_argument("--force", action="store_true",
                   help="overwrite a run folder that already holds a run")
    p.add_argument("--resume", metavar="RUN_DIR", type=Path,
                   help="continue the run in RUN_DIR up to --epochs epochs in total")
    return p


def resume_config(run_dir: Path, explicit: dict) -> Config:
    """The saved config of ``run_dir`` with the options a resume may change; any other option
    given explicitly must match what the run was trained with."""
    saved = Config.from_dict(runs.load_checkpoint(run_dir)["config"])
    changed = {k: v for k, v in explicit.items() if k in saved.to_dict() | {"progress": 0}}
    for name, value in changed.items():
        if name not in RESUMABLE and value != getattr(saved, name):
            raise UserError(f"--resume {run_dir}: --{name.replace('_', '-')} {value} differs from "
                            f"the run's {getattr(saved, name)}; a resumed run keeps its settings "
                            "(start a new run to change them)")
    return saved.replace(**{k: v for k, v in changed.items() if k in RESUMABLE and k != "out"})


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.resume is not None:
            config = resume_config(args.resume, explicit_options(parser, argv))
            result = run(config, resume=args.resume)
        else:
            result = run(config_from_args(args), force=args.force)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(result)
    return 0


def print_summary(result: RunResult) -> None:
    s = result.summary
    print(f"{s['model']} / {s['guide']} / {s['elbo']} on {s['data']} "
          f"({s['num_train']} train, {s['num_test']} test), {s['epochs']} epochs, "
          f"{s['seconds_per_epoch']:.2f} s per epoch")
    print(f"  test ELBO          {s['test_elbo']:10.3f} nats per example")
    print(f"  test IWAE log p(x) {s['test_iwae']:10.3f} ± {s['test_iwae_stderr']:.3f} "
          f"({s['iwae_samples']} samples)")
    print(f"results in {result.run_dir}/: summary.json, metrics.csv, config.json, "
          "checkpoint.pt and the figures")


if __name__ == "__main__":
    sys.exit(main())
