"""The runs of a comparison: one per (estimator, guide, K, seed), planned before any starts and
trained in worker processes, with the gradients measured at the initial and final parameters.

Runs with the same seed share the initial parameters and the data order; every gradient
measurement uses one fixed minibatch.
"""
import json
import math
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

from experiments.common.errors import UserError
from experiments.common.files import write_json, write_text
from experiments.common.threads import decide
from experiments.comparison.ais_column import ais_beside_iwae
from experiments.config.config import Config, resolve
from experiments.data.datasets import BINARIZE_SEED, Dataset, binarize
from experiments.estimators import ELBOS
from experiments.evaluation.gradients import gradient_draws, gradient_stats
from experiments.parts.build import Parts
from experiments.parts.compatibility import check_combination
from experiments.training.end_to_end import RunInterrupted
from experiments.training.folder import checkpoint_epoch, load_checkpoint
from experiments.training.workers import Workers, progress_queue, resolved, train_in_worker
from guides import GUIDES

GROUPS = ("guide", "model")
#: what the comparison reads of a finished run, in the run's folder: written last, so a run
#: with this file is done (a rerun skips it) and one without is continued from its checkpoint
RESULT = "comparison-run.json"


@dataclass
class Job:
    """One training run of the comparison."""

    number: int
    config: dict
    grad_draws: int
    threads: int
    default_guide: str = ""
    resume: bool = True         # skip a finished run, continue one from its checkpoint
    ais_points: int = 0         # test points of its AIS estimate (``ais_column``); 0: none

    @property
    def label(self) -> str:
        return label(self.config["elbo"], self.config["num_particles"], self.config["guide"],
                     self.default_guide)

    @property
    def identity(self) -> dict:
        """What a comparison's record says of its run."""
        return {"label": self.label, "elbo": self.config["elbo"],
                "num_particles": self.config["num_particles"], "seed": self.config["seed"]}


def label(elbo: str, k: int, guide: str = "", default_guide: str = "") -> str:
    """``iwae K=10``, or ``enum/enum`` for an estimator run with another guide than --guide:
    K is named for a K-sample estimator and for any other trained with K > 1 particles
    (``trace K=5`` averages 5 one-sample ELBOs)."""
    name = elbo if guide == default_guide else f"{elbo}/{guide}"
    return f"{name} K={k}" if ELBOS[elbo].k_sample or k > 1 else name


def parse_elbos(text: str, default_guide: str) -> List[Tuple[str, str]]:
    """``trace,tracegraph,enum/enum`` → [(elbo, guide), …]: an item may name its own guide."""
    pairs = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        elbo, _, guide = item.partition("/")
        if elbo not in ELBOS or (guide and guide not in GUIDES):
            raise UserError(f"unknown estimator or guide in --elbos item {item!r}: estimators "
                            f"are {', '.join(ELBOS)}; guides {', '.join(GUIDES)}")
        if (elbo, guide or default_guide) in pairs:
            raise UserError(f"--elbos names {item} twice; name each estimator once "
                            "(--seeds repeats every run with other seeds)")
        pairs.append((elbo, guide or default_guide))
    if not pairs:
        raise UserError("--elbos names no estimator")
    return pairs


def plan(config: Config, elbos: List[Tuple[str, str]], ks: List[int], seeds: int, out: Path,
         grad_draws: int, jobs: int, resume: bool = True, ais_points: int = 0) -> List[Job]:
    """Every (estimator, guide, K, seed) run, refusing impossible combinations before any
    starts; with ``resume``, finished runs are skipped and stopped ones continued; with
    ``ais_points``, each run is also scored by AIS on that many test points."""
    planned = []
    threads = threads_per_job(jobs, config.threads)
    for elbo, guide in elbos:
        for k in (ks if ELBOS[elbo].k_sample else ks[:1]):
            vectorize = config.vectorize_particles or (ELBOS[elbo].k_sample and k > 1)
            setting = config.replace(elbo=elbo, guide=guide, num_particles=k,
                                     vectorize_particles=vectorize)
            check_combination(config.model, guide, elbo, **setting.part_options())
            name = label(elbo, k, guide, config.guide)
            for seed in range(config.seed, config.seed + seeds):
                folder = out / "runs" / (name.replace(" K=", "-K").replace("/", "-")
                                         + f"-seed{seed}")
                planned.append(Job(len(planned), {**setting.to_dict(), "seed": seed,
                                                  "out": str(folder)},
                                   grad_draws, threads, config.guide, resume, ais_points))
    return planned


