"""The tables of lesson 7 from the comparisons its commands leave behind.

    python -m experiments.results.labels runs/lesson7 docs/results/lesson7

reads the run folders under runs/lesson7/<comparison>/runs/ (written by the
``python -m experiments.compare`` commands of docs/lessons/lesson7-labels.md) and writes
tables.md, the Markdown the lesson shows, and tables.json, every number in it. The cvae's
per-point conditional NLLs are recomputed from each reloaded run with the run's own
--iwae-samples and evaluation seed, so their mean is the summary's test_conditional_nll (checked
here).
"""
import json
import math
import sys
from pathlib import Path
from statistics import mean, stdev
from typing import Dict, List

import torch

from experiments.evaluation.likelihood import iwae_per_point
from experiments.training.trained import load_trained

#: (comparison folder, run-name prefix) of each M2 variant, by label count
M2_VARIANTS = {
    "enumerated y + auxiliary term (α = 46)": ("ssvae-{n}-aux", "enum-seed"),
    "enumerated y": ("ssvae-{n}", "enum-seed"),
    "sampled y (score function)": ("ssvae-{n}", "trace-m2-seed"),
}
LABEL_COUNTS = ("100", "300", "all")


def summaries(folder: Path, prefix: str) -> List[dict]:
    """The summaries of the runs ``folder/runs/<prefix><seed>``, by seed."""
    runs = sorted(folder.glob(f"runs/{prefix}*/summary.json"),
                  key=lambda p: int(p.parent.name[len(prefix):]))
    return [json.loads(p.read_text()) for p in runs]


def spread(values: List[float]) -> Dict[str, float]:
    return {"mean": mean(values), "sd": stdev(values) if len(values) > 1 else 0.0,
            "seeds": len(values)}


def m2_numbers(root: Path) -> dict:
    """Test accuracy per variant and label count (mean, sd over seeds), the classifier alone,
    and the paired difference (M2 − classifier alone, same seed and labels) with its standard
    error over seeds."""
    table = {}
    for n in LABEL_COUNTS:
        column = {}
        for variant, (folder, prefix) in M2_VARIANTS.items():
            runs = summaries(root / folder.format(n=n), prefix)
            if not runs:
                continue
            accuracy = [s["test_accuracy"] for s in runs]
            elbo = [s["test_elbo"] for s in runs]
            baseline = [s["baseline_accuracy"] for s in runs]
            gains = [a - b for a, b in zip(accuracy, baseline)]
            column[variant] = {**spread(accuracy), "test_elbo": spread(elbo),
                               "baseline": spread(baseline),
                               "gain": {**spread(gains), "per_seed": gains,
                                        "stderr": stdev(gains) / math.sqrt(len(gains))
                                        if len(gains) > 1 else 0.0}}
        table[n] = column
    return table


def cvae_numbers(root: Path) -> dict:
    """Per number of visible quadrants: the CVAE's and the baseline's conditional NLL (mean, sd
    over seeds) and, per seed, the paired per-point difference baseline − CVAE with its
    standard error over test points."""
    table = {}
    for visible in (1, 2, 3):
        runs = sorted((root / f"cvae-{visible}").glob("runs/trace-seed*"),
                      key=lambda p: int(p.name.rsplit("seed", 1)[1]))
        if not runs:
            continue
        cvae, baseline, gains = [], [], []
        for run_dir in runs:
            config, data, parts = load_trained(run_dir)
            summary = json.loads((run_dir / "summary.json").read_text())
            nll = -iwae_per_point(parts.model, parts.guide, data.x_test, config.iwae_samples)
            with torch.no_grad():
                base = -parts.model.baseline_log_likelihood(data.x_test)
            assert math.isclose(nll.mean().item(), summary["test_conditional_nll"],
                                rel_tol=1e-6), run_dir
            difference = base - nll                                             # (N,)
            cvae.append(nll.mean().item())
            baseline.append(base.mean().item())
            gains.append({"mean": difference.mean().item(),
                          "stderr": difference.std().item() / math.sqrt(len(difference))})
        table[str(visible)] = {"cvae": spread(cvae), "baseline": spread(baseline),
                               "gain_per_seed": gains, "test_points": len(data.x_test)}
    return table


def _variant_rows(m2: dict, cols: list, cell) -> list:
    """One table row per M2 variant: ``cell`` of its summary at each label count, — if none."""
    return [f"| {variant} | " + " | ".join(
        "—" if m2[n].get(variant) is None else cell(m2[n][variant]) for n in cols) + " |"
        for variant in M2_VARIANTS]


def markdown(m2: dict, cvae: dict) -> str:
    cols = [n for n in LABEL_COUNTS if m2.get(n)]
    lines = ["| test accuracy (mean ± sd over seeds) | " + " | ".join(
        f"{n} labels" for n in cols) + " |", "|---|" + "---|" * len(cols)]
    lines += _variant_rows(m2, cols, lambda c: f"{c['mean']:.3f} ± {c['sd']:.3f} ({c['seeds']})")
    first = [next(iter(m2[n].values())) for n in cols]
    lines.append("| classifier alone (the same network, labeled points only) | " + " | ".join(
        f"{c['baseline']['mean']:.3f} ± {c['baseline']['sd']:.3f} ({c['baseline']['seeds']})"
        for c in first) + " |")
    lines.append("| enumerated + auxiliary − classifier alone, paired by seed (± standard error) "
                 "| " + " | ".join(
                     _gain(m2[n].get(next(iter(M2_VARIANTS))))
                     for n in cols) + " |")
    lines += ["", "| test ELBO, nats per image (mean ± sd over seeds) | " + " | ".join(
        f"{n} labels" for n in cols) + " |", "|---|" + "---|" * len(cols)]
    lines += _variant_rows(
        m2, cols, lambda c: f"{c['test_elbo']['mean']:.2f} ± {c['test_elbo']['sd']:.2f}")
    lines += ["", "| visible quadrants | baseline NLL | CVAE NLL | baseline − CVAE, paired per "
              "test point (± standard error), per seed |", "|---|---|---|---|"]
    for visible, row in cvae.items():
        per_seed = ", ".join(f"{g['mean']:.2f} ± {g['stderr']:.2f}" for g in row["gain_per_seed"])
        lines.append(f"| {visible} | {row['baseline']['mean']:.3f} ± {row['baseline']['sd']:.3f} "
                     f"| {row['cvae']['mean']:.3f} ± {row['cvae']['sd']:.3f} | {per_seed} |")
    return "\n".join(lines) + "\n"


def _gain(cell) -> str:
    if cell is None:
        return "—"
    gain = cell["gain"]
    return f"{gain['mean']:+.3f} ± {gain['stderr']:.3f}"


def main(root: Path, out: Path) -> None:
    m2, cvae = m2_numbers(root), cvae_numbers(root)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.json").write_text(json.dumps({"m2": m2, "cvae": cvae}, indent=1) + "\n")
    (out / "tables.md").write_text(markdown(m2, cvae))
    print(markdown(m2, cvae))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
