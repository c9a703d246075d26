"""What a comparison reports: one row per (estimator, K) over seeds, the gradient SNR against K
at one trained point, and the table, CSV files and figures of both.

Every estimator optimizes its own bound, so all are judged on common yardsticks: the test
metrics of every run (``experiments.evaluation.metrics``), the IWAE estimate with the same
number of samples, the gradient variance and SNR at fixed parameters (initial and final) on a
fixed minibatch, and wall time.
"""
import math
from pathlib import Path
from statistics import mean, median, stdev
from typing import Dict, List, Optional

from experiments.common.files import write_csv, write_text
from experiments.comparison.jobs import measure
from experiments.estimators import ELBOS
from experiments.evaluation.metrics import TEST_METRICS
from experiments.figures.comparison import plot_comparison
from experiments.parts.build import Parts
from experiments.parts.registries import construct
from experiments.training.trained import load_trained


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
        for key in TEST_METRICS:
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
    rows = aggregate(results, target)
    write_csv(out / "comparison.csv", rows)
    write_text(out / "comparison.md", markdown(rows))
    sweep = snr_sweep(results, sweep_ks, draws)
    if sweep:
        write_csv(out / "snr_sweep.csv", sweep)
    plot_comparison(results, rows, sweep, out)
    return rows


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
