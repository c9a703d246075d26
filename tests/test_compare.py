"""The estimator comparison end to end, and the inference gaps."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import compare, gaps
from experiments.comparison.report import aggregate
from experiments.config.config import Config
from experiments.training.end_to_end import run
from experiments.training.trained import load_trained

ROOT = Path(__file__).resolve().parent.parent
K_SE = 4.0        # standard errors a Monte Carlo number may stray from the truth


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    argv = ["--elbos", "trace,iwae,score-function", "--num-particles", "1,5", "--seeds", "2",
            "--epochs", "2", "--num-train", "256", "--num-test", "64", "--hidden-dims", "32",
            "--grad-draws", "12", "--iwae-samples", "30", "--jobs", "2", "--out", str(out)]
    assert compare.main(argv) == 0
    with open(out / "comparison.csv") as f:
        return out, {row["label"]: row for row in csv.DictReader(f)}


@pytest.mark.slow
def test_comparison_writes_one_row_per_estimator_and_k_with_the_promised_columns(comparison):
    out, rows = comparison
    assert list(rows) == ["trace", "iwae K=1", "iwae K=5", "score-function"]
    for column in ("elbo", "test_elbo_mean", "test_elbo_std", "test_iwae_mean", "test_iwae_std",
                   "grad_var_guide", "grad_var_model", "grad_snr_guide", "grad_snr_model",
                   "grad_var_guide_init", "grad_snr_model_init", "seconds_per_step"):
        assert column in rows["trace"]
    assert rows["iwae K=5"]["elbo"] == "iwae" and rows["iwae K=5"]["num_particles"] == "5"
    for name in ("comparison.md", "curves.png", "gradient_variance.png", "snr_vs_k.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "snr_sweep.csv") as f:        # K swept at one fixed point, iwae only
        sweep = list(csv.DictReader(f))
    assert [(r["elbo"], r["num_particles"]) for r in sweep] == [("iwae", "1"), ("iwae", "5")]
    assert all(r["at"] == "trace" for r in sweep)
    assert len(list((out / "runs").iterdir())) == 8          # 4 settings × 2 seeds


@pytest.mark.slow
def test_runs_with_the_same_seed_share_initial_parameters_and_minibatch(comparison):
    """iwae with K = 1 is the trace estimator: at the shared initial parameters, on the shared
    minibatch, with the same gradient draws, their measurements coincide exactly."""
    _, rows = comparison
    for key in ("grad_var_guide_init", "grad_var_model_init", "grad_snr_guide_init"):
        assert rows["trace"][key] == rows["iwae K=1"][key]
    assert rows["trace"]["test_elbo_mean"] == rows["iwae K=1"]["test_elbo_mean"]


@pytest.mark.slow
def test_paired_differences_against_the_first_estimator_on_the_same_test_points(comparison):
    """Against itself, and against iwae K = 1 (the same computation), the paired difference is
    exactly zero; for another estimator its mean is the difference of the two means (each
    point's value averaged over seeds), with a standard error over the 64 test points."""
    out, rows = comparison
    for name in ("trace", "iwae K=1"):
        assert rows[name]["paired_reference"] == "trace"
        for key in ("test_elbo", "test_iwae"):
            assert float(rows[name][f"{key}_paired_diff"]) == 0.0
            assert float(rows[name][f"{key}_paired_stderr"]) == 0.0
    score = rows["score-function"]
    for key in ("test_elbo", "test_iwae"):
        difference = float(score[f"{key}_mean"]) - float(rows["trace"][f"{key}_mean"])
        assert float(score[f"{key}_paired_diff"]) == pytest.approx(difference, abs=1e-5)
        assert float(score[f"{key}_paired_stderr"]) > 0
    text = (out / "comparison.md").read_text()
    assert "Paired differences against trace on the same test points" in text
    assert "| score-function | " in text.split("Paired differences")[1]


def test_steps_to_target_counts_steps_to_the_weakest_estimators_final_mean():
    """Three estimators whose seed-averaged final test ELBO is −3, −2 and −1: the target is
    −3 (the weakest, not the median −2), which every curve reaches."""
    def result(label, curve):
        return {"status": "completed", "label": label, "elbo": "trace", "num_particles": 1,
                "seed": 0, "run_dir": "nowhere", "steps_per_epoch": 10,
                "summary": {"test_elbo": curve[-1]}, "final": {}, "init": {},
                "metrics": [{"epoch": i + 1, "test_elbo": v, "seconds": 1.0}
                            for i, v in enumerate(curve)]}

    rows = aggregate([result("slow", [-9, -5, -3]), result("mid", [-9, -2.5, -2]),
                      result("fast", [-2.9, -1, -1])], None)
    assert [r["target_test_elbo"] for r in rows] == [-3, -3, -3]
    assert [r["steps_to_target"] for r in rows] == [30, 20, 10]
    assert aggregate([result("slow", [-9, -5, -3])], -4)[0]["steps_to_target"] == 30


@pytest.mark.slow
def test_score_function_guide_variance_dwarfs_the_reparameterization_trick(comparison):
    _, rows = comparison
    for suffix in ("_init", ""):
        ratio = (float(rows["score-function"][f"grad_var_guide{suffix}"])
                 / float(rows["trace"][f"grad_var_guide{suffix}"]))
        assert ratio > 100


@pytest.mark.slow
def test_the_iwae_estimate_of_an_iwae_trained_model_is_at_least_its_elbo(comparison):
    _, rows = comparison
    row = rows["iwae K=5"]
    assert float(row["test_iwae_mean"]) >= float(row["test_elbo_mean"])


def test_bad_comparison_options_are_refused_in_one_line(capsys, tmp_path):
    assert compare.main(["--elbos", "trace,nope", "--out", str(tmp_path / "c")]) == 2
    assert "unknown estimator or guide in --elbos item 'nope'" in capsys.readouterr().err
    assert compare.main(["--elbos", "tail-adaptive", "--out", str(tmp_path / "c")]) == 2
    assert "tail-adaptive needs --num-particles 2 or more" in capsys.readouterr().err
    argv = ["--guide", "flow", "--elbos", "meanfield", "--out", str(tmp_path / "c")]
    assert compare.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: vae + flow + meanfield cannot work") and "\n" not in err


@pytest.mark.slow
def test_gaps_split_log_likelihood_minus_amortized_elbo(tmp_path, capsys):
    trained = run(Config(epochs=3, num_train=300, num_test=40, hidden_dims=(32,),
                         iwae_samples=20, progress=False, out=str(tmp_path / "run")))
    assert gaps.main(["--run", str(trained.run_dir), "--num-points", "20",
                      "--iwae-samples", "300"]) == 0
    result = json.loads((trained.run_dir / "gaps.json").read_text())
    # the IWAE estimate of log p(x) is itself a bound, tighter than the best ELBO up to noise
    assert result["approximation_gap"] > -0.05
    assert (trained.run_dir / "gaps.png").read_bytes()[:4] == b"\x89PNG"


def test_gaps_refuses_a_missing_run_naming_its_option(capsys, tmp_path):
    assert gaps.main(["--run", str(tmp_path / "nowhere")]) == 2
    assert (capsys.readouterr().err.strip()
            == f"error: --run {tmp_path / 'nowhere'}: no such run folder")


# a comparison small enough to interrupt and finish twice: two runs, one after the other
SMALL = ["--elbos", "trace,stl", "--seeds", "1", "--epochs", "50", "--num-train", "256",
         "--num-test", "32", "--hidden-dims", "8", "--batch-size", "64", "--grad-draws", "4",
         "--iwae-samples", "10", "--jobs", "1"]
TIMING = {"seconds_per_step"}             # wall time: the one column that may differ


def _csv(path):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _interrupt_after_the_first_run(out, sig, whole_group):
    """Start the comparison in a process of its own; once the first run is done and the
    second has a checkpoint, send ``sig`` (to every process of the command, as a terminal's
    Ctrl-C does, or to the command alone, as a scheduler does); its exit status and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "experiments.compare", *SMALL,
                                "--out", str(out)], cwd=ROOT, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    lines = []
    while not any(line.startswith("done: trace seed 0") for line in lines):
        line = process.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    second = out / "runs" / "stl-seed0" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not second.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    (os.killpg if whole_group else os.kill)(process.pid, sig)
    lines += process.stderr.readlines()
    return process.wait(timeout=120), "".join(lines)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "cmp"
    assert compare.main(SMALL + ["--out", str(out)]) == 0
    return _csv(out / "comparison.csv")


@pytest.mark.parametrize("sig, whole_group, again", [
    (signal.SIGINT, True, "same command"), (signal.SIGTERM, False, "--resume")],
    ids=["ctrl-c-then-same-command", "sigterm-then-resume"])
@pytest.mark.slow
def test_an_interrupted_comparison_finishes_with_the_numbers_of_an_uninterrupted_one(
        tmp_path, sig, whole_group, again, uninterrupted):
    out = tmp_path / "cmp"
    status, err = _interrupt_after_the_first_run(out, sig, whole_group)
    assert status == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    assert err.splitlines()[-1] == (
        f"stopped: interrupted: 1 of 2 runs finished, 1 stopped at a checkpoint; continue "
        f"with python -m experiments.compare --resume {out}")
    first, second = out / "runs" / "trace-seed0", out / "runs" / "stl-seed0"
    assert json.loads((second / "summary.json").read_text())["status"] == "interrupted"
    kept = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    summary = (first / "summary.json").read_text()

    argv = SMALL + ["--out", str(out)] if again == "same command" else ["--resume", str(out)]
    assert compare.main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == kept   # not retrained
    assert (first / "summary.json").read_text() == summary
    assert _csv(out / "comparison.csv") == uninterrupted


def test_a_rerun_with_other_settings_or_a_folder_without_a_comparison_is_refused(
        tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare.main(SMALL + ["--out", str(out), "--plan-only"]) == 0     # its plan.json
    assert compare.main(SMALL + ["--out", str(out), "--epochs", "7"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"error: --out {out} holds a comparison with other settings (epochs was 50, now 7); "
        f"finish it with --resume {out}, pass --force to replace it, or choose another --out")
    assert compare.main(["--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --resume {tmp_path}: it holds no plan.json (not a comparison folder, or one "
        "written before comparisons could be resumed)")
    assert compare.main(["--resume", str(out), "--force", "--epochs", "7"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --resume {out} finishes the comparison with the settings it was started "
        "with; drop --epochs, --force (or start another with --out)")
    text = " ".join(compare.parser().format_help().split())     # what --help promises
    assert "--resume DIR finish the comparison in DIR" in text
    assert "also when resuming" not in text


@pytest.mark.slow
def test_a_failed_run_is_listed_in_the_comparison_not_hidden(tmp_path, capsys):
    out = tmp_path / "cmp"
    missing = tmp_path / "missing.npz"
    assert compare.main(["--elbos", "trace", "--seeds", "1", "--epochs", "1", "--data",
                         str(missing), "--jobs", "1", "--out", str(out)]) == 1
    (row,) = _csv(out / "comparison.csv")
    assert row["label"] == "trace" and row["seeds"] == "0"
    assert row["status"].startswith("1 of 1 runs failed: seed 0: ")
    assert str(missing) in row["status"]
    assert "| status |" in (out / "comparison.md").read_text()
    assert "error: trace seed 0 failed: " in capsys.readouterr().err


@pytest.mark.slow
def test_the_ais_column_scores_each_run_within_its_error_of_the_exact_log_likelihood(tmp_path):
    """--ais-points on the ppca, whose log p(x) is a closed form: each run's AIS estimate on its
    first test points lies within K_SE Monte Carlo errors of the exact mean there, the IWAE
    beside it not above it, and the table shows both columns."""
    out = tmp_path / "cmp"
    assert compare.main(["--model", "ppca", "--elbos", "trace,iwae", "--num-particles", "3",
                         "--seeds", "1", "--epochs", "1", "--num-train", "64", "--num-test",
                         "16", "--grad-draws", "2", "--iwae-samples", "20", "--ais-points",
                         "12", "--jobs", "2", "--no-progress", "--out", str(out)]) == 0
    rows = {row["label"]: row for row in _csv(out / "comparison.csv")}
    assert list(rows) == ["trace K=3", "iwae K=3"]
    for row in rows.values():
        (run_dir,) = (out / "runs").glob(f"{row['label'].replace(' K=', '-K')}-seed*")
        record = json.loads((run_dir / "comparison-run.json").read_text())["ais"]
        _, data, parts = load_trained(run_dir)
        exact = parts.model.exact_log_likelihood(data.x_test[:12]).mean().item()
        assert record["points"] == 12 and float(row["ais_points"]) == 12
        assert abs(record["ais"] - exact) < K_SE * record["ais_mc_stderr"]
        assert record["iwae"] < exact + K_SE * record["iwae_mc_stderr"]
        assert float(row["test_ais_mean"]) == pytest.approx(record["ais"])
    table = (out / "comparison.md").read_text()
    assert "| AIS (12 pts) | IWAE (12 pts) |" in table and "8 chains × 200 steps" in table


@pytest.mark.parametrize("flags, says", [
    (["--model", "discrete-vae", "--guide", "relaxed"],
     "--ais-points: the discrete-vae model cannot be scored by AIS: AIS moves the latent "
     "sites by Hamiltonian Monte Carlo, which needs them continuous"),
    (["--ais-points", "-1"], "--ais-points must be 0 (off) or a number of test points (got -1)"),
])
def test_an_ais_column_that_cannot_be_measured_is_refused_in_one_line(tmp_path, capsys, flags,
                                                                        says):
    out = tmp_path / "cmp"
    assert compare.main(["--ais-points", "5", "--elbos", "trace", *flags,
                         "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {says}") and "\n" not in err
    assert not out.exists()
