"""A finished run loaded back (``experiments.load``): without its data, in parameters of its own,
scoring its test set exactly as the run did, and drawing through ``pyro.infer.Predictive``."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

import experiments
from experiments import load
from experiments.common.errors import UserError
from experiments.config.config import Config
from experiments.data.datasets import DataShape
from experiments.evaluation.likelihood import iwae_log_likelihood, mean_elbo
from experiments.evaluation.metrics import scoring_guide
from experiments.parts.compatibility import check_combination
from experiments.training.end_to_end import run
from experiments.training.trained import TrainedRun, load_trained
from models import MODELS


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small digits VAE, trained for two epochs."""
    out = tmp_path_factory.mktemp("load") / "run"
    return run(Config(epochs=2, num_train=300, num_test=100, hidden_dims=(32,),
                      iwae_samples=50, progress=False, out=str(out)))


@pytest.mark.slow
def test_a_loaded_run_reproduces_its_own_test_elbo_and_iwae(finished):
    config, data, parts = load_trained(finished.run_dir)
    guide = scoring_guide(parts, data.x_test)
    nesting = parts.model.max_plate_nesting
    elbo = mean_elbo(parts.model, guide, data.x_test, max_plate_nesting=nesting)
    iwae, _ = iwae_log_likelihood(parts.model, guide, data.x_test, config.iwae_samples,
                                  max_plate_nesting=nesting)
    assert elbo == pytest.approx(finished.summary["test_elbo"], abs=1e-6)
    assert iwae == pytest.approx(finished.summary["test_iwae"], abs=1e-6)
    assert parts.model is not finished.parts.model


def test_load_records_what_the_data_looked_like_without_reading_it(finished):
    trained = load(finished.run_dir / "checkpoint.pt")      # the file names its folder too
    assert isinstance(trained, TrainedRun) and trained.run_dir == finished.run_dir
    assert trained.data == DataShape("digits", 64, 300, 100, (1, 8, 8), num_classes=10)
    assert trained.epochs == 2
    assert (trained.config.likelihood, trained.config.binarize) == ("bernoulli", "dynamic")


def test_samples_come_from_predictive_and_vary(finished):
    trained = load(finished.run_dir)
    draws = trained.samples(6)
    assert {k: tuple(v.shape) for k, v in draws.items()} == {
        "z": (6, 2), "x": (6, 64), "x_mean": (6, 64)}
    assert set(draws["x"].unique().tolist()) <= {0.0, 1.0}       # Bernoulli draws
    assert (draws["z"][1:] != draws["z"][0]).all()
    assert (draws["x"][1:] != draws["x"][0]).any(1).all()
    assert torch.allclose(draws["x_mean"], trained.model.decode(draws["z"]))
    plain = Predictive(trained.model, num_samples=3)()        # Pyro's own idiom, no data
    assert tuple(plain["x"].shape) == (3, 1, 64) and tuple(plain["z"].shape) == (3, 1, 2)
    batch = Predictive(trained.model, num_samples=1)(None, num_data=5)
    assert tuple(batch["x"].shape) == (1, 5, 64)


def test_reconstructions_draw_z_from_q_and_x_from_the_model(finished):
    trained = load(finished.run_dir)
    x = torch.rand(3, 8, 8).bernoulli()                       # images are flattened
    draws = trained.reconstructions(x, num_samples=400)
    assert tuple(draws["z"].shape) == (400, 3, 2) and tuple(draws["x"].shape) == (400, 3, 64)
    assert tuple(draws["x_mean"].shape) == (400, 3, 64)
    assert not torch.equal(draws["x"][0], x.reshape(3, 64))   # x is drawn, not the input
    # the z draws are q(z|x)'s: their mean is q's mean within 5 standard errors
    q = trained.guide.posterior(x.reshape(3, 64))
    error = (draws["z"].mean(0) - q.mean).abs()
    assert (error < 5 * q.stddev / math.sqrt(400)).all()
    assert torch.allclose(trained.latent_codes(x), q.mean)


def test_interpolation_runs_between_the_two_codes(finished):
    trained = load(finished.run_dir)
    a, b = torch.rand(2, 64).bernoulli()
    path = trained.interpolate(a, b, steps=5)
    assert tuple(path.shape) == (5, 64)
    codes = trained.latent_codes(torch.stack([a, b]))
    ends = trained.model.decode(codes)
    assert torch.allclose(path[0], ends[0]) and torch.allclose(path[-1], ends[1])
    with pytest.raises(UserError, match="trained on examples of 64 values; got examples of 5"):
        trained.latent_codes(torch.rand(2, 5))


def test_loading_leaves_a_live_runs_parameters_and_the_random_stream_alone(finished, tmp_path):
    live = run(Config(epochs=1, num_train=200, num_test=50, hidden_dims=(32,), seed=3,
                      iwae_samples=20, progress=False, out=str(tmp_path / "live")))
    x = torch.rand(20, 64).bernoulli()
    before = {k: v.clone() for k, v in live.parts.model.state_dict().items()}
    elbo_before = mean_elbo(live.parts.model, live.parts.guide, x)
    rng = torch.get_rng_state()
    loaded = [load(finished.run_dir), load(finished.run_dir)]
    assert torch.equal(torch.get_rng_state(), rng)
    after = live.parts.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert mean_elbo(live.parts.model, live.parts.guide, x) == elbo_before
    saved = torch.load(finished.run_dir / "checkpoint.pt", weights_only=True)["model"]
    for trained in loaded:
        assert all(torch.equal(v, saved[k]) for k, v in trained.model.state_dict().items())
    assert mean_elbo(loaded[0].model, loaded[0].guide, x) == mean_elbo(loaded[1].model,
                                                                       loaded[1].guide, x)


