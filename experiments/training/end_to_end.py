"""One training run end to end: ``run(Config(...))`` trains the model and guide with SVI,
evaluates them, and leaves a run folder behind (config.json, metrics.csv, summary.json,
checkpoint.pt and the figures); ``experiments.training.trained`` loads a finished one."""
import contextlib
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pyro

from experiments import __version__
from experiments.common.console import log
from experiments.common.distributed import (
    from_leader,
    is_collective_failure,
    leader_first,
    lost_contact,
    lost_ranks,
    shared_work,
    world,
)
from experiments.common.errors import UserError
from experiments.common.files import write_csv, write_json
from experiments.common.ranks import leader
from experiments.common.threads import Choice, threads_of_run
from experiments.config.config import RESUMABLE, Config, flag_of, resolve
from experiments.data.datasets import Dataset
from experiments.estimators import ELBOS
from experiments.evaluation.collapse_by_kind import kl_per_dimension
from experiments.evaluation.diagnostics import ground_truth_metrics
from experiments.evaluation.likelihood import elbo_per_point, iwae_estimate
from experiments.evaluation.metrics import (
    TEST_METRICS,
    final_metrics,
    metrics_on_test_set,
    scoring_guide,
)
from experiments.figures.run_figures import plot_run_figures
from experiments.parts.build import Parts
from experiments.parts.registries import check_names
from experiments.training import distributed
from experiments.training import folder as run_folder
from experiments.training.board import require_tensorboard
from experiments.training.divergence import TrainingDiverged, advice
from experiments.training.loop import fit, start_attempt
from experiments.training.prepare import device_named, prepare_data
from experiments.training.restarts import fit_restarts
from experiments.training.sizes import oversized


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
    ``force`` overwrites a folder that holds a run, or resumes one with another global batch
    (``distributed.check_global_batch``).
    ``on_start`` sees the parts and data before the first step (measurements at the initial
    parameters), ``on_epoch`` each epoch's row of metrics (progress reports).

    Started by torchrun, this process is one rank of the run
    (``experiments.training.distributed``): every rank trains and evaluates its share, rank 0
    alone writes the folder."""
    check_names(config.model, config.guide, config.elbo)
    config = resolve(config.validate())
    if config.tensorboard:
        require_tensorboard()
    saved = None
    if resume is not None:
        resume = run_folder.run_folder_of(resume)         # the folder, also if given its checkpoint
        _check_epochs_ahead(resume, config.epochs)
        saved = run_folder.load_checkpoint(resume)
    with pyro.validation_enabled(config.pyro_validation), distributed.session(config), \
            threads_of_run(config.threads, saved and saved.get("threads")) as threads:
        _announce(config, threads)
        device = device_named(config.device)
        data = leader_first(lambda: prepare_data(config, device))
        if resume is not None:
            distributed.check_global_batch(config, saved, resume, force)
        attempt = start_attempt(config.replace(restarts=1), data, device)
        distributed.check_training(config, attempt.parts.elbo, len(data.x_train))
        warning = oversized(attempt.parts.model, attempt.parts.guide, data.x_train)
        if warning:
            log(config, f"warning: {warning}", force=True)
        if on_start is not None:
            on_start(attempt.parts, data)
        run_dir = resume if resume is not None else from_leader(
            lambda: run_folder.prepare_run_dir(
                Path(config.out) if config.out else run_folder.default_run_dir(config), force))
        lock = run_folder.exclusive(run_dir) if leader() else contextlib.nullcontext()
        with lock, _interruptible(config, run_dir):
            if leader():
                if resume is None:
                    run_folder.remove_run(run_dir)
                write_json(run_dir / "config.json", config.record())
            if resume is not None:
                restarts = {}
                attempt.metrics = _restore(run_dir, attempt.parts, attempt.optim)
                fit(attempt, data, run_dir, on_epoch)
            else:
                attempt, restarts = fit_restarts(attempt, data, device, run_dir,
                                                 config.restarts, on_epoch)
            parts, metrics = attempt.parts, attempt.metrics
            start, progress = time.perf_counter(), config.progress and leader()
            scorer = scoring_guide(parts, data.x_test, final=True, progress=progress)
            with shared_work():
                summary = {**summarize(config, parts.model, scorer, data, metrics, run_dir,
                                       refitted=not parts.guide.amortized),
                           **restarts, "final_eval_seconds": time.perf_counter() - start,
                           "threads": threads.threads}
            if leader():
                write_json(run_dir / "summary.json", summary)
                plot_run_figures(parts.model, scorer, data, metrics, summary, run_dir)
    return RunResult(run_dir, summary, metrics, parts)


def _announce(config: Config, threads: Choice) -> None:
    """One line where ``--threads auto`` chose other than torch's default."""
    line = threads.announcement()
    if line is not None:
        log(config, line)


