"""The runs of a comparison: one per (estimator, guide, K, seed), planned before any starts and
trained in worker processes, with the gradients measured at the initial and final parameters.

Runs with the same seed share the initial parameters and the data order; every gradient
measurement uses one fixed minibatch.
"""
import math
import os
import sys
from dataclasses import dataclass
from multiprocessing import Manager
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from tqdm import tqdm

from experiments.common.errors import UserError
from experiments.data.datasets import BINARIZE_SEED, Dataset, binarize
from experiments.estimators import ELBOS
from experiments.evaluation.gradients import gradient_draws, gradient_stats
from experiments.parts.build import Parts
from experiments.parts.compatibility import check_combination
from experiments.training.config import Config
from experiments.training.workers import resolved, train_in_worker, worker_pool
from guides import GUIDES

GROUPS = ("guide", "model")


@dataclass
class Job:
    """One training run of the comparison."""

    number: int
    config: dict
    grad_draws: int
    threads: int
    default_guide: str = ""

    @property
    def label(self) -> str:
        return label(self.config["elbo"], self.config["num_particles"], self.config["guide"],
                     self.default_guide)


def label(elbo: str, k: int, guide: str = "", default_guide: str = "") -> str:
    """``iwae K=10``, or ``enum/enum`` for an estimator run with another guide than --guide."""
    name = elbo if guide == default_guide else f"{elbo}/{guide}"
    return name if not ELBOS[elbo].k_sample else f"{name} K={k}"


def parse_elbos(text: str, default_guide: str) -> List[Tuple[str, str]]:
    """``trace,tracegraph,enum/enum`` → [(elbo, guide), …]: an item may name its own guide."""
    pairs = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        elbo, _, guide = item.partition("/")
        if elbo not in ELBOS or (guide and guide not in GUIDES):
            raise UserError(f"unknown estimator or guide in --elbos item {item!r}: estimators "
                            f"are {', '.join(ELBOS)}; guides {', '.join(GUIDES)}")
        pairs.append((elbo, guide or default_guide))
    if not pairs:
        raise UserError("--elbos names no estimator")
    return pairs


def plan(config: Config, elbos: List[Tuple[str, str]], ks: List[int], seeds: int, out: Path,
         grad_draws: int, jobs: int) -> List[Job]:
    """Every (estimator, guide, K, seed) run, refusing impossible combinations before any
    starts."""
    planned = []
    threads = max(1, (os.cpu_count() or 1) // jobs)
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
                                   grad_draws, threads, config.guide))
    return planned


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


def run_job(job: Job, progress) -> dict:
    """Train one run (in a worker process), measuring the gradients before and after."""
    config = resolved(job.config)
    measured = {}

    def at_start(parts: Parts, data: Dataset) -> None:
        measured["data"] = data
        measured["init"] = measure(parts, config, data, job.grad_draws)

    result = train_in_worker(job.config, job.threads, on_start=at_start,
                             on_epoch=lambda row: progress.put((job.number, row["test_elbo"])))
    final = measure(result.parts, config, measured["data"], job.grad_draws)
    steps = math.ceil(len(measured["data"].x_train) / config.batch_size)
    return {"label": job.label, "elbo": config.elbo, "num_particles": config.num_particles,
            "seed": config.seed, "run_dir": str(result.run_dir), "summary": result.summary,
            "metrics": result.metrics, "steps_per_epoch": steps, "final": final,
            "init": measured["init"]}


def execute(jobs: List[Job], workers: int) -> List[dict]:
    """Run the jobs in ``workers`` processes, one progress line each."""
    with Manager() as manager, worker_pool(workers) as pool:
        progress = manager.Queue()
        futures = [pool.submit(run_job, job, progress) for job in jobs]
        bars = [tqdm(total=job.config["epochs"], desc=f"{job.label} seed {job.config['seed']}",
                     position=i, leave=True, file=sys.stderr, disable=not sys.stderr.isatty())
                for i, job in enumerate(jobs)]
        epochs_done = [0] * len(jobs)
        while not all(f.done() for f in futures) or not progress.empty():
            try:
                number, test_elbo = progress.get(timeout=0.2)
            except Exception:       # queue.Empty, raised through the manager's proxy
                continue
            bars[number].update(1)
            bars[number].set_postfix_str(f"test ELBO {test_elbo:.3f}")
            epochs_done[number] += 1
            if bars[number].disable and epochs_done[number] == jobs[number].config["epochs"]:
                print(f"done: {jobs[number].label} seed {jobs[number].config['seed']}, "
                      f"test ELBO {test_elbo:.3f}", file=sys.stderr)
        for bar in bars:
            bar.close()
        return [f.result() for f in futures]
