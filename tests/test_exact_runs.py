"""The runs of the models with exact log-likelihoods, end to end: the commands of issue 3's
"Done when", what their folders hold, and restarts that keep the best final ELBO."""
import csv
import json

import pytest

from experiments.config.config import Config
from experiments.training.end_to_end import run

QUICK = dict(epochs=2, num_train=300, num_test=60, hidden_dims=(16,), iwae_samples=20,
             progress=False, pyro_validation=True)


@pytest.mark.parametrize("settings, figures", [
    (dict(model="gmm", guide="enum", elbo="enum", data="gmm-1d"),
     ["elbo.png", "bounds.png", "density.png", "posterior.png"]),
    (dict(model="gmm", guide="categorical", elbo="tracegraph", data="gmm-1d"),
     ["elbo.png", "bounds.png", "density.png", "posterior.png"]),
    (dict(model="lvm", guide="normal", elbo="trace", data="ring"),
     ["elbo.png", "bounds.png", "curve.png", "posterior.png"]),
    (dict(model="lvm", guide="flow", elbo="trace", data="ring"),    # q without a closed-form
     ["elbo.png", "bounds.png", "curve.png", "posterior.png"]),     # mean: moments by sampling
], ids=["gmm-enum", "gmm-categorical-tracegraph", "lvm-ring", "lvm-flow-ring"])
@pytest.mark.slow
def test_the_done_when_commands_run_end_to_end_with_their_figures(settings, figures, tmp_path):
    result = run(Config(**settings, **QUICK, out=str(tmp_path / "run")))
    s = result.summary
    assert s["test_elbo"] <= s["test_exact_log_likelihood"] + 0.05
    assert s["test_gap"] == pytest.approx(s["test_exact_log_likelihood"] - s["test_elbo"])
    assert s["test_iwae"] <= s["test_exact_log_likelihood"] + 3 * s["test_iwae_mc_stderr"] + 1e-4
    assert "true_log_likelihood" in s
    with open(result.run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"test_exact_log_likelihood", "test_gap", "test_iwae"} <= set(rows[0])
    if settings["model"] == "gmm":
        assert {"recovery_weights_error", "recovery_means_error",
                "recovery_scales_error", "test_posterior_kl"} <= set(s)
        assert "test_posterior_kl" in rows[0]
    if settings["guide"] == "enum":
        assert s["test_gap"] == pytest.approx(0.0, abs=1e-4)
        assert s["test_iwae_mc_stderr"] < 1e-6          # every weight is p(x_i): no MC error
        assert s["test_iwae_point_stderr"] > 0.01
        assert s["test_iwae"] == pytest.approx(s["test_exact_log_likelihood"], abs=1e-4)
    for name in figures:
        assert (result.run_dir / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_ppca_runs_on_two_dimensional_data_with_the_lvm_figures(tmp_path):
    result = run(Config(model="ppca", guide="normal", data="moons", latent_dim=1, **QUICK,
                        out=str(tmp_path / "run")))
    assert json.loads((result.run_dir / "config.json").read_text())["likelihood"] == "gaussian"
    for name in ("bounds.png", "curve.png", "posterior.png"):
        assert (result.run_dir / name).exists()


@pytest.mark.slow
def test_restarts_keep_the_best_final_train_elbo_and_resume_from_it(tmp_path):
    out = tmp_path / "run"
    config = Config(model="gmm", guide="enum", elbo="enum", data="gmm-2d", components=4,
                    restarts=2, seed=2, **QUICK, out=str(out))
    result = run(config)
    s = result.summary
    finals = s["restart_train_elbos"]
    assert s["restarts"] == 2 and finals[0] > finals[1] and s["best_seed"] == 2
    assert s["train_elbo"] == finals[0]
    kept = out / "restarts" / "seed-2"
    assert (out / "metrics.csv").read_bytes() == (kept / "metrics.csv").read_bytes()
    # the kept restart is the first: the summary must evaluate its parameters, not the last's
    assert s["test_elbo"] == pytest.approx(result.metrics[-1]["test_elbo"], abs=1e-6)
    alone = run(config.replace(restarts=1, out=str(tmp_path / "alone")))
    assert alone.summary["test_elbo"] == pytest.approx(s["test_elbo"], abs=1e-6)
    resumed = run(config.replace(epochs=3, restarts=1), resume=out)
    assert [row["epoch"] for row in resumed.metrics] == [1, 2, 3]
