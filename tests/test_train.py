"""Training runs end to end: learning, reproducibility, resuming, and what a run leaves."""
import csv
import json

import pytest
import torch

from experiments.training.end_to_end import run

FIGURES = ("elbo.png", "reconstructions.png", "samples.png", "latent.png", "manifold.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One digits VAE trained long enough to learn (about 3 s), shared by the tests below."""
    from experiments.config.config import Config

    out = tmp_path_factory.mktemp("trained") / "run"
    config = Config(epochs=15, num_test=200, hidden_dims=(128,), iwae_samples=200,
                    progress=False, out=str(out))
    return run(config)


@pytest.mark.slow
def test_training_beats_the_untrained_model_by_a_wide_margin(trained):
    first, last = trained.metrics[0]["test_elbo"], trained.metrics[-1]["test_elbo"]
    # after one epoch the bound is ~−32 nats; a trained 2-d VAE on 8×8 digits reaches ~−25
    assert last > first + 4.0
    assert trained.summary["test_elbo"] == last


def test_iwae_is_at_least_the_elbo_point_by_point(trained):
    """E[IWAE(x_i)] ≥ ELBO(x_i) for every point: the paired differences of test_points.csv
    have a mean above −3 of their standard errors, and their means are the summary's."""
    with open(trained.run_dir / "test_points.csv") as f:
        points = [(float(r["test_elbo"]), float(r["test_iwae"])) for r in csv.DictReader(f)]
    elbo, iwae = torch.tensor(points).T
    s = trained.summary
    assert len(points) == s["num_test"] == 200
    assert elbo.mean().item() == pytest.approx(s["test_elbo"], abs=1e-5)
    assert iwae.mean().item() == pytest.approx(s["test_iwae"], abs=1e-5)
    difference = iwae - elbo
    assert difference.mean() >= -3 * difference.std() / len(difference) ** 0.5


def test_run_folder_holds_config_metrics_summary_checkpoint_and_figures(trained):
    run_dir = trained.run_dir
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "vae" and config["hidden_dims"] == [128]
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 16))
    assert set(rows[0]) == {"epoch", "train_elbo", "test_elbo", "seconds", "eval_seconds",
                            "test_active_units", "test_kl_to_prior",
                            "test_mutual_information", "test_marginal_kl"}
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("test_elbo", "test_iwae", "test_iwae_mc_stderr", "test_iwae_point_stderr",
                "iwae_samples", "seconds_per_epoch", "eval_seconds_per_epoch",
                "final_eval_seconds", "epochs", "binarize"):
        assert key in summary
    assert summary["binarize"] == "dynamic" and summary["iwae_samples"] == 200
    seconds = [float(r["seconds"]) for r in rows]        # epoch 1 (recording) reported apart
    assert summary["first_epoch_seconds"] == pytest.approx(seconds[0])
    assert summary["seconds_per_epoch"] == pytest.approx(sum(seconds[1:]) / len(seconds[1:]))
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)   # no pickled modules
    assert state["epoch"] == 15 and "decoder.0.weight" in state["model"]
    for name in FIGURES:
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"
    assert not list(run_dir.glob(".*.tmp"))       # no temporary file left behind


@pytest.mark.slow
def test_same_seed_same_numbers_and_another_seed_other_numbers(quick_config, tmp_path):
    a = run(quick_config(out=str(tmp_path / "a")))
    b = run(quick_config(out=str(tmp_path / "b")))
    c = run(quick_config(out=str(tmp_path / "c"), seed=1))
    assert _same(a.metrics, b.metrics)
    assert a.summary["test_iwae"] == b.summary["test_iwae"]
    assert a.metrics[-1]["train_elbo"] != c.metrics[-1]["train_elbo"]


def _same(rows_a, rows_b):
    keys = ("epoch", "train_elbo", "test_elbo")
    return [[r[k] for k in keys] for r in rows_a] == [[r[k] for k in keys] for r in rows_b]


@pytest.mark.slow
def test_two_epochs_then_two_resumed_equal_four_in_one_go(quick_config, tmp_path):
    straight = run(quick_config(out=str(tmp_path / "straight"), epochs=4))
    first = run(quick_config(out=str(tmp_path / "resumed"), epochs=2))
    resumed = run(quick_config(out=str(tmp_path / "resumed"), epochs=4), resume=first.run_dir)
    assert [r["epoch"] for r in resumed.metrics] == [1, 2, 3, 4]
    assert _same(resumed.metrics, straight.metrics)
    assert resumed.summary["test_iwae"] == straight.summary["test_iwae"]


