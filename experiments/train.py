"""Train a model and guide with SVI, evaluate them, and leave a run folder behind.

    python -m experiments.train --model vae --guide normal --elbo trace --data digits

From Python the same run is ``experiments.train.run(Config(...))``.
"""
import argparse
import contextlib
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pyro
import torch
from pyro.infer import SVI
from pyro.optim import PyroOptim
from tqdm import tqdm

from experiments import runs
from experiments.build import Parts, build, check_names
from experiments.cli import add_training_options, config_from_args, explicit_options
from experiments.config import Config
from experiments.data import BINARIZE_SEED, Dataset, binarize, load_dataset
from experiments.errors import UserError
from experiments.diagnostics import (EXACT_COLUMNS, ground_truth_metrics,
                                     metrics_on_test_set)
from experiments.estimators import ELBOS
from experiments.evaluate import iwae_log_likelihood
from experiments.figures import plot_run_figures
from experiments.initialize import initialize
from experiments.optim import adam
from experiments.refine import fit_local_posterior
from models import MODELS
from models.likelihoods import LIKELIHOODS

#: the exact diagnostics and ground truth that a summary may hold, as the command prints them
EXACT_LINES = {
    "test_exact_log_likelihood": ("exact log p(x)", "nats per example"),
    "test_gap": ("gap exact − ELBO", "estimates the mean KL(q(z|x) ‖ p(z|x))"),
    "test_posterior_kl": ("KL(q ‖ p(z|x))", "exact, from the responsibilities"),
    "true_log_likelihood": ("true log p*(x)", "of the test data under the generating distribution"),
}

#: options that may differ when a run is resumed (the rest must match the saved config)
RESUMABLE = {"epochs", "progress", "device", "out"}


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    metrics: List[dict]
    parts: Parts


def run(config: Config, *, force: bool = False, resume: Optional[Path] = None,
        on_start: Optional[Callable[[Parts, Dataset], None]] = None,
        on_epoch: Optional[Callable[[dict], None]] = None) -> RunResult:
    """Train ``config``'s model and guide, or continue the run in ``resume`` up to
    ``config.epochs`` epochs in total; write its folder and return its summary and parts.
    ``on_start`` sees the parts and data before the first step (measurements at the initial
    parameters), ``on_epoch`` each epoch's row of metrics (progress reports)."""
    check_names(config.model, config.guide, config.elbo, config.jit)
    config = resolve(config.validate())
    with pyro.validation_enabled(config.pyro_validation):
        device = _device(config.device)
        data = prepare_data(config, device)
        attempt = start_attempt(config.replace(restarts=1), data, device)
        if on_start is not None:
            on_start(attempt.parts, data)
        run_dir = Path(resume) if resume is not None else runs.prepare_run_dir(
            Path(config.out) if config.out else runs.default_run_dir(config), force)
        with runs.exclusive(run_dir), _interruptible(config, run_dir):
            if resume is not None:
                restarts = {}
                runs.write_json(run_dir / "config.json", config.to_dict())
                attempt.metrics = _restore(run_dir, attempt.parts, attempt.optim)
                fit(attempt, data, run_dir, on_epoch)
            else:
                runs.write_json(run_dir / "config.json", config.to_dict())
                attempt, restarts = fit_restarts(attempt, data, device, run_dir,
                                                 config.restarts, on_epoch)
            parts, metrics = attempt.parts, attempt.metrics
            scorer = test_guide(parts, data)
            summary = {**summarize(config, parts.model, scorer, data, metrics, run_dir),
                       **restarts}
            runs.write_json(run_dir / "summary.json", summary)
            plot_run_figures(config.model, parts.model, scorer, data, metrics, summary, run_dir)
    return RunResult(run_dir, summary, metrics, parts)


class RunInterrupted(UserError):
    """Ctrl-C or SIGTERM during a run: the checkpoint of the last finished epoch is kept."""


@contextlib.contextmanager
def _interruptible(config: Config, run_dir: Path) -> Iterator[None]:
    """Turn an interrupt into a summary marked ``interrupted`` beside the last checkpoint, and
    one line saying how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        epoch = runs.checkpoint_epoch(run_dir)
        runs.write_json(run_dir / "summary.json", {
            "status": "interrupted", "completed_epochs": epoch, "epochs": config.epochs,
            "resume": f"python -m experiments.train --resume {run_dir} --epochs {config.epochs}"})
        raise RunInterrupted(
            f"interrupted after {epoch} finished epoch(s); "
            + (f"continue with --resume {run_dir} --epochs {config.epochs}" if epoch else
               "no epoch finished, so there is no checkpoint: start the run again")) from None


def load_trained(run_dir: Path, option: str = "--run") -> Tuple[Config, Dataset, Parts]:
    """A finished run's config, data (as it trained on) and parts with the trained parameters."""
    state = runs.load_checkpoint(run_dir, option)
    config = Config.from_dict(state["config"])
    device = _device(config.device)
    data = prepare_data(config.replace(progress=False), device)
    pyro.clear_param_store()
    parts = build_parts(config, data.data_dim, len(data.x_train), device)
    _load_parts(run_dir, state, parts)
    return config, data, parts


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
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    parts = build_parts(config, data.data_dim, len(data.x_train), device)
    initialize(parts.model, data.x_train, config.init, config.seed)
    return Attempt(config, parts, adam(config.lr), [])


