"""One training run end to end: ``run(Config(...))`` trains the model and guide with SVI,
evaluates them, and leaves a run folder behind (config.json, metrics.csv, summary.json,
checkpoint.pt and the figures); ``load_trained`` gives a finished run's parts back."""
import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pyro
import torch

from experiments.common.errors import UserError
from experiments.common.files import write_csv, write_json
from experiments.data.datasets import BINARIZE_SEED, Dataset, binarize, load_dataset
from experiments.evaluation.diagnostics import ground_truth_metrics
from experiments.evaluation.likelihood import elbo_per_point, iwae_estimate
from experiments.evaluation.metrics import TEST_METRICS, metrics_on_test_set, scoring_guide
from experiments.figures.run import plot_run_figures
from experiments.parts.build import Parts
from experiments.parts.registries import check_names
from experiments.training import folder as run_folder
from experiments.training.config import RESUMABLE, Config, flag_of, resolve
from experiments.training.loop import build_parts, fit, log, start_attempt
from experiments.training.restarts import fit_restarts
from models.likelihoods import LIKELIHOODS


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    metrics: List[dict]
    parts: Parts


#: each test point's ELBO and IWAE estimate after training, one row per point
TEST_POINTS = "test_points.csv"


class RunInterrupted(UserError):
    """Ctrl-C or SIGTERM during a run: the checkpoint of the last finished epoch is kept."""


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
        device = device_named(config.device)
        data = prepare_data(config, device)
        attempt = start_attempt(config.replace(restarts=1), data, device)
        if on_start is not None:
            on_start(attempt.parts, data)
        run_dir = Path(resume) if resume is not None else run_folder.prepare_run_dir(
            Path(config.out) if config.out else run_folder.default_run_dir(config), force)
        with run_folder.exclusive(run_dir), _interruptible(config, run_dir):
            write_json(run_dir / "config.json", config.to_dict())
            if resume is not None:
                restarts = {}
                attempt.metrics = _restore(run_dir, attempt.parts, attempt.optim)
                fit(attempt, data, run_dir, on_epoch)
            else:
                attempt, restarts = fit_restarts(attempt, data, device, run_dir,
                                                 config.restarts, on_epoch)
            parts, metrics = attempt.parts, attempt.metrics
            start = time.perf_counter()
            scorer = scoring_guide(parts, data.x_test, final=True, progress=config.progress)
            summary = {**summarize(config, parts.model, scorer, data, metrics, run_dir,
                                   refitted=not parts.guide.amortized),
                       **restarts, "final_eval_seconds": time.perf_counter() - start}
            write_json(run_dir / "summary.json", summary)
            plot_run_figures(parts.model, scorer, data, metrics, summary, run_dir)
    return RunResult(run_dir, summary, metrics, parts)


@contextlib.contextmanager
def _interruptible(config: Config, run_dir: Path) -> Iterator[None]:
    """Turn an interrupt into a summary marked ``interrupted`` beside the last checkpoint, and
    one line saying how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        epoch = run_folder.checkpoint_epoch(run_dir)
        write_json(run_dir / "summary.json", {
            "status": "interrupted", "completed_epochs": epoch, "epochs": config.epochs,
            "resume": f"python -m experiments.train --resume {run_dir} --epochs {config.epochs}"})
        raise RunInterrupted(
            f"interrupted after {epoch} finished epoch(s); "
            + (f"continue with --resume {run_dir} --epochs {config.epochs}" if epoch else
               "no epoch finished, so there is no checkpoint: start the run again")) from None


def load_trained(run_dir: Path, option: str = "--run") -> Tuple[Config, Dataset, Parts]:
    """A finished run's config, data (as it trained on) and parts with the trained parameters."""
    state = run_folder.load_checkpoint(run_dir, option)
    config = Config.from_dict(state["config"])
    device = device_named(config.device)
    data = prepare_data(config.replace(progress=False), device)
    parts = build_parts(config, data.data_dim, len(data.x_train), device)
    _load_parts(run_dir, state, parts)
    return config, data, parts


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
            log(config, "warning: --binarize none scores grey levels with a Bernoulli "
                        "likelihood, which is not a normalized density: these numbers are "
                        "not comparable with the binarized-MNIST literature", force=True)
        else:
            data.x_test = binarize(data.x_test, seed=BINARIZE_SEED)
        if config.binarize == "static":
            data.x_train = binarize(data.x_train, seed=BINARIZE_SEED + 1)
    return data.to(device)