def test_load_works_after_the_data_file_is_gone(tmp_path):
    path = tmp_path / "mine.npz"
    images = np.random.default_rng(0).integers(0, 256, size=(120, 4, 4), dtype=np.uint8)
    np.savez(path, x=images)
    config = Config(data=str(path), epochs=1, hidden_dims=(8,), iwae_samples=10,
                    progress=False, out=str(tmp_path / "run"))
    result = run(config)
    path.unlink()
    trained = load(result.run_dir)
    assert trained.data == DataShape("mine.npz", 16, 96, 24, (1, 4, 4))
    assert tuple(trained.samples(2)["x"].shape) == (2, 16)
    with pytest.raises(UserError, match="mine.npz does not exist"):
        load_trained(result.run_dir)                           # the data-reloading variant
    # a checkpoint from before the record needs the data, and says so in one line
    state = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)
    del state["data"]
    torch.save(state, result.run_dir / "checkpoint.pt")
    with pytest.raises(UserError, match="before checkpoints recorded the shape of their data, "
                                        "so its data must be read") as caught:
        load(result.run_dir)
    assert len(str(caught.value).splitlines()) == 1
    np.savez(path, x=images)                                   # back: it loads as before
    assert load(result.run_dir).data == trained.data


def _fitting_guide(model: str) -> str:
    for guide in ("normal", "chain", "relaxed", "categorical", "m2"):
        try:
            check_combination(model, guide, "trace")
            return guide
        except UserError:
            pass
    raise AssertionError(model)


@pytest.mark.parametrize("name", [m for m in MODELS if m != "cvae"])
def test_every_model_draws_x_when_given_none_and_reconstructs_through_uncondition(name):
    parts = experiments.build(name, _fitting_guide(name), "trace", data_dim=16,
                              hidden_dims=(8,), num_data=4)
    draws = Predictive(parts.model, num_samples=3)(None, num_data=5)
    assert tuple(draws["x"].shape) == (3, 5, 16)
    assert not torch.equal(draws["x"][0], draws["x"][1])
    x = torch.rand(4, 16).bernoulli()
    recon = Predictive(poutine.uncondition(parts.model), guide=parts.guide, num_samples=2)(x)
    assert tuple(recon["x"].shape) == (2, 4, 16) and not torch.equal(recon["x"][0], x)
    trained = TrainedRun(Path("."), Config(model=name), DataShape("x", 16, 4, 4), parts, 0)
    assert len(trained.latent_codes(x)) == 4


def test_the_cvae_draws_hidden_pixels_for_given_images_and_says_why_not_from_nothing():
    parts = experiments.build("cvae", "normal", "trace", data_dim=16, hidden_dims=(8,))
    trained = TrainedRun(Path("."), Config(model="cvae"), DataShape("x", 16, 4, 4), parts, 0)
    with pytest.raises(UserError, match="draws x_h for given images x, not x from nothing"):
        trained.samples(2)
    recon = trained.reconstructions(torch.rand(3, 16).bernoulli(), num_samples=2)
    assert tuple(recon["x_hidden"].shape) == (2, 3, 12)


def test_a_flow_guides_codes_are_a_monte_carlo_mean_and_enum_encodes_exactly():
    parts = experiments.build("vae", "flow", "trace", data_dim=16, hidden_dims=(8,))
    trained = TrainedRun(Path("."), Config(guide="flow"), DataShape("x", 16, 4, 4), parts, 0)
    assert tuple(trained.latent_codes(torch.rand(3, 16)).shape) == (3, 2)
    gmm = experiments.build("gmm", "enum", "enum", data_dim=2)
    mixture = TrainedRun(Path("."), Config(model="gmm", guide="enum", elbo="enum"),
                         DataShape("x", 2, 4, 4), gmm, 0)
    x = torch.randn(5, 2)
    assert torch.allclose(mixture.latent_codes(x), gmm.model.exact_posterior(x))
    with pytest.raises(UserError, match="no reconstructions to draw from q"):
        mixture.reconstructions(x)


def test_the_guides_example_of_a_finished_run_runs(finished, capsys):
    page = Path(__file__).resolve().parent.parent / "docs" / "guide" / "finished-run.md"
    section = page.read_text()
    code = section.split("```python\n")[1].split("```")[0]
    assert 'load("runs/my-vae")' in code
    exec(code.replace("runs/my-vae", str(finished.run_dir)), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "vae bernoulli dynamic 2"
    assert printed[2] == "torch.Size([16, 2]) torch.Size([16, 64])"
    assert printed[3] == "torch.Size([3, 5, 2]) torch.Size([3, 5, 64])"


@pytest.mark.slow
def test_a_local_guide_run_loads_with_its_recorded_size_and_scores_as_it_did(tmp_path):
    """The local guide holds parameters per training point: the recorded number of them
    builds it, and its test numbers come from the same seeded refit on the test set."""
    result = run(Config(guide="local", elbo="meanfield", epochs=1, num_train=100, num_test=30,
                        hidden_dims=(16,), iwae_samples=10, progress=False,
                        out=str(tmp_path / "local")))
    trained = load(result.run_dir)
    assert trained.guide.loc.shape == (100, 2)
    config, data, parts = load_trained(result.run_dir)
    elbo = mean_elbo(parts.model, scoring_guide(parts, data.x_test, final=True), data.x_test)
    assert elbo == pytest.approx(result.summary["test_elbo"], abs=1e-6)
    assert tuple(trained.latent_codes(data.x_test[:4]).shape) == (4, 2)
