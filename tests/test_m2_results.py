"""docs/results/m2.md against the runs it reports (docs/results/m2/epochs.csv and cause.csv):
every number of its tables recomputed here from the per-epoch rows, with numpy, and each
verdict re-derived from the paired gains (three standard errors), without retraining."""
import argparse
import csv
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.common.errors import UserError
from experiments.config.config import BY_MODEL, Config, resolve
from experiments.data.datasets import load_dataset
from experiments.results import m2_measure
from experiments.training.end_to_end import run
from experiments.training.prepare import prepare_data
from models import MODELS

RESULTS = Path(__file__).parents[1] / "docs" / "results"
PAGE = RESULTS / "m2.md"
#: test images of each data set (the 8×8 digits' split, and its three shifted copies)
TEST_SIZES = {"digits": 359, "digits28": 1077}


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


def _settings(name: str) -> dict:
    """(data, labels, variant) → (the last epoch every seed of the setting reached, each seed's
    rows by epoch up to it), from the per-epoch csv ``name``."""
    settings = defaultdict(list)
    for (data, labels, variant, _), epochs in _runs(_rows(name)).items():
        settings[data, labels, variant].append(epochs)
    cut = {}
    for key, runs in settings.items():
        common = min(max(run) for run in runs)
        cut[key] = common, [{e: r for e, r in run.items() if e <= common} for run in runs]
    return cut


def _expected_rows():
    """(data, labels, variant) → the table's cells, recomputed from epochs.csv at the last
    epoch every seed of the setting reached."""
    expected = {}
    for key, (common, runs) in _settings("epochs.csv").items():
        last = [run[common] for run in runs]
        m2 = np.array([float(r["test_accuracy"]) for r in last])
        base = np.array([float(r["baseline_accuracy"]) for r in last])
        gain = m2 - base
        se = gain.std(ddof=1) / math.sqrt(len(gain)) if len(gain) > 1 else 0.0
        best = np.array([max(float(r["test_accuracy"]) for r in run.values()) for run in runs])
        sd = lambda v: v.std(ddof=1) if len(v) > 1 else 0.0
        winner = ("one seed: no s.e." if len(gain) == 1 else "M2" if gain.mean() > 3 * se else
                  "classifier" if gain.mean() < -3 * se else "neither (within 3 s.e.)")
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
    """Each cell of the cause table (test accuracy at an epoch, by variant) is that run's, and
    its last column the classifier alone of that run."""
    runs = _runs(_rows("cause.csv"))
    by_variant = {variant: epochs for (_, _, variant, _), epochs in runs.items()}
    table = _table("cause")
    assert {row[0].strip("`") for row in table} == set(by_variant)
    for row in table:
        variant, cells, baseline = row[0].strip("`"), row[1:-1], row[-1]
        for epoch, cell in enumerate(cells, 1):
            if cell == "–":
                assert epoch not in by_variant[variant]
            else:
                assert cell == f"{float(by_variant[variant][epoch]['test_accuracy']):.3f}"
        assert {f"{float(r['baseline_accuracy']):.3f}" for r in by_variant[variant].values()} \
            == {baseline}


@pytest.mark.parametrize("data", ["digits", "digits28"])
def test_at_its_defaults_m2_beats_its_classifier_by_three_standard_errors_at_100_labels(data):
    """Issue 28's criterion, on the committed per-seed rows: the paired gain of M2 over the
    classifier alone at the last epoch, over at least three seeds, exceeds three of its
    standard errors; and M2's last epoch sits below its best by less than two binomial standard
    errors of one test accuracy, √(p(1 − p)/n), on average (no decline; the best is reported,
    not chosen: nothing is chosen by the test labels)."""
    runs = [run for (d, labels, variant, _), run in _runs(_rows("epochs.csv")).items()
            if (d, labels, variant) == (data, "100", "defaults")]
    common = min(max(run) for run in runs)
    last = [run[common] for run in runs]
    gain = np.array([float(r["test_accuracy"]) - float(r["baseline_accuracy"]) for r in last])
    assert len(gain) >= 3
    assert gain.mean() > 3 * gain.std(ddof=1) / math.sqrt(len(gain))
    m2 = np.array([float(r["test_accuracy"]) for r in last])
    best = np.array([max(float(r["test_accuracy"]) for e, r in run.items() if e <= common)
                     for run in runs])
    p = m2.mean()
    assert (best - m2).mean() < 2 * math.sqrt(p * (1 - p) / TEST_SIZES[data])