def summarize(config: Config, model, guide, data: Dataset, metrics: List[dict],
              run_dir: Path, refitted: bool = False) -> dict:
    """The final numbers: the last epoch's test metrics (measured again with ``guide`` where it
    was ``refitted`` to the test set more closely than after each epoch), the IWAE estimate
    with all of ``--iwae-samples``, its Monte Carlo standard error and its standard error over
    test points, and the ground truth where there is one. Writes each test point's ELBO and
    IWAE estimate to ``test_points.csv`` (the comparison pairs them across runs)."""
    last = metrics[-1]
    tested = {k: last[k] for k in TEST_METRICS if k in last}
    if refitted:
        tested = metrics_on_test_set(model, guide, data.x_test, config.iwae_samples,
                                     progress=config.progress)
    iwae = iwae_estimate(model, guide, data.x_test, config.iwae_samples,
                         max_plate_nesting=model.max_plate_nesting, progress=config.progress)
    elbo = elbo_per_point(model, guide, data.x_test, max_plate_nesting=model.max_plate_nesting)
    write_csv(run_dir / TEST_POINTS, [{"point": i, "test_elbo": e, "test_iwae": w}
                                      for i, (e, w) in enumerate(zip(elbo.tolist(),
                                                                     iwae.per_point.tolist()))])
    return {
        "status": "completed",
        "run_dir": str(run_dir),
        "model": config.model, "guide": config.guide, "elbo": config.elbo, "data": config.data,
        "binarize": config.binarize,
        "num_train": len(data.x_train), "num_test": len(data.x_test),
        "epochs": last["epoch"],
        "train_elbo": last["train_elbo"],
        **tested,
        "test_iwae": iwae.value,        # no Monte Carlo error from one sample: None
        "test_iwae_mc_stderr": None if math.isnan(iwae.mc_stderr) else iwae.mc_stderr,
        "test_iwae_point_stderr": iwae.point_stderr, "iwae_samples": config.iwae_samples,
        "seconds_per_epoch": sum(row["seconds"] for row in metrics) / len(metrics),
        "eval_seconds_per_epoch": sum(row.get("eval_seconds", 0.0) for row in metrics)
        / len(metrics),
        **ground_truth_metrics(model, data.truth, data.x_test),
    }


def resume_config(run_dir: Path, explicit: dict, force: bool = False) -> Config:
    """The saved config of ``run_dir`` with the options a resume may change; any other option
    given explicitly must match what the run was trained with, unless ``force`` (then the
    checkpoint must still fit the parts those options build)."""
    saved = Config.from_dict(run_folder.load_checkpoint(run_dir)["config"])
    names = {f.name for f in dataclasses.fields(Config)}
    changed = {k: v for k, v in explicit.items() if k in names and k != "out"}
    for name, value in changed.items():
        if name not in RESUMABLE and value != getattr(saved, name) and not force:
            raise UserError(f"--resume {run_dir}: {flag_of(name)} {value} differs from "
                            f"the run's {getattr(saved, name)}; a resumed run keeps its settings "
                            "(start a new run, or pass --force to continue with the change)")
    return saved.replace(**changed)


def _load_parts(run_dir: Path, state: dict, parts: Parts) -> None:
    try:
        parts.model.load_state_dict(state["model"])
        parts.guide.load_state_dict(state["guide"])
    except (RuntimeError, KeyError) as exc:
        raise UserError(f"{run_dir}: the checkpoint does not fit this model and guide "
                        f"({str(exc).splitlines()[0]})") from None


def _restore(run_dir: Path, parts: Parts, optim) -> List[dict]:
    """Load the checkpoint of ``run_dir`` into ``parts`` and ``optim``; its metrics so far."""
    state = run_folder.load_checkpoint(run_dir)
    _load_parts(run_dir, state, parts)
    optim.set_state(state["optim"])
    run_folder.restore_rng(state)
    return list(state["metrics"])


def device_named(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: PyTorch sees no CUDA GPU here; use --device cpu")
    return torch.device(name)
