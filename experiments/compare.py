"""Compare ELBO estimators on equal footing: the same model, guide, data, seeds and budget.

    python -m experiments.compare --model vae --guide normal \\
        --elbos trace,meanfield,iwae,score-function --data digits --seeds 3 --epochs 20 \\
        --jobs 2 --out runs/compare

Each (estimator, K, seed) is a full training run in its own folder; runs with the same seed
share the initial parameters and the data order. Every estimator optimizes its own bound, so
all are judged on common yardsticks: the one-sample test ELBO, the test IWAE estimate with the
same number of samples, the exact log-likelihood and gap where the model has one, the gradient
variance and SNR at fixed parameters (initial and final) on a fixed minibatch, and wall time.
"""
import argparse
import csv
import io
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import Manager, get_context
from pathlib import Path
from statistics import mean, median, stdev
from typing import Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

from experiments import runs
from experiments.build import Parts, construct
from experiments.cli import add_training_options, config_from_args
from experiments.compatibility import check_combination
from experiments.config import Config
from experiments.data import BINARIZE_SEED, Dataset, binarize
from experiments.errors import UserError
from experiments.estimators import ELBOS
from experiments.gradients import gradient_draws, gradient_stats
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


def fixed_minibatch(config: Config, data: Dataset):
    """The first ``batch_size`` training points, binarized once with a fixed seed when the
    likelihood is Bernoulli: every gradient measurement of the comparison uses this batch."""
    x = data.x_train[: config.batch_size]
    if config.binarize == "dynamic":
        x = binarize(x, seed=BINARIZE_SEED + 2)
    return x, torch.arange(len(x), device=x.device), len(data.x_train)


def measure(parts: Parts, config: Config, data: Dataset, draws: int) -> Dict[str, float]:
    x, index, n = fixed_minibatch(config, data)
    stats = {g: gradient_stats(d) for g, d in gradient_draws(parts, x, index, n, draws).items()}
    return {**{f"grad_var_{g}": stats[g].total_variance for g in GROUPS},
            **{f"grad_snr_{g}": stats[g].mean_snr for g in GROUPS}}


def run_job(job: Job, progress) -> dict:
    """Train one run (in a worker process), measuring the gradients before and after."""
    from experiments.train import resolve, run

    torch.set_num_threads(job.threads)
    config = resolve(Config.from_dict(job.config).replace(progress=False))
    measured = {}

    def at_start(parts: Parts, data: Dataset) -> None:
        measured["data"] = data
        measured["init"] = measure(parts, config, data, job.grad_draws)

    result = run(config, force=True, on_start=at_start,
                 on_epoch=lambda row: progress.put((job.number, row["test_elbo"])))
    final = measure(result.parts, config, measured["data"], job.grad_draws)
    steps = math.ceil(len(measured["data"].x_train) / config.batch_size)
    return {"label": job.label, "elbo": config.elbo, "num_particles": config.num_particles,
            "seed": config.seed, "run_dir": str(result.run_dir), "summary": result.summary,
            "metrics": result.metrics, "steps_per_epoch": steps, "final": final,
            "init": measured["init"]}