def test_the_page_states_the_verdict_it_shows_at_100_labels():
    """The page's summary sentence names the same gain and winner as the table's 100-label
    rows at the defaults."""
    summary = re.search(r"<!-- verdict -->(.*?)<!-- /verdict -->", PAGE.read_text(), re.S)[1]
    for data in ("digits", "digits28"):
        row = next(r for r in _table("table") if r[:3] == [data, "100", "defaults"])
        assert row[8] in summary and row[7] in summary


@pytest.mark.slow
def test_the_measured_baseline_is_the_one_the_train_command_reports(tmp_path):
    """m2_measure's classifier alone is ``elbolab train``'s, trained on the same labels for as
    many steps: the same accuracy to the last digit; and its folder records the ssvae's own
    defaults, which the table claims to measure."""
    args = argparse.Namespace(data="digits", labels=30, epochs=1, num_train=200, validation=0)
    measured = m2_measure.measure(tmp_path / "m2", "defaults", 3, args)
    folder = tmp_path / "m2" / "digits-30" / "defaults-seed3"
    config = Config.from_dict(json.loads((folder / "config.json").read_text()))
    assert {k: getattr(config, k) for k in BY_MODEL} == {
        k: MODELS["ssvae"].defaults[k] for k in BY_MODEL}
    trained = run(config.replace(out=str(tmp_path / "train"), iwae_samples=2), force=True)
    assert measured[-1]["baseline_accuracy"] == trained.metrics[-1]["baseline_accuracy"]
    with (folder / "metrics.csv").open() as f:
        assert [float(r["test_accuracy"]) for r in csv.DictReader(f)] == [
            r["test_accuracy"] for r in measured]


def test_every_accuracy_the_page_quotes_is_one_its_runs_measured():
    """Each three-decimal number in the page's prose is a measured accuracy (cause.csv,
    epochs.csv, validation.csv), a per-seed gain M2 − classifier, or a cell of its tables."""
    text = PAGE.read_text()
    tables = re.findall(r"<!-- (table|cause|validation) -->\n(.*?)<!-- /\1 -->", text, re.S)
    known = {n for _, block in tables for n in re.findall(r"\d\.\d{3}", block)}
    for row in _rows("cause.csv") + _rows("epochs.csv") + _rows("validation.csv"):
        m2 = float(row.get("test_accuracy") or row["validation_accuracy"])
        base = float(row["baseline_accuracy"])
        known |= {f"{m2:.3f}", f"{base:.3f}", f"{abs(m2 - base):.3f}"}
    prose = re.sub(r"<!-- (table|cause|validation) -->\n.*?<!-- /\1 -->", "", text,
                   flags=re.S)
    quoted = set(re.findall(r"\d\.\d{3}", prose))
    assert quoted and quoted <= known, sorted(quoted - known)


def test_validation_scores_held_out_training_images_never_trained_on_nor_the_test_set():
    """``--validation 500`` with ``--num-train 2000`` on the 28×28 digits trains on training
    images 0..1999 (the 100 labels chosen among them) and scores images 2000..2499 with their
    own labels, and nothing else: no test image is among the images scored."""
    config = resolve(Config(model="ssvae", data="digits28", labels=100, num_train=2000, seed=1))
    data = prepare_data(config, torch.device("cpu"), validation=500)
    full = load_dataset("digits28")
    assert torch.equal(data.x_train, full.x_train[:2000])
    assert torch.equal(data.x_test, full.x_train[2000:2500])
    assert torch.equal(data.y_test, full.y_train[2000:2500])
    assert int((data.y_train >= 0).sum()) == 100
    assert not (torch.cdist(data.x_test, full.x_test) == 0).any()


def test_without_num_train_validation_holds_out_the_last_training_images():
    config = resolve(Config(model="ssvae", data="digits", labels=100, seed=0))
    data = prepare_data(config, torch.device("cpu"), validation=300)
    full = load_dataset("digits")
    assert torch.equal(data.x_train, full.x_train[:-300])
    assert torch.equal(data.x_test, full.x_train[-300:])
    with pytest.raises(UserError, match="--validation 1438"):
        prepare_data(config, torch.device("cpu"), validation=1438)
    with pytest.raises(UserError, match="hold out fewer"):
        prepare_data(config.replace(num_train=1400), torch.device("cpu"), validation=100)