@pytest.mark.parametrize("binarize", ["static", "none"])
def test_binarization_choice_is_recorded(quick_config, binarize, capsys):
    result = run(quick_config(binarize=binarize, epochs=1))
    assert result.summary["binarize"] == binarize
    warned = "not comparable with the binarized-MNIST literature" in capsys.readouterr().err
    assert warned == (binarize == "none")


def test_binarize_is_resolved_to_none_for_grey_level_likelihoods(quick_config):
    result = run(quick_config(likelihood="continuous-bernoulli", epochs=1))
    assert result.summary["binarize"] == "none"
    assert json.loads((result.run_dir / "config.json").read_text())["binarize"] == "none"


def test_the_printed_summary_names_each_error_of_the_iwae_estimate(trained, capsys):
    from experiments.train import print_summary

    print_summary(trained)
    (line,) = [t for t in capsys.readouterr().out.splitlines() if "test IWAE" in t]
    s = trained.summary
    assert f"{s['test_iwae']:.3f} ± " in line and "Monte Carlo error (200 samples)" in line
    assert line.endswith(f"; ± {s['test_iwae_point_stderr']:.3f} over test points")
    assert 0 < s["test_iwae_mc_stderr"] < s["test_iwae_point_stderr"]


def test_the_printed_summary_counts_active_units_of_the_latent_size(trained, capsys):
    """A count of units, out of z's size: ``3 of 4``, not ``3.000 of d``."""
    from experiments.train import print_summary

    print_summary(trained)
    (line,) = [t for t in capsys.readouterr().out.splitlines() if "active units" in t]
    size = json.loads((trained.run_dir / "config.json").read_text())["latent_dim"]
    assert len(trained.summary["kl_per_dimension"]) == size
    assert f" {round(trained.summary['test_active_units'])} of {size}: Cov_x" in line


@pytest.mark.parametrize("model, epochs, expected", [
    ("cvae", 1, ["1 epoch,", "KL(q(z|x) ‖ p(z|x_v))", " 2 of 3: Cov_x"]),
    ("hvae", 2, ["2 epochs,", "active units z1", " 2 of 3: Cov_x", " 1 of 2: Cov_x"]),
])
def test_the_printed_summary_names_what_each_model_reports(model, epochs, expected, capsys):
    """Per model: the cvae's KL is against its own prior p(z|x_v), the hvae counts each layer's
    units out of that layer's size; one epoch is "1 epoch"."""
    from types import SimpleNamespace

    from experiments.train import print_summary

    summary = dict(model=model, guide="g", elbo="trace", data="digits", num_train=10,
                   num_test=5, epochs=epochs, seconds_per_epoch=0.1, first_epoch_seconds=0.2,
                   binarize="dynamic", train_elbo=-1.0, test_elbo=-1.0, test_iwae=-1.0,
                   test_iwae_mc_stderr=0.01, test_iwae_point_stderr=0.1, iwae_samples=10)
    if model == "cvae":
        summary.update(test_active_units=2.0, kl_per_dimension=[0.1] * 3, test_kl_to_prior=0.3)
    else:
        summary.update(test_active_units_z1=2.0, kl_per_dimension_z1=[0.1] * 3,
                       test_active_units_z2=1.0, kl_per_dimension_z2=[0.1] * 2)
    print_summary(SimpleNamespace(summary=summary, run_dir="runs/x"))
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, (text, out)
    assert "KL(q(z|x) ‖ p(z))" not in out and ".000 of" not in out


def test_the_printed_summary_counts_units_of_the_site_where_no_kl_per_unit_is_defined(capsys):
    """Under the IAF guide q is no diagonal Gaussian, so there is no KL per unit: the count is
    still out of z's size (``latent_sizes``), ``8 of 8``, not ``8 of 0``."""
    from types import SimpleNamespace

    from experiments.train import print_summary

    summary = dict(model="vae", guide="iaf", elbo="trace", data="digits", num_train=10,
                   num_test=5, epochs=1, seconds_per_epoch=0.1, first_epoch_seconds=0.2,
                   binarize="dynamic", train_elbo=-1.0, test_elbo=-1.0, test_iwae=-1.0,
                   test_iwae_mc_stderr=0.01, test_iwae_point_stderr=0.1, iwae_samples=10,
                   test_active_units=8.0, test_kl_to_prior=0.3, latent_sizes={"z": 8})
    print_summary(SimpleNamespace(summary=summary, run_dir="runs/x"))
    assert " 8 of 8: Cov_x" in capsys.readouterr().out
