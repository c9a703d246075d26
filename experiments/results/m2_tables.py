"""The table of docs/results/m2.md from the runs of m2_measure.py.

    python -m experiments.results.m2_tables docs/results/m2 runs/m2/*/*-seed*
    python -m experiments.results.m2_tables --cause docs/results/m2 runs/m2-cause/*/*-seed*
    python -m experiments.results.m2_tables --validation docs/results/m2 \
        runs/m2-validation/*/*-seed*

collects the per-epoch rows of the run folders that ``m2_measure.py`` trained (named
<variant>-seed<s>; their config.json and metrics.csv, so a run cut short counts with the epochs
it finished) into docs/results/m2/epochs.csv; takes each setting's runs at the last epoch all
of them reached, and writes docs/results/m2/m2.csv (one row per data set, label count and
variant: M2's and the classifier's test accuracy, mean and sd over seeds, the paired gain
M2 − classifier with its standard error, the verdict at ``MARGIN`` standard errors, and how far
M2's last epoch sits below its best, averaged over seeds) and the Markdown table between the
``<!-- table -->`` markers of docs/results/m2.md. With ``--cause`` (one seed per variant) it
writes cause.csv and the per-epoch table between the ``<!-- cause -->`` markers instead. With
``--validation`` (runs of ``m2_measure.py --validation``, scored on held-out training images) it
writes validation.csv and, between the ``<!-- validation -->`` markers, each variant's held-out
accuracy at the last epoch and which variant it picks (``picks``): no test image is read.
"""
import csv
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev
from typing import Dict, List

from experiments.results.m2_measure import VARIANTS

COLUMNS = ("data", "labels", "variant", "epochs", "seeds", "m2_mean", "m2_sd", "baseline_mean",
           "baseline_sd", "gain_mean", "gain_stderr", "verdict", "decline")
#: how many standard errors of the paired gain a verdict needs (issue 28's "several")
MARGIN = 3
EPOCH_COLUMNS = ("data", "labels", "variant", "seed", "epoch", "test_accuracy",
                 "baseline_accuracy")
VALIDATION_COLUMNS = tuple(c.replace("test", "validation") for c in EPOCH_COLUMNS)


def collect(folders: List[Path], scored: str = "test") -> List[dict]:
    """The rows of ``m2_measure.py``'s COLUMNS of every run folder, epoch by epoch; ``scored``
    names the images its accuracy was measured on (``m2_measure.scored``)."""
    rows = []
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        with (folder / "metrics.csv").open() as f:
            rows += [dict(data=config["data"], labels=config["labels"],
                          variant=folder.name.rsplit("-seed", 1)[0], seed=config["seed"],
                          epoch=r["epoch"], baseline_accuracy=r["baseline_accuracy"],
                          **{f"{scored}_accuracy": r[f"{scored}_accuracy"]})
                     for r in csv.DictReader(f)]
    return rows


def runs_by_setting(path: Path) -> Dict[tuple, List[List[dict]]]:
    """Each run's rows in epoch order, grouped by (data, labels, variant)."""
    runs = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            runs[row["data"], int(row["labels"]), row["variant"], int(row["seed"])].append(row)
    groups = defaultdict(list)
    for (data, labels, variant, _), rows in sorted(runs.items()):
        groups[data, labels, variant].append(sorted(rows, key=lambda r: int(r["epoch"])))
    for key, runs in groups.items():       # the epochs every run of the setting reached
        common = min(len(rows) for rows in runs)
        groups[key] = [rows[:common] for rows in runs]
    return groups


def verdict(gain: float, stderr: float) -> str:
    """Who wins at ``MARGIN`` standard errors of the paired gain."""
    if gain > MARGIN * stderr:
        return "M2"
    return "classifier" if gain < -MARGIN * stderr else f"neither (within {MARGIN} s.e.)"


def summary(data: str, labels: int, variant: str, runs: List[List[dict]]) -> dict:
    last = [rows[-1] for rows in runs]
    m2 = [float(r["test_accuracy"]) for r in last]
    base = [float(r["baseline_accuracy"]) for r in last]
    gains = [a - b for a, b in zip(m2, base)]
    sd = lambda v: stdev(v) if len(v) > 1 else 0.0
    stderr = sd(gains) / math.sqrt(len(gains))
    best = [max(float(r["test_accuracy"]) for r in rows) for rows in runs]
    return dict(data=data, labels=labels, variant=variant, epochs=int(last[0]["epoch"]),
                seeds=len(runs), m2_mean=mean(m2), m2_sd=sd(m2), baseline_mean=mean(base),
                baseline_sd=sd(base), gain_mean=mean(gains), gain_stderr=stderr,
                verdict=verdict(mean(gains), stderr) if len(gains) > 1 else "one seed: no s.e.",
                decline=mean(b - a for a, b in zip(m2, best)))


def markdown(rows: List[dict]) -> str:
    lines = ["| data | labels | variant | epochs | seeds | M2 | classifier alone | "
             f"M2 − classifier (± s.e.) | better at {MARGIN} s.e. | last epoch below best |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['labels']} | {r['variant']} | {r['epochs']} | "
                     f"{r['seeds']} | {r['m2_mean']:.3f} ± {r['m2_sd']:.3f} | "
                     f"{r['baseline_mean']:.3f} ± {r['baseline_sd']:.3f} | "
                     f"{r['gain_mean']:+.3f} ± {r['gain_stderr']:.3f} | {r['verdict']} | "
                     f"{r['decline']:.3f} |")
    return "\n".join(lines) + "\n"


