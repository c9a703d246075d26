"""A comparison on any scheduler: its runs as command lines, and the run folders gathered back.

    python -m experiments.compare <options> --out runs/cmp --plan-only   # plan.json, commands.txt
    parallel -j 4 < runs/cmp/commands.txt             # or a Slurm array: one line per task
    python -m experiments.compare --collect runs/cmp  # comparison.csv/md and figures

``plan.json`` holds every run of the comparison (its ``Job``: config, gradient draws), the
report's settings and the version of ELBO Lab that planned it; each line of ``commands.txt``
runs one job (``--run-job plan.json --job N``) exactly as a local ``--jobs`` worker does, and
leaves beside the run's own files
``comparison-run.json``: what the report reads of the run (its summary, metrics and gradient
measurements). ``--collect`` reads those files back in the plan's order and writes the same
report as a local run; a run without one is listed with what its folder says about it
(interrupted, unfinished, never started), not left out silently.
"""
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from experiments import __version__
from experiments.common.errors import UserError
from experiments.common.files import write_json, write_text
from experiments.comparison.jobs import RESULT, Job, run_job

PLAN, COMMANDS = "plan.json", "commands.txt"
PLAN_FORMAT = "elbo-lab-comparison-plan/1"


def write_plan(out: Path, jobs: List[Job], report: dict) -> Path:
    """``out/plan.json`` (the jobs, and ``report``: the report's settings) and
    ``out/commands.txt``, one command line per job; returns the commands' path."""
    plan = Path(out).resolve() / PLAN
    write_json(plan, {"format": PLAN_FORMAT, "version": __version__, "report": report,
                      "jobs": [dataclasses.asdict(job) for job in jobs]})
    lines = [f"{shlex.quote(sys.executable)} -m experiments.compare --run-job "
             f"{shlex.quote(str(plan))} --job {job.number}" for job in jobs]
    write_text(plan.parent / COMMANDS, "\n".join(lines) + "\n")
    return plan.parent / COMMANDS


def read_plan(path: Path, option: str) -> Tuple[List[Job], dict]:
    """The jobs and report settings of a plan (a ``plan.json`` or the folder holding it)."""
    path = Path(path)
    path = path / PLAN if path.is_dir() else path
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{option} {path}: no comparison plan there ({type(exc).__name__}); "
                        "write one with --plan-only") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise UserError(f"{option} {path}: not a comparison plan (expected {PLAN_FORMAT})")
    return [Job(**job) for job in plan["jobs"]], plan["report"]


def run_planned(plan: Path, number: int) -> dict:
    """Job ``number`` of ``plan``, trained here with torch's threads (``OMP_NUM_THREADS``, or
    every core), its result recorded in its run folder (``run_job``: a run recorded before is
    not trained again, one stopped is continued from its checkpoint)."""
    jobs, _ = read_plan(plan, "--run-job")
    if not 0 <= number < len(jobs):
        raise UserError(f"--job {number}: the plan {plan} has jobs 0 to {len(jobs) - 1}")
    return run_job(dataclasses.replace(jobs[number], threads=torch.get_num_threads()))


def collect(folder: Path) -> Tuple[List[dict], List[str], dict]:
    """The recorded results of the plan in ``folder``, in the plan's order; a line for each
    run without one, saying what its folder holds; the report's settings."""
    jobs, report = read_plan(folder, "--collect")
    results, missing = [], []
    for job in jobs:
        run_dir = Path(job.config["out"])
        try:
            results.append(json.loads((run_dir / RESULT).read_text()))
        except (OSError, ValueError):
            missing.append(f"{job.label} seed {job.config['seed']}: {_state(run_dir, job)} "
                           f"(job {job.number}, {run_dir})")
    if not results:
        raise UserError(f"--collect {folder}: none of its {len(jobs)} runs has finished; run "
                        f"the lines of {Path(folder) / COMMANDS} first")
    return results, missing, report


def _state(run_dir: Path, job: Job) -> str:
    """What a run folder without a result says about its run."""
    epochs = job.config["epochs"]
    summary = _json(run_dir / "summary.json")
    if summary.get("status") == "interrupted":
        return f"interrupted after {summary.get('completed_epochs')} of {epochs} epochs"
    if summary.get("status") == "completed":
        return "trained, but its gradient measurements did not finish"
    if (run_dir / "checkpoint.pt").exists():
        done = len((run_dir / "metrics.csv").read_text().splitlines()) - 1 \
            if (run_dir / "metrics.csv").exists() else 0
        return f"unfinished or failed after {done} of {epochs} epochs"
    return "not started" if not run_dir.exists() else "failed before its first epoch"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def missing_section(missing: List[str]) -> str:
    """The lines comparison.md ends with when runs are missing."""
    return ("\nNot included: " + str(len(missing)) + " planned run(s) have no result:\n\n"
            + "".join(f"- {line}\n" for line in missing))


def report_settings(target: Optional[float], sweep_ks: List[int], draws: int) -> dict:
    return {"target_elbo": target, "sweep_ks": list(sweep_ks), "grad_draws": draws}