@pytest.mark.slow
def test_a_validation_run_scores_only_the_held_out_images(tmp_path, monkeypatch):
    """In validation mode every accuracy m2_measure computes (M2's and the classifier's) is
    against the held-out training labels; the test labels are never scored."""
    scored = []
    real = m2_measure.accuracy
    monkeypatch.setattr(m2_measure, "accuracy", lambda p, y: scored.append(y) or real(p, y))
    args = argparse.Namespace(data="digits", labels=30, epochs=1, num_train=100, validation=50)
    rows = m2_measure.measure(tmp_path, "hidden-128", 0, args)
    held = load_dataset("digits").y_train[100:150]
    assert len(scored) == 2 and all(torch.equal(y, held) for y in scored)
    assert set(rows[0]) == {"epoch", "baseline_accuracy", "validation_accuracy"}


def _held_out_rows():
    """(data, labels, variant) → the validation table's cells, recomputed from validation.csv
    at the last epoch every seed of the setting reached, with the pick re-derived: the highest
    mean held-out accuracy of its data and labels, or within that one's standard error."""
    stats = {}
    for key, (common, runs) in _settings("validation.csv").items():
        m2 = np.array([float(run[common]["validation_accuracy"]) for run in runs])
        base = np.array([float(run[common]["baseline_accuracy"]) for run in runs])
        stats[key] = common, m2, base
    cells = {}
    for key, (common, m2, base) in stats.items():
        rivals = {k: v[1] for k, v in stats.items() if k[:2] == key[:2]}
        best = max(rivals, key=lambda k: rivals[k].mean())
        se = lambda v: v.std(ddof=1) / math.sqrt(len(v))
        picked = ("best" if key == best else "within 1 s.e."
                  if m2.mean() >= rivals[best].mean() - se(rivals[best]) else "no")
        cells[key] = [str(common), str(len(m2)), f"{m2.mean():.3f} ± {m2.std(ddof=1):.3f} "
                      f"(± {se(m2):.3f})", f"{base.mean():.3f} ± {base.std(ddof=1):.3f}", picked]
    return cells


def test_the_validation_table_is_the_held_out_runs_recomputed():
    expected = _held_out_rows()
    shown = {(row[0], row[1], row[2].strip("`")): row[3:] for row in _table("validation")}
    assert shown == expected


def test_the_ssvae_defaults_are_what_the_held_out_images_pick_at_28x28():
    """The variant that is the ssvae's defaults (``VARIANTS["defaults"]``, no change) has the
    best mean held-out accuracy on the 28×28 digits at 100 labels, or one within the best's
    standard error (at 8×8 the page reports what is picked there, next test); and
    every variant measured beside it changes one of the choices the page says were made
    (the width, α, the labeled rows per minibatch), at least three seeds each. The choices are
    pinned to the values the runs had: changing them in models/ssvae.py means measuring
    again."""
    assert m2_measure.VARIANTS["defaults"] == {}
    chosen = {k: MODELS["ssvae"].defaults[k] for k in ("hidden_dims", "aux_weight",
                                                         "labeled_batch")}
    assert chosen == {"hidden_dims": (512,), "aux_weight": 563.5, "labeled_batch": 16}
    picked = {variant: cells for (d, labels, variant), cells in _held_out_rows().items()
              if (d, labels) == ("digits28", "100")}
    assert {"defaults", "hidden-128", "hidden-1024", "aux-46"} <= set(picked)
    assert all(int(cells[1]) >= 3 for cells in picked.values())
    assert picked["defaults"][-1] in ("best", "within 1 s.e.")


def test_the_page_names_what_the_held_out_images_pick_on_each_data_set():
    """The page's verdict on the held-out images quotes, for each data set, the mean ± sd of
    the variant they pick as best and of the defaults."""
    verdict = re.search(r"<!-- picked -->(.*?)<!-- /picked -->", PAGE.read_text(), re.S)[1]
    verdict = " ".join(verdict.split())
    for (data, labels, variant), cells in _held_out_rows().items():
        if cells[-1] == "best" or variant == "defaults":
            assert cells[2].split(" (")[0] in verdict, (data, variant)
