"""Every script in examples/ runs at small settings and does what its text says; a script
without an entry here fails the coverage test (as Pyro's tests/test_examples.py does)."""
import importlib.util
import math
from pathlib import Path

import pytest

from experiments.estimators import ELBOS
from guides import GUIDES
from models import MODELS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: each example's small settings, the keyword arguments of its main()
SMALL = {
    "train_and_compare": dict(epochs=2, num_train=300, iwae_samples=20),
    "load_and_sample": dict(epochs=1, num_train=200, iwae_samples=10),
    "register_your_own_parts": dict(epochs=2, num_train=300, iwae_samples=50),
    "recorded_svi_loop": dict(epochs=2),
    "evaluate_a_run": dict(epochs=2, num_train=300, ks=(1, 100)),
    "pyro_renyi_subsampling": dict(),
}


@pytest.fixture
def example(tmp_path, monkeypatch):
    """Runs an example's main() at its small settings in a folder of the test's own, and
    leaves the registries as they were (an example may register parts of its own)."""
    monkeypatch.chdir(tmp_path)
    saved = [(registry, dict(registry)) for registry in (MODELS, GUIDES, ELBOS)]

    def run(name: str):
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main(**SMALL[name])

    yield run
    for registry, entries in saved:
        registry.clear()
        registry.update(entries)


def test_every_example_has_a_smoke_entry():
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(SMALL)


@pytest.mark.slow
def test_train_and_compare_pairs_the_two_runs_point_by_point(example, capsys):
    result = example("train_and_compare")
    assert math.isfinite(result["paired_diff"]) and result["stderr"] > 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if "test ELBO" in line]
    iwae = {row[0]: float(row[-1]) for row in rows}           # "trace … test IWAE -28.458"
    # the mean of the per-point differences is the difference of the runs' means
    assert result["paired_diff"] == pytest.approx(iwae["iwae"] - iwae["trace"], abs=2e-3)


def test_load_and_sample_draws_with_predictive(example):
    draws = example("load_and_sample")
    assert draws["ancestral"]["x"].shape == (16, 1, 64)
    assert draws["posterior"]["x"].shape == (3, 4, 64)
    assert set(draws["ancestral"]["x"].unique().tolist()) <= {0.0, 1.0}      # Bernoulli x


def test_your_own_parts_register_refuse_meanfield_and_train(example, capsys):
    summary = example("register_your_own_parts")
    out = capsys.readouterr().out
    assert "refused: factor-analysis + laplace + meanfield cannot work" in out
    assert {"factor-analysis", "laplace", "pyro-trace"} <= set(MODELS) | set(GUIDES) | set(ELBOS)
    assert summary["test_elbo"] <= summary["test_iwae"] + 3 * summary["test_iwae_mc_stderr"]


def test_recorded_svi_loop_learns_and_replays(example, capsys):
    history = example("recorded_svi_loop")
    assert history[-1] > history[0]
    assert "Pyro's step:" not in capsys.readouterr().out        # the VAE's step is recordable


@pytest.mark.slow
def test_evaluate_a_run_gives_bounds_that_rise_with_k(example):
    bounds = example("evaluate_a_run")
    assert bounds[100] > bounds[1]


def test_pyro_renyi_example_shows_the_scale_inside(example):
    results = example("pyro_renyi_subsampling")
    pyro_loss = results["pyro RenyiELBO(alpha=0).loss"]
    assert pyro_loss == pytest.approx(results["N/B inside the log-mean-exp"], rel=1e-4)
    assert pyro_loss != pytest.approx(results["IWAE bound, N/B outside"], rel=1e-2)