@contextlib.contextmanager
def _interruptible(config: Config, run_dir: Path) -> Iterator[None]:
    """Turn an interrupt into a summary marked ``interrupted`` beside the last checkpoint, and
    one line saying how to continue; in a torchrun job, also the loss of a rank (its
    collectives fail, or torchrun stops the others), naming the rank where it can. Divergence
    is told with what it kept."""
    try:
        yield
    except TrainingDiverged as exc:
        raise _diverged(config, run_dir, exc) from None
    except (KeyboardInterrupt, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not is_collective_failure(exc):
            raise
        epoch = run_folder.checkpoint_epoch(run_dir)
        if leader():
            if epoch:
                _mark_interrupted(config, run_dir, epoch)
            else:               # nothing to resume: leave no run behind, so starting again works
                (run_dir / "config.json").unlink(missing_ok=True)
        then = (f"continue with --resume {run_dir} --epochs {config.epochs}" if epoch else
                "nothing was kept: run the same command again")
        if isinstance(exc, RuntimeError) or lost_ranks():
            raise lost_contact(exc, f"after {epoch} finished epoch(s); {then}") from None
        if not epoch:
            raise RunInterrupted("interrupted before the first epoch finished, so nothing was "
                                 "kept: run the same command again") from None
        raise RunInterrupted(f"interrupted after {epoch} finished epoch(s); {then}") from None


def _diverged(config: Config, run_dir: Path, exc: TrainingDiverged) -> TrainingDiverged:
    """``exc`` with what the folder keeps and what may help; a folder without a checkpoint
    is left holding no run, so that the same --out takes the next try."""
    epoch = run_folder.checkpoint_epoch(run_dir)
    if not epoch and leader():
        (run_dir / "config.json").unlink(missing_ok=True)
    kept = (f"the checkpoint of epoch {epoch} is kept (continue it with --resume {run_dir} "
            "--force and a smaller --lr)" if epoch else
            f"nothing was kept, so {run_dir} can be used again")
    return TrainingDiverged(f"{exc}; {kept}; {advice(config)}")


def _mark_interrupted(config: Config, run_dir: Path, epoch: int) -> None:
    write_json(run_dir / "summary.json", {
        "status": "interrupted", "version": __version__, "completed_epochs": epoch,
        "epochs": config.epochs,
        "resume": f"python -m experiments.train --resume {run_dir} --epochs {config.epochs}"})


def _check_epochs_ahead(run_dir: Path, epochs: int) -> None:
    """Refuse to resume a run to fewer epochs than it has finished, before anything is
    written: ``--epochs`` is the total, and a run cannot go back."""
    done = run_folder.checkpoint_epoch(run_dir)
    if epochs < done:
        raise UserError(f"--resume {run_dir}: the run has finished {done} epochs and --epochs "
                        f"is the total, so {epochs} would go back; give --epochs {done} or more "
                        "(or start a new run for fewer)")


def summarize(config: Config, model, guide, data: Dataset, metrics: List[dict],
              run_dir: Path, refitted: bool = False) -> dict:
    """The final numbers: the last epoch's test metrics (measured again with ``guide`` where it
    was ``refitted`` to the test set more closely than after each epoch), the IWAE estimate
    with all of ``--iwae-samples``, its Monte Carlo standard error and its standard error over
    test points, and the ground truth where there is one. Writes each test point's ELBO and
    IWAE estimate to ``test_points.csv`` (the comparison pairs them across runs)."""
    last, ranks = metrics[-1], world().size
    progress = config.progress and leader()
    tested = {k: last[k] for k in TEST_METRICS if k in last}
    if refitted:
        tested.update(metrics_on_test_set(model, guide, data.x_test, config.iwae_samples,
                                          progress=progress))
    iwae = iwae_estimate(model, guide, data.x_test, config.iwae_samples,
                         max_plate_nesting=model.max_plate_nesting, progress=progress)
    elbo = elbo_per_point(model, guide, data.x_test, max_plate_nesting=model.max_plate_nesting)
    if leader():
        write_csv(run_dir / TEST_POINTS, [{"point": i, "test_elbo": e, "test_iwae": w}
                                          for i, (e, w) in enumerate(zip(elbo.tolist(),
                                                                         iwae.per_point.tolist()))])
    summary = {
        "status": "completed", "version": __version__,
        "run_dir": str(run_dir),
        "model": config.model, "guide": config.guide, "elbo": config.elbo, "data": config.data,
        "binarize": config.binarize,
        "num_train": len(data.x_train), "num_test": len(data.x_test),
        "epochs": last["epoch"],
        "train_elbo": last["train_elbo"],
        "train_objective": ELBOS[config.elbo].objective(config.num_particles),  # what it is
        **tested,
        "test_iwae": iwae.value,        # no Monte Carlo error from one sample: None
        "test_iwae_mc_stderr": None if math.isnan(iwae.mc_stderr) else iwae.mc_stderr,
        "test_iwae_point_stderr": iwae.point_stderr, "iwae_samples": config.iwae_samples,
        # epoch 1 also records the training step (experiments/recording): reported apart
        "first_epoch_seconds": metrics[0]["seconds"],
        "seconds_per_epoch": statistics.mean(row["seconds"] for row in metrics[1:] or metrics),
        "eval_seconds_per_epoch": sum(row.get("eval_seconds", 0.0) for row in metrics)
        / len(metrics),
        "beta": config.beta, "kl_warmup": config.kl_warmup,
        "world_size": ranks, "batch_size": config.batch_size,
        "global_batch_size": ranks * config.batch_size,
        **ground_truth_metrics(model, data.truth, data.x_test),
        **kl_per_dimension(model, guide, data.x_test),
        "latent_sizes": {name: site.size for name, site in model.latent_sites.items()
                         if not site.discrete},
    }
    return {**summary, **final_metrics(summary)}


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


def _restore(run_dir: Path, parts: Parts, optim) -> List[dict]:
    """Load the checkpoint of ``run_dir`` into ``parts`` and ``optim``; its metrics so far."""
    state = run_folder.load_checkpoint(run_dir)
    run_folder.load_parts(run_dir, state, parts)
    optim.set_state(state["optim"])
    run_folder.restore_rng(state)
    return list(state["metrics"])