def plan(config: Config, elbos: List[Tuple[str, str]], ks: List[int], seeds: int, out: Path,
         grad_draws: int, jobs: int) -> List[Job]:
    """Every (estimator, guide, K, seed) run, refusing impossible combinations before any
    starts."""
    planned = []
    threads = max(1, (os.cpu_count() or 1) // jobs)
    for elbo, guide in elbos:
        for k in (ks if ELBOS[elbo].k_sample else ks[:1]):
            vectorize = config.vectorize_particles or (ELBOS[elbo].k_sample and k > 1)
            options = {**config.to_dict(), "elbo": elbo, "guide": guide, "num_particles": k,
                       "vectorize_particles": vectorize}
            check_combination(config.model, guide, elbo, **{
                n: v for n, v in options.items() if n not in ("model", "guide", "elbo")})
            name = label(elbo, k, guide, config.guide)
            for seed in range(config.seed, config.seed + seeds):
                folder = out / "runs" / (name.replace(" K=", "-K").replace("/", "-")
                                         + f"-seed{seed}")
                planned.append(Job(len(planned), {**options, "seed": seed, "out": str(folder)},
                                   grad_draws, threads, config.guide))
    return planned


def execute(jobs: List[Job], workers: int) -> List[dict]:
    """Run the jobs in ``workers`` processes, one progress line each."""
    context = get_context("spawn")          # no fork of a process that holds torch threads
    with Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
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


def aggregate(results: List[dict], target: Optional[float]) -> List[dict]:
    """One row per (estimator, K): mean and standard deviation over seeds."""
    groups: Dict[str, List[dict]] = {}
    for r in results:
        groups.setdefault(r["label"], []).append(r)
    if target is None:      # the median final bound: robust to one estimator far behind
        target = median(mean(r["summary"]["test_elbo"] for r in rs) for rs in groups.values())
    rows = []
    for name, rs in groups.items():
        row = {"elbo": rs[0]["elbo"], "label": name, "num_particles": rs[0]["num_particles"],
               "seeds": len(rs)}
        summary_keys = ["test_elbo", "test_iwae", "test_exact_log_likelihood", "test_gap"]
        for key in summary_keys:
            values = [r["summary"][key] for r in rs if r["summary"].get(key) is not None]
            if values:
                row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
        for when, suffix in (("final", ""), ("init", "_init")):
            for key in rs[0][when]:
                row[f"{key}{suffix}"] = mean(r[when][key] for r in rs)
        # the median epoch: the first carries one-off start-up costs
        row["seconds_per_step"] = mean(median(m["seconds"] for m in r["metrics"])
                                       / r["steps_per_epoch"] for r in rs)
        row["target_test_elbo"] = target
        row["steps_to_target"] = _steps_to(rs, target)
        rows.append(row)
    return rows


def _mean_std(values: List[float]):
    return mean(values), (stdev(values) if len(values) > 1 else 0.0)


def _steps_to(results: List[dict], target: float) -> Optional[int]:
    """Training steps until the test ELBO, averaged over seeds, first reaches ``target``."""
    curves = zip(*[[row["test_elbo"] for row in r["metrics"]] for r in results])
    for epoch, values in enumerate(curves, 1):
        if mean(values) >= target:
            return epoch * results[0]["steps_per_epoch"]
    return None


def snr_sweep(results: List[dict], ks: List[int], draws: int) -> List[dict]:
    """Gradient SNR against K at one fixed, trained point — the final parameters of the first
    run — for every K-sample estimator of the comparison (Rainforth et al. 2018, Fig. 1)."""
    from experiments.train import load_trained

    estimators = [e for e in dict.fromkeys(r["elbo"] for r in results) if ELBOS[e].k_sample]
    if not estimators or len(ks) < 2:
        return []
    config, data, parts = load_trained(Path(results[0]["run_dir"]))
    rows = []
    for elbo in estimators:
        for k in ks:
            estimator = construct(ELBOS[elbo], num_particles=k, vectorize_particles=True,
                                  alpha=config.alpha,
                                  max_plate_nesting=parts.model.max_plate_nesting)
            stats = measure(Parts(parts.model, parts.guide, estimator), config, data, draws)
            rows.append({"elbo": elbo, "num_particles": k, "at": results[0]["label"], **stats})
    return rows


def report(results: List[dict], out: Path, target: Optional[float], sweep_ks: List[int],
           draws: int) -> List[dict]:
    """The comparison's rows, written to ``out`` as comparison.csv and comparison.md, with the
    SNR-against-K sweep (snr_sweep.csv, where there is one) and the figures."""
    from experiments.figures.comparison import plot_comparison

    rows = aggregate(results, target)
    write_csv(rows, out / "comparison.csv")
    runs.write_atomically(out / "comparison.md", lambda f: f.write(markdown(rows)))
    sweep = snr_sweep(results, sweep_ks, draws)
    if sweep:
        write_csv(sweep, out / "snr_sweep.csv")
    plot_comparison(results, rows, sweep, out)
    return rows


def write_csv(rows: List[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    runs.write_atomically(path, lambda f: f.write(buffer.getvalue()))


def markdown(rows: List[dict]) -> str:
    """The comparison as a Markdown table, mean ± std over seeds, in nats per example."""
    exact = any("test_exact_log_likelihood_mean" in r for r in rows)
    head = ["estimator", "test ELBO", "test IWAE"] + (["exact log p(x)", "gap"] if exact else [])
    head += ["grad var φ (init → final)", "grad var θ", "SNR φ", "SNR θ", "ms / step",
             "steps to target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], _pm(r, "test_elbo"), _pm(r, "test_iwae")]
        if exact:
            cells += [_pm(r, "test_exact_log_likelihood"), _pm(r, "test_gap")]
        cells += [f"{_g(r['grad_var_guide_init'])} → {_g(r['grad_var_guide'])}",
                  f"{_g(r['grad_var_model_init'])} → {_g(r['grad_var_model'])}",
                  f"{_g(r['grad_snr_guide_init'])} → {_g(r['grad_snr_guide'])}",
                  f"{_g(r['grad_snr_model_init'])} → {_g(r['grad_snr_model'])}",
                  f"{1000 * r['seconds_per_step']:.1f}",
                  "not reached" if r["steps_to_target"] is None else f"{r['steps_to_target']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    target = rows[0]["target_test_elbo"]
    lines.append("")
    lines.append(f"Target test ELBO for 'steps to target': {target:.3f}. Gradient variance and "
                 "SNR: at the initial → final parameters of each run; variance is the "
                 "sum of per-coordinate variances over M draws on one fixed minibatch; SNR is the "
                 "mean of |mean| / std over coordinates.")
    return "\n".join(lines) + "\n"


def _pm(row: dict, key: str) -> str:
    if f"{key}_mean" not in row:
        return "–"
    return f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}"


def _g(value: float) -> str:
    return "∞" if math.isinf(value) else "–" if math.isnan(value) else f"{value:.3g}"


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_options(p, exclude=("elbo", "num_particles", "out"))
    c = p.add_argument_group("comparison")
    c.add_argument("--elbos", default="trace,meanfield,iwae,score-function",
                   help=f"comma-separated estimators among {', '.join(ELBOS)}; ELBO/GUIDE "
                        "runs one with another guide, e.g. enum/enum (default: %(default)s)")
    c.add_argument("--num-particles", dest="particle_sweep", type=_int_list, default=[1],
                   help="K, or a sweep such as 1,10,100 for the K-sample estimators "
                        "(iwae, renyi, dreg, tail-adaptive); the others use the first K")
    c.add_argument("--snr-sweep", type=_int_list, default=None,
                   help="the K of the SNR-against-K figure, measured at one fixed trained point "
                        "(default: the --num-particles list), e.g. 1,10,100 without training "
                        "at K = 100")
    c.add_argument("--seeds", type=int, default=3, help="seeds per estimator, from --seed on")
    c.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    c.add_argument("--grad-draws", type=int, default=100,
                   help="M gradient draws for the variance and SNR (default: %(default)s)")
    c.add_argument("--target-elbo", type=float, default=None,
                   help="test ELBO for 'steps to target' (default: the weakest final mean)")
    c.add_argument("--out", type=Path, default=None,
                   help="comparison folder (default: runs/<time>-compare-<model>-<guide>)")
    c.add_argument("--force", action="store_true", help="overwrite an existing comparison")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args).replace(progress=False).validate()
        elbos = parse_elbos(args.elbos, config.guide)
        for name, value in (("--seeds", args.seeds), ("--jobs", args.jobs),
                            ("--grad-draws", args.grad_draws)):
            if value < 1 or (name == "--grad-draws" and value < 2):
                raise UserError(f"{name} must be at least {2 if name == '--grad-draws' else 1}")
        out = args.out or Path("runs") / (time.strftime("%Y%m%d-%H%M%S")
                                          + f"-compare-{config.model}-{config.guide}")
        if (out / "comparison.csv").exists() and not args.force:
            raise UserError(f"--out {out} already holds a comparison; pass --force to overwrite "
                            "it or choose another --out")
        jobs = plan(config, elbos, args.particle_sweep, args.seeds, out, args.grad_draws,
                    args.jobs)
        out.mkdir(parents=True, exist_ok=True)
        results = execute(jobs, args.jobs)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = report(results, out, args.target_elbo, args.snr_sweep or args.particle_sweep,
                  args.grad_draws)
    print(markdown(rows))
    print(f"results in {out}/: comparison.csv, comparison.md, the figures and runs/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
