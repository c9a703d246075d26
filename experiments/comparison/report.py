"""What a comparison reports: one row per (estimator, K) over seeds, the gradient SNR against K
at one trained point, and the table, CSV files and figures of both.

Every estimator optimizes its own bound, so all are judged on common yardsticks: the test
metrics of every run (``experiments.evaluation.metrics``), the IWAE estimate with the same
number of samples, the gradient variance and SNR at fixed parameters (initial and final) on a
fixed minibatch, and wall time.
"""
import csv
import math
from pathlib import Path
from statistics import mean, median, stdev
from typing import Dict, List, Optional

import torch

from experiments.common.files import write_csv, write_text
from experiments.comparison.ais_column import SETTINGS
from experiments.comparison.jobs import measure
from experiments.estimators import ELBOS
from experiments.evaluation.metrics import TEST_METRICS
from experiments.figures.comparison import plot_comparison
from experiments.parts.build import Parts
from experiments.parts.registries import construct
from experiments.training.end_to_end import TEST_POINTS
from experiments.training.trained import load_trained


def aggregate(results: List[dict], target: Optional[float]) -> List[dict]:
    """One row per (estimator, K): mean and standard deviation over the seeds whose runs
    completed, and a ``status`` that names the runs that failed."""
    groups: Dict[str, List[dict]] = {}
    for r in results:
        groups.setdefault(r["label"], []).append(r)
    done = {name: [r for r in rs if r["status"] == "completed"] for name, rs in groups.items()}
    if target is None:
        target = weakest_final_mean(done)
    rows = []
    for name, rs in groups.items():
        row = {"elbo": rs[0]["elbo"], "label": name, "num_particles": rs[0]["num_particles"],
               "seeds": len(done[name]), "status": _status(rs)}
        rows.append(row)
        if done[name]:
            row.update(_measured(done[name], target))
    paired_differences(done, rows)
    return rows


def weakest_final_mean(done: Dict[str, List[dict]]) -> float:
    """The default target of 'steps to target': the lowest, over estimators, of the final test
    ELBO averaged over seeds, so every estimator's seed-averaged curve reaches it (at the
    latest in its last epoch)."""
    finals = [mean(r["metrics"][-1]["test_elbo"] for r in rs) for rs in done.values() if rs]
    return min(finals) if finals else math.nan


def _status(rs: List[dict]) -> str:
    failed = [r for r in rs if r["status"] != "completed"]
    if not failed:
        return "completed"
    return (f"{len(failed)} of {len(rs)} runs failed: "
            + "; ".join(f"seed {r['seed']}: {r['error']}" for r in failed))


def _measured(rs: List[dict], target: float) -> dict:
    """The numbers of one (estimator, K) over its completed runs ``rs``."""
    row = {}
    for key in TEST_METRICS:
        values = [r["summary"][key] for r in rs if r["summary"].get(key) is not None]
        if values:
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
    ais = [r["ais"] for r in rs if "ais" in r]
    if ais:                                 # --ais-points: AIS and IWAE on the same points
        row["ais_points"] = ais[0]["points"]
        row["test_ais_mean"], row["test_ais_std"] = _mean_std([a["ais"] for a in ais])
        row["test_ais_iwae_mean"], row["test_ais_iwae_std"] = _mean_std([a["iwae"] for a in ais])
    for when, suffix in (("final", ""), ("init", "_init")):
        for key in rs[0][when]:
            row[f"{key}{suffix}"] = mean(r[when][key] for r in rs)
    # the median epoch: the first carries one-off start-up costs
    row["seconds_per_step"] = mean(median(m["seconds"] for m in r["metrics"])
                                   / r["steps_per_epoch"] for r in rs)
    row["target_test_elbo"] = target
    row["steps_to_target"] = _steps_to(rs, target)
    return row


def _mean_std(values: List[float]):
    return mean(values), (stdev(values) if len(values) > 1 else 0.0)


def _steps_to(results: List[dict], target: float) -> Optional[int]:
    """Training steps until the test ELBO, averaged over seeds, first reaches ``target``."""
    curves = zip(*[[row["test_elbo"] for row in r["metrics"]] for r in results])
    for epoch, values in enumerate(curves, 1):
        if mean(values) >= target:
            return epoch * results[0]["steps_per_epoch"]
    return None


PAIRED = ("test_elbo", "test_iwae")


def paired_differences(done: Dict[str, List[dict]], rows: List[dict]) -> None:
    """Add to each row the mean over test points of its per-point test ELBO and IWAE minus
    those of the reference (the first estimator with a completed run), each point's values
    averaged over seeds first, with the standard error of that mean over points: differences
    on the same points, free of the spread between points that the ± over seeds carries."""
    points = {name: _per_point(rs) for name, rs in done.items() if rs}
    points = {name: p for name, p in points.items() if p is not None}
    if not points:
        return
    reference = next(iter(points))
    for row in rows:
        mine = points.get(row["label"])
        if mine is None or mine.shape != points[reference].shape:
            continue
        row["paired_reference"] = reference
        for j, key in enumerate(PAIRED):
            d = mine[:, j] - points[reference][:, j]                                 # (N,)
            row[f"{key}_paired_diff"] = d.mean().item()
            row[f"{key}_paired_stderr"] = (d.std() / math.sqrt(len(d))).item()