def fit(attempt: Attempt, data: Dataset, folder: Path,
        on_epoch: Optional[Callable[[dict], None]] = None) -> Attempt:
    """Train from the attempt's last epoch up to ``config.epochs``, evaluating on the test set
    and writing ``metrics.csv`` and ``checkpoint.pt`` into ``folder`` after every epoch."""
    config, parts = attempt.config, attempt.parts
    svi = SVI(parts.model, parts.guide, attempt.optim, parts.elbo)
    for epoch in range(len(attempt.metrics) + 1, config.epochs + 1):
        row = train_epoch(svi, data, config, epoch)
        row.update(metrics_on_test_set(parts.model, test_guide(parts, data), data.x_test,
                                       config.iwae_samples))
        attempt.metrics.append(row)
        exact = row.get("test_exact_log_likelihood")
        _log(config, f"epoch {epoch:3d}/{config.epochs}  train ELBO {_nats(row['train_elbo'])}"
                     f"  test ELBO {_nats(row['test_elbo'])}"
                     + ("" if exact is None else f"  exact log p(x) {exact:9.3f}")
                     + f"  ({row['seconds']:.2f} s)")
        if on_epoch is not None:
            on_epoch(row)
        runs.write_csv(folder / "metrics.csv", attempt.metrics)
        runs.save_checkpoint(folder / "checkpoint.pt", config=config, epoch=epoch,
                             model=parts.model, guide=parts.guide, optim=attempt.optim,
                             metrics=attempt.metrics)
    return attempt


def fit_restarts(first: Attempt, data: Dataset, device: torch.device, run_dir: Path,
                 restarts: int, on_epoch: Optional[Callable[[dict], None]] = None
                 ) -> Tuple[Attempt, dict]:
    """With one start, ``first`` trained in ``run_dir``. With ``restarts`` > 1, restart r is the
    run with seed ``seed + r`` (``first`` is r = 0), trained in ``run_dir/restarts/seed-<s>/``;
    the one with the best final train ELBO, the objective itself, is copied into ``run_dir``
    and returned, with every restart's final train ELBO for the summary."""
    if restarts == 1:
        return fit(first, data, run_dir, on_epoch), {}
    best, finals = None, []
    for r in range(restarts):
        attempt = first if r == 0 else start_attempt(
            first.config.replace(seed=first.config.seed + r), data, device)
        _log(attempt.config, f"restart {r + 1}/{restarts}: seed {attempt.config.seed}")
        folder = run_dir / "restarts" / f"seed-{attempt.config.seed}"
        folder.mkdir(parents=True, exist_ok=True)
        finals.append(fit(attempt, data, folder, on_epoch).metrics[-1]["train_elbo"])
        if best is None or finals[-1] > best.metrics[-1]["train_elbo"]:
            best, best_folder = attempt, folder
    for name in ("metrics.csv", "checkpoint.pt"):
        runs.copy_file(best_folder / name, run_dir / name)
    pyro.clear_param_store()   # from here on the best attempt's parameters, not the last one's
    _log(best.config, f"kept seed {best.config.seed}: final train ELBO "
                      f"{best.metrics[-1]['train_elbo']:.3f}, the best of {restarts} restarts")
    return best, {"restarts": restarts, "restart_train_elbos": finals,
                  "best_seed": best.config.seed}


def resolve(config: Config) -> Config:
    """Settings that do not apply are recorded as what happens: a model whose p(x|z) is fixed
    (``fixed_likelihood``) overrides ``--likelihood``, and ``--binarize`` only acts on a
    Bernoulli likelihood."""
    fixed = MODELS[config.model].fixed_likelihood
    if fixed is not None and config.likelihood != fixed:
        config = config.replace(likelihood=fixed)
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


def build_parts(config: Config, data_dim: int, num_data: int, device: torch.device) -> Parts:
    options = {k: v for k, v in config.to_dict().items() if k not in ("model", "guide", "elbo")}
    parts = build(config.model, config.guide, config.elbo, data_dim=data_dim,
                  num_data=num_data, **options)
    parts.model.to(device)
    parts.guide.to(device)
    return parts


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


def test_guide(parts: Parts, data: Dataset):
    """The guide that scores the test set: the trained one's ``scoring_guide()`` if amortized,
    else per-point parameters fitted to the test set with the model fixed
    (``experiments.refine``)."""
    if parts.guide.amortized:
        return parts.guide.scoring_guide()
    return fit_local_posterior(parts.model, data.x_test)