def cause_markdown(rows: List[dict]) -> str:
    """Test accuracy by variant (rows, in the order of ``m2_measure.VARIANTS``) and epoch
    (columns), "–" past a run's last epoch, then the variant's classifier alone (its network,
    its labels, as many steps)."""
    by_variant, baseline = defaultdict(dict), {}
    for r in rows:
        by_variant[r["variant"]][int(r["epoch"])] = float(r["test_accuracy"])
        baseline[r["variant"]] = float(r["baseline_accuracy"])
    last = max(max(epochs) for epochs in by_variant.values())
    order = list(VARIANTS)
    by_variant = dict(sorted(by_variant.items(), key=lambda item: order.index(item[0])))
    lines = ["| variant | " + " | ".join(f"epoch {e}" for e in range(1, last + 1))
             + " | classifier alone |", "|---|" + "---|" * (last + 1)]
    for variant, epochs in by_variant.items():
        cells = [f"{epochs[e]:.3f}" if e in epochs else "–" for e in range(1, last + 1)]
        lines.append(f"| `{variant}` | " + " | ".join(cells) + f" | {baseline[variant]:.3f} |")
    return "\n".join(lines) + "\n"


def held_out_scores(path: Path) -> Dict[tuple, tuple]:
    """(data, labels, variant) → the held-out accuracy of M2 and of the classifier alone at the
    last epoch every run of the setting reached, per seed, from validation.csv at ``path``."""
    return {key: ([float(rows[-1]["validation_accuracy"]) for rows in runs],
                  [float(rows[-1]["baseline_accuracy"]) for rows in runs],
                  int(runs[0][-1]["epoch"]))
            for key, runs in runs_by_setting(path).items()}


def picks(scores: Dict[tuple, tuple]) -> Dict[tuple, str]:
    """Whether the held-out images pick each setting of ``held_out_scores``: with m its M2's
    mean over seeds, "best" for the highest m of its data and labels, "within 1 s.e." where m
    is at least the best's m less the best's standard error sd/√n, else "no"."""
    stats = {key: (mean(m2), stdev(m2) / math.sqrt(len(m2)) if len(m2) > 1 else 0.0)
             for key, (m2, _, _) in scores.items()}
    chosen = {}
    for key, (m, _) in stats.items():
        rivals = {k: v for k, v in stats.items() if k[:2] == key[:2]}
        best = max(rivals, key=lambda k: rivals[k][0])
        chosen[key] = ("best" if key == best else
                       "within 1 s.e." if m >= rivals[best][0] - rivals[best][1] else "no")
    return chosen


def validation_markdown(scores: Dict[tuple, tuple]) -> str:
    """The held-out accuracy at the last epoch by data, labels and variant (in the order of
    ``m2_measure.VARIANTS``): M2's and the classifier's, mean ± sd over seeds, M2's standard
    error, and ``picks``'s verdict."""
    chosen = picks(scores)
    sd = lambda v: stdev(v) if len(v) > 1 else 0.0
    lines = ["| data | labels | variant | epochs | seeds | M2 on held-out images (± s.e.) | "
             "classifier alone | picked |", "|---|---|---|---|---|---|---|---|"]
    for key in sorted(scores, key=lambda k: (k[0], k[1], list(VARIANTS).index(k[2]))):
        m2, base, epochs = scores[key]
        lines.append(f"| {key[0]} | {key[1]} | `{key[2]}` | {epochs} | {len(m2)} | "
                     f"{mean(m2):.3f} ± {sd(m2):.3f} (± {sd(m2) / math.sqrt(len(m2)):.3f}) | "
                     f"{mean(base):.3f} ± {sd(base):.3f} | {chosen[key]} |")
    return "\n".join(lines) + "\n"


def write_rows(path: Path, rows: List[dict], columns=EPOCH_COLUMNS) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def fill(page: Path, marker: str, text: str) -> None:
    """Put ``text`` between the ``<!-- marker -->`` lines of ``page``."""
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
    page.write_text(pattern.sub(lambda m: m[1] + text + m[2], page.read_text()))


def main(argv=None) -> int:
    argv = list(argv or sys.argv[1:])
    cause, validation = argv[0] == "--cause", argv[0] == "--validation"
    out, *folders = (Path(a) for a in argv[cause or validation:])
    out.mkdir(parents=True, exist_ok=True)
    page = out.parent / "m2.md"
    if validation:      # held-out training images: the choice of the defaults
        write_rows(out / "validation.csv", collect(folders, "validation"), VALIDATION_COLUMNS)
        fill(page, "validation", validation_markdown(held_out_scores(out / "validation.csv")))
        return 0
    if cause:           # one seed per variant: the per-epoch table, no summary
        rows = collect(folders)
        write_rows(out / "cause.csv", rows)
        fill(page, "cause", cause_markdown(rows))
        return 0
    epochs = out / "epochs.csv"
    write_rows(epochs, collect(folders))
    rows = [summary(*key, runs) for key, runs in runs_by_setting(epochs).items()]
    with (out / "m2.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fill(page, "table", markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
