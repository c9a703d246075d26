"""``--tensorboard``: event files in the run folder with every number of the epoch's row, the
ELBO's two terms, the gradient norm and images, read back with TensorBoard's own reader."""
import sys

import pytest
import torch

from experiments import train
from experiments.config.config import Config
from experiments.training.end_to_end import run

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def board_of(run_dir):
    events = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events


def steps(events, tag, kind="Scalars"):
    return [e.step for e in getattr(events, kind)(tag)]


def test_a_vae_run_writes_every_epochs_numbers_terms_gradient_norm_and_images(quick_config):
    result = run(quick_config(tensorboard=True))
    events = board_of(result.run_dir)
    scalars = {"train/elbo", "test/elbo", "test/reconstruction", "test/kl", "train/grad_norm",
               "train/seconds", "test/seconds", "test/active_units", "test/kl_to_prior",
               "test/mutual_information", "test/marginal_kl"}
    assert set(events.Tags()["scalars"]) == scalars
    assert set(events.Tags()["images"]) == {"samples", "reconstructions"}
    for tag in scalars:
        assert steps(events, tag) == [1, 2]
    for tag in ("samples", "reconstructions"):
        assert steps(events, tag, "Images") == [1, 2]
    for row in result.metrics:
        value = {tag: events.Scalars(tag)[row["epoch"] - 1].value for tag in scalars}
        assert value["test/elbo"] == pytest.approx(row["test_elbo"], abs=1e-4)
        assert value["train/elbo"] == pytest.approx(row["train_elbo"], abs=1e-4)
        # the two terms are the test ELBO split in two (same draws), the KL is positive
        assert value["test/reconstruction"] - value["test/kl"] == pytest.approx(
            row["test_elbo"], abs=1e-3)
        assert value["test/kl"] > 0 and value["train/grad_norm"] > 0


@pytest.mark.slow
def test_a_model_with_an_exact_likelihood_adds_its_gaps_and_draws_no_images(tmp_path):
    config = Config(model="ppca", data="gmm-2d", num_train=200, num_test=50, epochs=2,
                    iwae_samples=20, progress=False, tensorboard=True, out=str(tmp_path / "r"))
    result = run(config)
    events = board_of(result.run_dir)
    tags = set(events.Tags()["scalars"])
    assert {"test/iwae", "test/exact_log_likelihood", "test/gap", "test/kl"} <= tags
    assert events.Tags()["images"] == []
    exact = [e.value for e in events.Scalars("test/exact_log_likelihood")]
    assert exact == pytest.approx([r["test_exact_log_likelihood"] for r in result.metrics],
                                  abs=1e-4)


@pytest.mark.slow
def test_the_board_changes_nothing_a_run_computes_and_a_resume_continues_it(quick_config,
                                                                            tmp_path):
    plain = run(quick_config(out=str(tmp_path / "plain")))
    watched = run(quick_config(out=str(tmp_path / "watched"), tensorboard=True))
    numbers = lambda rows: [(r["train_elbo"], r["test_elbo"]) for r in rows]
    assert numbers(watched.metrics) == numbers(plain.metrics)
    assert train.main(["--resume", str(watched.run_dir), "--epochs", "3", "--tensorboard",
                       "--no-progress"]) == 0
    events = board_of(watched.run_dir)
    assert steps(events, "test/elbo") == [1, 2, 3]
    saved = torch.load(watched.run_dir / "checkpoint.pt", weights_only=True)["metrics"]
    assert [e.value for e in events.Scalars("test/elbo")] == pytest.approx(
        [r["test_elbo"] for r in saved], abs=1e-4)


def test_a_missing_tensorboard_is_refused_in_one_line_before_any_work(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)     # import tensorboard fails
    out = tmp_path / "run"
    assert train.main(["--tensorboard", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --tensorboard needs the tensorboard package, which is not "
                   "installed: pip install -e .[tensorboard] (in the project's folder)"]
    assert not out.exists()