def _per_point(rs: List[dict]) -> Optional[torch.Tensor]:
    """(N, 2): each test point's ELBO and IWAE estimate averaged over the runs ``rs``, or None
    where a run has no test_points.csv (written by runs of an older version)."""
    tables = []
    for r in rs:
        path = Path(r["run_dir"]) / TEST_POINTS
        if not path.exists():
            return None
        with open(path, newline="") as f:
            tables.append([[float(row[k]) for k in PAIRED] for row in csv.DictReader(f)])
    if len({len(t) for t in tables}) != 1:
        return None
    return torch.tensor(tables, dtype=torch.float64).mean(0)


def snr_sweep(results: List[dict], ks: List[int], draws: int) -> List[dict]:
    """Gradient SNR against K at one fixed, trained point — the final parameters of the first
    run — for every K-sample estimator of the comparison (Rainforth et al. 2018, Fig. 1)."""
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
    SNR-against-K sweep (snr_sweep.csv, where there is one) and the figures of the runs that
    completed."""
    rows = aggregate(results, target)
    write_csv(out / "comparison.csv", rows)
    write_text(out / "comparison.md", markdown(rows))
    completed = [r for r in results if r["status"] == "completed"]
    if not completed:
        return rows
    sweep = snr_sweep(completed, sweep_ks, draws)
    if sweep:
        write_csv(out / "snr_sweep.csv", sweep)
    plot_comparison(completed, [r for r in rows if r["seeds"]], sweep, out)
    return rows


def markdown(rows: List[dict]) -> str:
    """The comparison as a Markdown table, mean ± std over seeds, in nats per example; a
    status column where a run failed; the paired differences against the reference."""
    exact = any("test_exact_log_likelihood_mean" in r for r in rows)
    failed = any(r["status"] != "completed" for r in rows)
    ais = next((r["ais_points"] for r in rows if "ais_points" in r), None)
    head = ["estimator", "test ELBO", "test IWAE"] + (["exact log p(x)", "gap"] if exact else [])
    head += [f"AIS ({ais} pts)", f"IWAE ({ais} pts)"] if ais else []
    head += ["grad var φ (init → final)", "grad var θ", "SNR φ", "SNR θ", "ms / step",
             "steps to target"] + (["status"] if failed else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], _pm(r, "test_elbo"), _pm(r, "test_iwae")]
        if exact:
            cells += [_pm(r, "test_exact_log_likelihood"), _pm(r, "test_gap")]
        if ais:
            cells += [_pm(r, "test_ais"), _pm(r, "test_ais_iwae")]
        if r["seeds"]:
            cells += [_arrow(r, "grad_var_guide"), _arrow(r, "grad_var_model"),
                      _arrow(r, "grad_snr_guide"), _arrow(r, "grad_snr_model"),
                      f"{1000 * r['seconds_per_step']:.1f}",
                      "not reached" if r["steps_to_target"] is None
                      else f"{r['steps_to_target']:.0f}"]
        else:
            cells += ["–"] * 6
        lines.append("| " + " | ".join(cells + ([r["status"]] if failed else [])) + " |")
    target = next((r["target_test_elbo"] for r in rows if r["seeds"]), math.nan)
    lines.append("")
    lines.append(f"Target test ELBO for 'steps to target': {target:.3f} (unless --target-elbo "
                 "says otherwise, the weakest estimator's final test ELBO, mean over seeds). "
                 "Gradient variance and SNR: at the initial → final parameters of each run; "
                 "variance is the sum of per-coordinate variances over M draws on one fixed "
                 "minibatch; SNR is the mean of |mean| / std over coordinates.")
    if ais:
        lines.append(f"\nAIS: log p(x) on the first {ais} test points, {SETTINGS['num_chains']} "
                     f"chains × {SETTINGS['num_steps']} steps of {SETTINGS['leapfrog_steps']} "
                     "leapfrog steps from q(z|x), beside the IWAE estimate on the same points "
                     "(as many samples as the test IWAE); both under log p(x) in expectation.")
    return "\n".join(lines + _paired_table(rows)) + "\n"


def _paired_table(rows: List[dict]) -> List[str]:
    paired = [r for r in rows if "paired_reference" in r and r["label"] != r["paired_reference"]]
    if not paired:
        return []
    lines = ["", f"Paired differences against {paired[0]['paired_reference']} on the same test "
             "points: the mean over points of this estimator's per-point value minus the "
             "reference's (each averaged over seeds) ± its standard error over points.", "",
             "| estimator | Δ test ELBO | Δ test IWAE |", "|---|---|---|"]
    for r in paired:
        lines.append(f"| {r['label']} | " + " | ".join(
            f"{r[f'{k}_paired_diff']:+.3f} ± {r[f'{k}_paired_stderr']:.3f}" for k in PAIRED)
            + " |")
    return lines


def _arrow(row: dict, key: str) -> str:
    return f"{_g(row[f'{key}_init'])} → {_g(row[key])}"


def _pm(row: dict, key: str) -> str:
    if f"{key}_mean" not in row:
        return "–"
    return f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}"


def _g(value: float) -> str:
    return "∞" if math.isinf(value) else "–" if math.isnan(value) else f"{value:.3g}"
