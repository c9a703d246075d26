"""Compiled estimators (--jit): the uncompiled estimate, the same random numbers, one compile."""
import pyro
import pytest
import torch

from experiments.parts.build import build
from experiments.training.run import run

X = torch.rand(40, 10).bernoulli()


def _one_step(elbo_name, jit, rows, seed=3):
    """loss_and_grads on the first ``rows`` examples of X: (loss, gradients, RNG state after)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    parts = build("vae", "normal", elbo_name, data_dim=10, latent_dim=2, hidden_dims=(16,),
                  jit=jit)
    params = [*parts.model.parameters(), *parts.guide.parameters()]
    results = []
    for n in rows:
        pyro.set_rng_seed(seed)
        loss = parts.elbo.loss_and_grads(parts.model, parts.guide, X[:n], torch.arange(n),
                                         num_data=len(X))
        results.append((loss, [p.grad.clone() for p in params], torch.get_rng_state()))
        for p in params:
            p.grad = None
    return results


@pytest.mark.parametrize("elbo_name", ["trace", "meanfield"])
def test_compiled_estimate_equals_the_uncompiled_one(elbo_name):
    """Same loss and gradients up to rounding, for two batch sizes, drawing exactly the random
    numbers the uncompiled estimator draws (so compiling cannot shift a run's random stream)."""
    plain = _one_step(elbo_name, jit=False, rows=[32, 7])
    compiled = _one_step(elbo_name, jit=True, rows=[32, 7])
    for (loss, grads, rng), (jit_loss, jit_grads, jit_rng) in zip(plain, compiled):
        assert jit_loss == pytest.approx(loss, rel=1e-5)
        assert all(torch.allclose(g, j, rtol=1e-4, atol=1e-4) for g, j in zip(grads, jit_grads))
        assert torch.equal(rng, jit_rng)


def test_meanfield_compiles_once(monkeypatch):
    """Pyro 1.9's JitTraceMeanField_ELBO re-traces at every step; ours traces once."""
    traced = []
    original = torch.jit.trace
    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: traced.append(1) or original(*a, **k))
    _one_step("meanfield", jit=True, rows=[32, 32, 32])
    assert len(traced) == 1


def test_compiled_run_resumes_exactly_and_matches_the_uncompiled_run(quick_config, tmp_path):
    straight = run(quick_config(out=str(tmp_path / "straight"), epochs=4, jit=True))
    first = run(quick_config(out=str(tmp_path / "resumed"), epochs=2, jit=True))
    resumed = run(quick_config(out=str(tmp_path / "resumed"), epochs=4, jit=True),
                  resume=first.run_dir)
    keys = ("train_elbo", "test_elbo")
    assert [[r[k] for k in keys] for r in resumed.metrics] == \
        [[r[k] for k in keys] for r in straight.metrics]
    plain = run(quick_config(out=str(tmp_path / "plain"), epochs=4))
    for a, b in zip(plain.metrics, straight.metrics):
        assert b["train_elbo"] == pytest.approx(a["train_elbo"], rel=1e-4)
