"""The estimator comparison end to end, and the inference gaps."""
import csv
import json

import pytest

from experiments import compare, gaps
from experiments.training.config import Config
from experiments.training.run import run


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    argv = ["--elbos", "trace,iwae,score-function", "--num-particles", "1,5", "--seeds", "2",
            "--epochs", "2", "--num-train", "256", "--num-test", "64", "--hidden-dims", "32",
            "--grad-draws", "12", "--iwae-samples", "30", "--jobs", "2", "--out", str(out)]
    assert compare.main(argv) == 0
    with open(out / "comparison.csv") as f:
        return out, {row["label"]: row for row in csv.DictReader(f)}


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


def test_runs_with_the_same_seed_share_initial_parameters_and_minibatch(comparison):
    """iwae with K = 1 is the trace estimator: at the shared initial parameters, on the shared
    minibatch, with the same gradient draws, their measurements coincide exactly."""
    _, rows = comparison
    for key in ("grad_var_guide_init", "grad_var_model_init", "grad_snr_guide_init"):
        assert rows["trace"][key] == rows["iwae K=1"][key]
    assert rows["trace"]["test_elbo_mean"] == rows["iwae K=1"]["test_elbo_mean"]


def test_score_function_guide_variance_dwarfs_the_reparameterization_trick(comparison):
    _, rows = comparison
    for suffix in ("_init", ""):
        ratio = (float(rows["score-function"][f"grad_var_guide{suffix}"])
                 / float(rows["trace"][f"grad_var_guide{suffix}"]))
        assert ratio > 100


def test_the_iwae_estimate_of_an_iwae_trained_model_is_at_least_its_elbo(comparison):
    _, rows = comparison
    row = rows["iwae K=5"]
    assert float(row["test_iwae_mean"]) >= float(row["test_elbo_mean"])


def test_bad_comparison_options_are_refused_in_one_line(capsys, tmp_path):
    assert compare.main(["--elbos", "trace,nope", "--out", str(tmp_path / "c")]) == 2
    assert "unknown estimator or guide in --elbos item 'nope'" in capsys.readouterr().err
    assert compare.main(["--elbos", "tail-adaptive", "--out", str(tmp_path / "c")]) == 2
    assert "tail-adaptive needs --num-particles 2 or more" in capsys.readouterr().err
    assert compare.main(["--guide", "flow", "--elbos", "meanfield", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: vae + flow + meanfield cannot work") and "\n" not in err


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
    assert capsys.readouterr().err.strip() == f"error: --run {tmp_path / 'nowhere'}: no such run folder"
