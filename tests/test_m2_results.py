"""docs/results/m2.md against the runs it reports (docs/results/m2/epochs.csv and cause.csv):
every number of its tables recomputed here from the per-epoch rows, with numpy, and each
verdict re-derived from the paired gains (two standard errors), without retraining."""
import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

RESULTS = Path(__file__).parents[1] / "docs" / "results"
PAGE = RESULTS / "m2.md"


def _rows(name: str):
    with (RESULTS / "m2" / name).open() as f:
        return list(csv.DictReader(f))


def _table(marker: str):
    """The rows of the Markdown table between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    block = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", PAGE.read_text(), re.S)[1]
    lines = [line for line in block.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _runs(rows):
    runs = defaultdict(dict)
    for r in rows:
        runs[r["data"], r["labels"], r["variant"], r["seed"]][int(r["epoch"])] = r
    return runs


def _expected_rows():
    """(data, labels, variant) → the table's cells, recomputed from epochs.csv at the last
    epoch every seed of the setting reached."""
    settings = defaultdict(list)
    for (data, labels, variant, _), epochs in _runs(_rows("epochs.csv")).items():
        settings[data, labels, variant].append(epochs)
    expected = {}
    for key, runs in settings.items():
        common = min(max(run) for run in runs)
        runs = [{e: r for e, r in run.items() if e <= common} for run in runs]
        last = [run[common] for run in runs]
        m2 = np.array([float(r["test_accuracy"]) for r in last])
        base = np.array([float(r["baseline_accuracy"]) for r in last])
        gain = m2 - base
        se = gain.std(ddof=1) / math.sqrt(len(gain)) if len(gain) > 1 else 0.0
        best = np.array([max(float(r["test_accuracy"]) for r in run.values()) for run in runs])
        sd = lambda v: v.std(ddof=1) if len(v) > 1 else 0.0
        winner = ("one seed: no s.e." if len(gain) == 1 else "M2" if gain.mean() > 2 * se else
                  "classifier" if gain.mean() < -2 * se else "neither (within 2 s.e.)")
        expected[key] = [str(max(runs[0])), str(len(runs)),
                         f"{m2.mean():.3f} ± {sd(m2):.3f}", f"{base.mean():.3f} ± {sd(base):.3f}",
                         f"{gain.mean():+.3f} ± {se:.3f}", winner, f"{(best - m2).mean():.3f}"]
    return expected


def test_the_results_table_is_the_runs_recomputed():
    expected = _expected_rows()
    shown = {tuple(row[:3]): row[3:] for row in _table("table")}
    assert set(shown) == set(expected)
    for key, cells in shown.items():
        assert cells == expected[key], key


def test_the_summary_csv_holds_the_same_numbers_as_the_page():
    expected = _expected_rows()
    for row in _rows("m2.csv"):
        cells = expected[row["data"], row["labels"], row["variant"]]
        assert f"{float(row['gain_mean']):+.3f} ± {float(row['gain_stderr']):.3f}" == cells[4]
        assert row["verdict"] == cells[5]


def test_the_cause_table_quotes_the_measured_epochs():
    """Each cell of the cause table (test accuracy at an epoch, by variant) is that run's."""
    runs = _runs(_rows("cause.csv"))
    by_variant = {variant: epochs for (_, _, variant, _), epochs in runs.items()}
    table = _table("cause")
    for row in table:
        variant, cells = row[0].strip("`"), row[1:]
        for epoch, cell in enumerate(cells, 1):
            if cell == "–":
                assert epoch not in by_variant[variant]
            else:
                assert cell == f"{float(by_variant[variant][epoch]['test_accuracy']):.3f}"
    baselines = {r["baseline_accuracy"] for r in _rows("cause.csv")}
    assert len(baselines) == 1                  # one labeled set, one baseline to compare with
    assert f"{float(baselines.pop()):.3f}" in PAGE.read_text()


@pytest.mark.parametrize("claim", ["defaults"])
def test_the_page_states_the_verdict_it_shows_for_28x28_at_100_labels(claim):
    """The page's summary sentence names the same winner as the table's 28×28, 100-label row."""
    row = next(r for r in _table("table") if r[:3] == ["digits28", "100", claim])
    summary = re.search(r"<!-- verdict -->(.*?)<!-- /verdict -->", PAGE.read_text(), re.S)[1]
    assert row[8] in summary and row[7] in summary