def summarize(config: Config, model, guide, data: Dataset, metrics: List[dict],
              run_dir: Path) -> dict:
    """The final numbers: the last epoch's, the IWAE estimate with its standard error, and the
    exact diagnostics and ground truth where there are any."""
    iwae, stderr = iwae_log_likelihood(model, guide, data.x_test, config.iwae_samples,
                                       max_plate_nesting=model.max_plate_nesting)
    last = metrics[-1]
    return {
        "status": "completed",
        "run_dir": str(run_dir),
        "model": config.model, "guide": config.guide, "elbo": config.elbo, "data": config.data,
        "binarize": config.binarize,
        "num_train": len(data.x_train), "num_test": len(data.x_test),
        "epochs": last["epoch"],
        "train_elbo": last["train_elbo"],
        "test_elbo": last["test_elbo"],
        "test_iwae": iwae, "test_iwae_stderr": stderr, "iwae_samples": config.iwae_samples,
        "seconds_per_epoch": sum(row["seconds"] for row in metrics) / len(metrics),
        **{k: last[k] for k in EXACT_COLUMNS if k in last and k != "test_iwae"},
        **ground_truth_metrics(model, data.truth, data.x_test),
    }


def _load_parts(run_dir: Path, state: dict, parts: Parts) -> None:
    try:
        parts.model.load_state_dict(state["model"])
        parts.guide.load_state_dict(state["guide"])
    except (RuntimeError, KeyError) as exc:
        raise UserError(f"{run_dir}: the checkpoint does not fit this model and guide "
                        f"({str(exc).splitlines()[0]})") from None


def _restore(run_dir: Path, parts: Parts, optim) -> List[dict]:
    """Load the checkpoint of ``run_dir`` into ``parts`` and ``optim``; its metrics so far."""
    state = runs.load_checkpoint(run_dir)
    _load_parts(run_dir, state, parts)
    optim.set_state(state["optim"])
    runs.restore_rng(state)
    return list(state["metrics"])


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: PyTorch sees no CUDA GPU here; use --device cpu")
    return torch.device(name)


def _nats(value: Optional[float]) -> str:
    return "      n/a" if value is None else f"{value:9.3f}"


def _log(config: Config, message: str, force: bool = False) -> None:
    if config.progress or force:
        tqdm.write(message, file=sys.stderr)


def parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.train",
        description="Train a latent variable model p(z)p(x|z) with a guide q(z|x) by SVI.")
    add_training_options(p, suppress_defaults)
    p.add_argument("--force", action="store_true",
                   help="overwrite a run folder that already holds a run; with --resume, "
                        "continue with changed settings")
    p.add_argument("--resume", metavar="RUN_DIR", type=Path,
                   help="continue the run in RUN_DIR up to --epochs epochs in total")
    return p


def resume_config(run_dir: Path, explicit: dict, force: bool = False) -> Config:
    """The saved config of ``run_dir`` with the options a resume may change; any other option
    given explicitly must match what the run was trained with, unless ``force`` (then the
    checkpoint must still fit the parts those options build)."""
    saved = Config.from_dict(runs.load_checkpoint(run_dir)["config"])
    changed = {k: v for k, v in explicit.items()
               if k in saved.to_dict() | {"progress": 0} and k != "out"}
    for name, value in changed.items():
        if name not in RESUMABLE and value != getattr(saved, name) and not force:
            raise UserError(f"--resume {run_dir}: --{name.replace('_', '-')} {value} differs from "
                            f"the run's {getattr(saved, name)}; a resumed run keeps its settings "
                            "(start a new run, or pass --force to continue with the change)")
    return saved.replace(**changed)


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.resume is not None:
            config = resume_config(args.resume, explicit_options(parser, argv), args.force)
            result = run(config, resume=args.resume)
        else:
            result = run(config_from_args(args), force=args.force)
    except RunInterrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_summary(result)
    return 0


def _terminate(signum, frame):
    """SIGTERM (a scheduler's stop) is handled like Ctrl-C: keep the checkpoint, then stop."""
    raise KeyboardInterrupt


def print_summary(result: RunResult) -> None:
    s = result.summary
    print(f"{s['model']} / {s['guide']} / {s['elbo']} on {s['data']} "
          f"({s['num_train']} train, {s['num_test']} test), {s['epochs']} epochs, "
          f"{s['seconds_per_epoch']:.2f} s per epoch")
    print(f"  test ELBO          {s['test_elbo']:10.3f} nats per example")
    print(f"  test IWAE log p(x) {s['test_iwae']:10.3f} ± {s['test_iwae_stderr']:.3f} "
          f"({s['iwae_samples']} samples)")
    for key, (label, note) in EXACT_LINES.items():
        if key in s:
            print(f"  {label:<18} {s[key]:10.3f} {note}")
    if "recovery_means_error" in s:
        print(f"  recovery errors    weights {s['recovery_weights_error']:.3f}, means "
              f"{s['recovery_means_error']:.3f}, scales {s['recovery_scales_error']:.3f} "
              "(largest, against the true mixture)")
    if "restarts" in s:
        print(f"  kept seed {s['best_seed']}, the best final train ELBO of {s['restarts']} "
              f"restarts: {', '.join(f'{v:.3f}' for v in s['restart_train_elbos'])}")
    print(f"results in {result.run_dir}/: summary.json, metrics.csv, config.json, "
          "checkpoint.pt and the figures")


if __name__ == "__main__":
    sys.exit(main())
