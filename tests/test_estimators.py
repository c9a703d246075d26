"""Estimators beyond Pyro's: score-function against the reparameterization trick, and the list."""
import json

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from experiments import list as listing
from experiments.config.config import Config
from experiments.estimators import ELBOS
from experiments.parts.build import build
from experiments.parts.compatibility import matrix


def guide_gradients(parts, x, draws: int) -> torch.Tensor:
    """(draws, P) gradients of the loss with respect to the guide's parameters."""
    params = list(parts.guide.parameters())
    rows = []
    for _ in range(draws):
        loss = parts.elbo.differentiable_loss(parts.model, parts.guide, x)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def test_score_function_has_trace_loss_values_and_unbiased_but_noisier_gradients():
    x = torch.rand(8, 6).bernoulli()
    reparam = build("vae", "normal", "trace", data_dim=6, latent_dim=2, hidden_dims=(8,))
    score = build("vae", "normal", "score-function", data_dim=6, latent_dim=2, hidden_dims=(8,))
    score.model.load_state_dict(reparam.model.state_dict())
    score.guide.load_state_dict(reparam.guide.state_dict())
    pyro.set_rng_seed(0)
    loss_reparam = Trace_ELBO().loss(reparam.model, reparam.guide, x)
    pyro.set_rng_seed(0)
    loss_score = score.elbo.loss(score.model, score.guide, x)
    assert loss_score == pytest.approx(loss_reparam, rel=1e-6)

    g_reparam = guide_gradients(reparam, x, 400)
    g_score = guide_gradients(score, x, 400)
    # unbiased: the two means agree within a few standard errors of their difference
    stderr = (g_reparam.var(0) / 400 + g_score.var(0) / 400).sqrt()
    z = (g_reparam.mean(0) - g_score.mean(0)).abs() / (stderr + 1e-8)
    assert (z < 4.5).float().mean() > 0.97
    # and the reparameterization trick has much lower variance (the seed notes' claim)
    assert g_score.var(0).sum() > 10 * g_reparam.var(0).sum()


def test_list_json_is_the_matrix_that_build_enforces(capsys):
    assert listing.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    options = {k: v for k, v in Config().to_dict().items() if k not in ("model", "guide", "elbo")}
    assert rows == matrix(**options)
    assert {"model", "guide", "elbo", "ok", "reason"} == set(rows[0])
    assert any(r["ok"] for r in rows) and any(not r["ok"] for r in rows)


def test_list_prints_registries_and_a_matrix_per_model(capsys):
    assert listing.main([]) == 0
    out = capsys.readouterr().out
    for word in ("models:", "guides:", "ELBO estimators:", "data sets:", "vae:", "✓", "·",
                 "why the other combinations"):
        assert word in out


def test_the_parts_page_shows_the_current_matrix(capsys):
    from pathlib import Path

    assert listing.main(["--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    page = (Path(__file__).parent.parent / "docs" / "guide" / "parts.md").read_text()
    assert table in page, ("docs/guide/parts.md's matrix is stale: paste "
                           "`elbolab list --markdown`")


@pytest.mark.parametrize("ours, pyros, model, guide", [
    ("trace", Trace_ELBO, "vae", "normal"),
    ("trace", Trace_ELBO, "discrete-vae", "categorical"),       # score-function terms
    ("meanfield", TraceMeanField_ELBO, "vae", "normal"),
])
def test_the_one_tensor_losses_are_pyros_loss_and_gradient(ours, pyros, model, guide):
    """``TensorTrace_ELBO`` and ``TensorMeanField_ELBO`` (one tensor, no ``.item()``) against
    Pyro's own estimators at the same draws: the loss and every parameter's gradient."""
    x, index = torch.rand(10, 12).bernoulli(), torch.arange(10)

    def loss_and_grads(estimator):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        parts = build(model, guide, "trace", data_dim=12, num_data=30, hidden_dims=(8,),
                      latent_dim=2)
        pyro.set_rng_seed(1)
        loss = estimator.loss_and_grads(parts.model, parts.guide, x, index, num_data=30)
        params = [*parts.model.parameters(), *parts.guide.parameters()]
        return loss, [p.grad for p in params]

    loss, grads = loss_and_grads(ELBOS[ours](num_particles=3))
    pyro_loss, pyro_grads = loss_and_grads(pyros(num_particles=3))
    assert loss == pytest.approx(pyro_loss, rel=1e-6)
    for g, p in zip(grads, pyro_grads):
        torch.testing.assert_close(g, p)