def threads_per_job(jobs: int, requested: Optional[int] = None) -> int:
    """Intra-op threads for each of ``jobs`` runs in parallel: ``--threads N`` each, else the
    threads one run would take now (``experiments.common.threads.decide``: the cores left free
    by other processes, or the user's ``OMP_NUM_THREADS``) shared out."""
    if requested is not None:
        return requested
    return max(1, decide(None).threads // jobs)


def fixed_minibatch(config: Config, data: Dataset):
    """The first ``batch_size`` training points, binarized once with a fixed seed when the
    likelihood is Bernoulli: every gradient measurement of the comparison uses this batch."""
    x = data.x_train[: config.batch_size]
    if config.binarize == "dynamic":
        x = binarize(x, seed=BINARIZE_SEED + 2)
    return x, torch.arange(len(x), device=x.device), len(data.x_train)


def measure(parts: Parts, config: Config, data: Dataset, draws: int) -> Dict[str, float]:
    """Total variance and mean SNR of ``draws`` gradients of the guide's and the model's
    parameters on the fixed minibatch."""
    x, index, n = fixed_minibatch(config, data)
    stats = {g: gradient_stats(d) for g, d in gradient_draws(parts, x, index, n, draws).items()}
    return {**{f"grad_var_{g}": stats[g].total_variance for g in GROUPS},
            **{f"grad_snr_{g}": stats[g].mean_snr for g in GROUPS}}


def run_job(job: Job) -> dict:
    """Train one run (in a worker process), measuring the gradients before and after, and
    record what the comparison reads in the run's ``RESULT`` file. A run whose record exists
    is not trained again; one with a checkpoint continues from it (unless ``job.resume`` is
    off: then it starts afresh)."""
    run_dir = Path(job.config["out"])
    if job.resume and (run_dir / RESULT).exists():
        return {**json.loads((run_dir / RESULT).read_text()), "kept": True}
    (run_dir / RESULT).unlink(missing_ok=True)
    config, measured, progress = resolved(job.config), {}, progress_queue()

    def at_start(parts: Parts, data: Dataset) -> None:
        measured["data"] = data
        measured["init"] = measure(parts, config, data, job.grad_draws)

    def on_epoch(row: dict) -> None:
        if progress is not None:
            progress.put((job.number, row["epoch"], row["test_elbo"]))

    resume = job.resume and _checkpoint_fits(run_dir, config)
    result = train_in_worker(job.config, job.threads, at_start, on_epoch, resume=resume)
    final = measure(result.parts, config, measured["data"], job.grad_draws)
    steps = math.ceil(len(measured["data"].x_train) / config.batch_size)
    record = {"status": "completed", **job.identity, "run_dir": str(result.run_dir),
              "summary": result.summary, "metrics": result.metrics, "steps_per_epoch": steps,
              "final": final, "init": measured["init"]}
    if job.ais_points:
        record["ais"] = ais_beside_iwae(result.parts, measured["data"], job.ais_points,
                                        config.iwae_samples)
    write_json(run_dir / RESULT, record)
    return record


def _checkpoint_fits(run_dir: Path, config: Config) -> bool:
    """Whether ``run_dir`` holds a checkpoint of a run with exactly ``config``'s settings."""
    try:
        saved = load_checkpoint(run_dir)["config"]
    except UserError:
        return False
    return resolve(Config.from_dict(saved)).to_dict() == config.to_dict()


class ComparisonInterrupted(UserError):
    """Ctrl-C or SIGTERM during a comparison: finished runs and checkpoints are kept."""


def execute(jobs: List[Job], workers: int, progress: bool = True) -> List[dict]:
    """Run the jobs in ``workers`` processes, one progress bar each on a terminal (elsewhere,
    as in a log file, a line per epoch of each run), unless not ``progress``, and a ``done:``
    line once a run's record is written. A run that fails
    is returned as a record of status ``failed`` with its error (the traceback of an
    unexpected one in its folder's error.txt), so the others are still reported. Ctrl-C or
    SIGTERM stops every run (``Workers.interrupt``) and raises ``ComparisonInterrupted``."""
    bars = [tqdm(total=job.config["epochs"], desc=f"{job.label} seed {job.config['seed']}",
                 position=i, leave=True, file=sys.stderr,
                 disable=not (progress and sys.stderr.isatty())) for i, job in enumerate(jobs)]
    records: Dict[int, dict] = {}
    with Workers(workers, progress=True) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        try:
            while len(records) < len(jobs):
                _show_progress(pool.progress, bars, jobs, in_lines=progress)
                for future, job in futures.items():
                    if not future.done() or job.number in records:
                        continue
                    records[job.number] = _record(job, future)
                    _say(_done_line(job, records[job.number]), bars)
        except KeyboardInterrupt:
            pool.interrupt()
            for bar in bars:
                bar.close()
            raise ComparisonInterrupted(_interrupted(jobs)) from None
    for bar in bars:
        bar.close()
    return [records[job.number] for job in jobs]


def _show_progress(queue, bars: List[tqdm], jobs: List[Job], in_lines: bool) -> None:
    """Move the bars by the epoch reported meanwhile (waiting 0.2 s for one); where the bars
    are off (no terminal) and ``in_lines``, say it in a line."""
    try:
        number, epoch, test_elbo = queue.get(timeout=0.2)
    except Empty:
        return
    bar = bars[number]
    bar.update(1)
    bar.set_postfix_str(f"test ELBO {test_elbo:.3f}")
    if bar.disable and in_lines:
        job = jobs[number]
        print(f"epoch {epoch}/{job.config['epochs']}: {job.label} seed {job.config['seed']}, "
              f"test ELBO {test_elbo:.3f}", file=sys.stderr, flush=True)


def _record(job: Job, future) -> dict:
    """The run's record, or one of status ``failed`` with the error's message."""
    try:
        return future.result()
    except RunInterrupted:
        raise KeyboardInterrupt from None       # a worker saw the interrupt first
    except UserError as exc:
        error = str(exc)
    except Exception as exc:                    # a bug: its traceback beside the run
        trace = "".join(traceback.format_exception(exc))
        if exc.__cause__ is not None:           # the worker's traceback, as the pool sends it
            trace = str(exc.__cause__) + "\n" + trace
        path = Path(job.config["out"]) / "error.txt"
        if path.parent.is_dir():
            write_text(path, trace)
        error = f"{type(exc).__name__}: {exc} (traceback in {path})"
    return {"status": "failed", "error": error, **job.identity, "run_dir": job.config["out"]}


def _done_line(job: Job, record: dict) -> str:
    name = f"{job.label} seed {job.config['seed']}"
    if record["status"] != "completed":
        return f"failed: {name}: {record['error']}"
    s = record["summary"]
    return (f"{'kept' if record.get('kept') else 'done'}: {name}, test ELBO "
            f"{s['test_elbo']:.3f}, test IWAE {s['test_iwae']:.3f}"
            + (" (finished before)" if record.get("kept") else ""))


def _say(line: str, bars: List[tqdm]) -> None:
    if any(not bar.disable for bar in bars):
        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _interrupted(jobs: List[Job]) -> str:
    """What an interrupt left: runs finished, and runs stopped at a checkpoint."""
    finished = sum(1 for job in jobs if (Path(job.config["out"]) / RESULT).exists())
    started = sum(1 for job in jobs if checkpoint_epoch(Path(job.config["out"])) > 0)
    out = Path(jobs[0].config["out"]).parent.parent
    return (f"interrupted: {finished} of {len(jobs)} runs finished, "
            f"{started - finished} stopped at a checkpoint; continue with "
            f"python -m experiments.compare --resume {out}")
