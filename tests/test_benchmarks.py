"""The benchmark's yardstick and its coverage (no timing is asserted anywhere): the plain-PyTorch
reference computes ELBO Lab's numbers, and every registered estimator and every model with an
exact log-likelihood gets its row, a failing one a row saying why."""
import pytest
import torch

from benchmarks import estimators, evaluation, numpyro_peer, reference, shared_cores, training
from benchmarks.timing import alternate
from experiments.common import threads
from experiments.config.config import Config
from experiments.data.datasets import Dataset
from experiments.estimators import ELBOS, Trace
from experiments.evaluation.likelihood import log_importance_weights
from experiments.parts.build import build
from models import MODELS
from models.vae import VAE

X = torch.rand(6, 12).bernoulli()


@pytest.fixture
def twins():
    """ELBO Lab's vae/normal and the reference with the same weights."""
    parts = build("vae", "normal", "trace", data_dim=12, latent_dim=3, hidden_dims=(8,))
    vae = reference.ReferenceVAE(12, 3, (8,))
    vae.encoder.load_state_dict(parts.guide.encoder.state_dict())
    vae.decoder.load_state_dict(parts.model.decoder.state_dict())
    return parts, vae


def test_reference_log_weights_equal_elbo_labs(twins):
    """Same weights, same random numbers: the same log w = log p(x|z) + log p(z) − log q(z|x)."""
    parts, vae = twins
    torch.manual_seed(1)
    lab = log_importance_weights(parts.model, parts.guide, X, num_samples=4)
    torch.manual_seed(1)
    assert torch.allclose(vae.log_weights(X, 4), lab, atol=1e-4)


@pytest.mark.parametrize("elbo, objective", [("trace", reference.elbo_loss),
                                             ("iwae", reference.iwae_loss)])
def test_reference_objectives_equal_elbo_labs_estimators(twins, elbo, objective):
    """The K-sample losses of ``trace`` and ``iwae`` with K = 3 vectorized particles, on the
    whole data set and on a minibatch of 4 of its 6 points (scale N / B = 1.5, which Pyro's
    RenyiELBO would put inside the log-mean-exp)."""
    parts, vae = twins
    estimator = build("vae", "normal", elbo, data_dim=12, latent_dim=3, hidden_dims=(8,),
                      num_particles=3, vectorize_particles=True).elbo
    for index in (torch.arange(len(X)), torch.tensor([4, 0, 5, 2])):
        torch.manual_seed(2)
        lab = estimator.loss(parts.model, parts.guide, X[index], index, num_data=len(X))
        torch.manual_seed(2)
        reference_loss = objective(3)(vae, X[index], len(X)).item()
        assert reference_loss == pytest.approx(lab, rel=1e-5)


@pytest.fixture
def tiny():
    config = Config(latent_dim=2, hidden_dims=(8,), progress=False)
    data = Dataset("tiny", torch.rand(256, 12), torch.rand(32, 12).bernoulli())
    return config, data


@pytest.mark.slow
def test_every_estimator_gets_a_row_and_a_failing_one_says_why(tiny, monkeypatch):
    class Broken(Trace):
        def __init__(self, num_particles=1, vectorize_particles=False, max_plate_nesting=1):
            raise RuntimeError("cannot estimate anything; really")

    monkeypatch.setitem(ELBOS, "broken", Broken)
    section = estimators.benchmark(*tiny, rounds=1)
    rows = {line.split(" | ")[0].strip("| "): line for line in section.body.splitlines()}
    assert set(ELBOS) <= set(rows)
    assert "fails: RuntimeError: cannot estimate anything |" in rows["broken"]
    assert "fails" not in rows["trace"]


class ExactVAE(VAE):
    has_exact_log_likelihood = True

    def exact_log_likelihood(self, x):
        return x.new_zeros(len(x))


class BrokenExactVAE(VAE):
    has_exact_log_likelihood = True

    def exact_log_likelihood(self, x):
        raise ValueError("no quadrature here")


def test_every_model_with_an_exact_log_likelihood_gets_a_row(tiny, monkeypatch):
    config, _ = tiny
    monkeypatch.setitem(MODELS, "exact", ExactVAE)
    monkeypatch.setitem(MODELS, "broken", BrokenExactVAE)
    body = evaluation.exact(config, num_points=10, loop_points=2, rounds=1).body
    assert "| exact | " in body
    assert "| broken | fails: ValueError: no quadrature here |" in body


def test_the_speed_page_quotes_the_current_results():
    """docs/design/speed.md shows RESULTS.md's machine lines and target table as written."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    results = (root / "benchmarks" / "RESULTS.md").read_text()
    page = (root / "docs" / "design" / "speed.md").read_text()
    machine = results[results.index("- processor:"):]
    targets = results[results.index("| target | measured | goal |"):]
    for quoted in (machine[:machine.index("\n\n")], targets[:targets.index("\n\n")]):
        assert quoted in page, "docs/design/speed.md quotes stale results: paste RESULTS.md's"


@pytest.mark.slow
def test_without_numpyro_its_rows_are_left_out_with_one_line(tiny, monkeypatch):
    """The NumPyro peer is optional (.[bench]): without it the training section says so in
    one line and times the rest; its targets are left out rather than failed."""
    monkeypatch.setattr(numpyro_peer, "numpyro", None)
    section = training.benchmark(tiny[0].replace(batch_size=64), tiny[1], rounds=1,
                                 batch_sizes=(64,), whole_run_rounds=1)
    assert numpyro_peer.MISSING in section.body
    assert "NumPyro, jax.jit" not in section.body
    assert not [t for t in section.targets if "NumPyro" in t.name]
    names = [t.name for t in section.targets]
    assert any("recorded step, the default" in name for name in names)
    assert "1. reference against itself, batch 64" in names
    whole = "1. whole 10-epoch run, first epoch included, batch 64"
    assert f"{whole}, recordings from an earlier run (warm)" in names
    assert f"{whole}, empty recording cache (cold: a first run)" in names
    assert "1. first epoch's recordings loaded from the cache, batch 64" in names
    assert "a fresh model trained 10 epochs (40 steps" in section.body


def test_turns_are_taken_in_an_order_drawn_anew_each_round():
    """Every candidate once per round; over the rounds each follows every other one (a fixed
    or rotated order lets one always follow the same other, whose caches it then meets)."""
    calls = []
    timings = alternate({name: (lambda name=name: calls.append(name)) for name in "abcd"},
                        rounds=40, warmup=2)
    rounds = [calls[i:i + 4] for i in range(0, len(calls), 4)]
    assert len(rounds) == 42 and all(sorted(r) == list("abcd") for r in rounds)
    assert all(len(seconds) == 40 for seconds in timings.seconds.values())
    followed = {(r[i], r[i + 1]) for r in rounds for i in range(3)}
    assert followed == {(a, b) for a in "abcd" for b in "abcd" if a != b}
    assert len({tuple(r) for r in rounds}) > 4


@pytest.mark.slow
def test_the_shared_core_section_times_every_thread_count_and_names_autos_choice(tiny):
    config = tiny[0].replace(batch_size=64)
    section = shared_cores.benchmark(config, tiny[1], rounds=1)
    counts = range(1, threads.TORCH_DEFAULT + 1)
    assert all(f"| {c} thread{'s' if c > 1 else ''} |" in section.body for c in counts)
    assert section.body.count("← auto") == 1
    assert section.targets[0].name.startswith("7. default run (auto:")
