"""Test-set evaluation: bounds in the right order, and no side effects on training."""
import math

import pyro
import pytest
import torch

from experiments.evaluation.likelihood import (
    iwae_estimate,
    iwae_log_likelihood,
    log_importance_weights,
    mean_elbo,
)
from experiments.parts.build import build


@pytest.fixture
def parts():
    return build("vae", "normal", "trace", data_dim=10, latent_dim=2, hidden_dims=(16,))


@pytest.fixture
def x():
    return torch.rand(40, 10).bernoulli()


def test_log_importance_weights_are_per_data_point(parts, x):
    log_w = log_importance_weights(parts.model, parts.guide, x, num_samples=7)
    assert log_w.shape == (7, 40)
    assert torch.isfinite(log_w).all()
    # a single sample's weights average to the one-sample ELBO (same draws, same seed)
    pyro.set_rng_seed(5)
    one = log_importance_weights(parts.model, parts.guide, x, num_samples=1).mean().item()
    elbo = mean_elbo(parts.model, parts.guide, x, seed=5)
    assert one == pytest.approx(elbo, rel=1e-5)


def test_iwae_tightens_with_more_samples(parts, x):
    """E[log p̂_K(x)] increases with K (Burda et al. 2016); K = 1 is the ELBO."""
    elbo = mean_elbo(parts.model, parts.guide, x)
    iwae_1, se_1 = iwae_log_likelihood(parts.model, parts.guide, x, 1)
    iwae_500, se_500 = iwae_log_likelihood(parts.model, parts.guide, x, 500)
    assert abs(iwae_1 - elbo) < 4 * se_1
    assert iwae_500 > elbo
    assert iwae_500 > iwae_1


def test_chunking_bounds_memory_not_the_answer(parts, x):
    """Chunks of samples and points combine by log-sum-exp into the same estimate: with
    K = 400 the two estimates are independent Monte Carlo draws of one quantity, so they
    differ by less than 4 standard errors of their difference. The Monte Carlo error of
    log p̂(x_i) = log mean_k w_ik is, by the delta method, sd_k(w_ik) / (√K mean_k(w_ik))."""
    whole, _ = iwae_log_likelihood(parts.model, parts.guide, x, 400, chunk_elements=10**6)
    chunked, _ = iwae_log_likelihood(parts.model, parts.guide, x, 400, chunk_elements=150)
    w = log_importance_weights(parts.model, parts.guide, x, num_samples=400)
    w = (w - w.max(0).values).exp()                                    # (K, N), rescaled
    point_se = w.std(0) / (math.sqrt(400) * w.mean(0))                 # MC error of each point
    mc_stderr = point_se.pow(2).sum().sqrt().item() / len(x)           # of the mean over points
    assert abs(chunked - whole) < 4 * math.sqrt(2) * mc_stderr
    assert abs(chunked - whole) > 0              # different draws: not the same computation


def test_evaluation_has_no_side_effects(parts, x):
    """Evaluating changes no parameter, no optimizer state, and not the training RNG stream."""
    optim = pyro.optim.Adam({"lr": 1e-2})
    svi = pyro.infer.SVI(parts.model, parts.guide, optim, parts.elbo)
    svi.step(x)
    params = {k: v.detach().clone() for k, v in
              {**parts.model.state_dict(), **parts.guide.state_dict()}.items()}
    optim_state = optim.get_state()
    rng = torch.get_rng_state()
    mean_elbo(parts.model, parts.guide, x)
    iwae_log_likelihood(parts.model, parts.guide, x, 50)
    after = {**parts.model.state_dict(), **parts.guide.state_dict()}
    assert all(torch.equal(params[k], after[k]) for k in params)
    assert torch.equal(torch.get_rng_state(), rng)
    for name, state in optim.get_state().items():
        for key, value in state["state"][0].items():
            saved = optim_state[name]["state"][0][key]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(saved))


def test_the_monte_carlo_error_of_iwae_matches_the_spread_over_seeds(parts, x):
    """The delta method's Monte Carlo standard error against S = 30 independent estimates
    (seeds) of the same quantity: their sample standard deviation has a relative standard error
    of 1 / √(2(S − 1)), so the ratio lies within 3 of those of 1 (the delta method is accurate
    where Var_k(w) / (K mean(w)²) ≪ 1, as on a model trained until q covers p(z|x))."""
    svi = pyro.infer.SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 0.02}), parts.elbo)
    for _ in range(300):
        svi.step(x)
    seeds = 30
    estimates = [iwae_estimate(parts.model, parts.guide, x, 100, seed=s) for s in range(seeds)]
    assert estimates[0].per_point_mc_var.median() < 0.01      # first order: typical points
    spread = torch.tensor([e.value for e in estimates]).std().item()
    mc_stderr = sum(e.mc_stderr for e in estimates) / seeds
    assert abs(spread / mc_stderr - 1) < 3 / math.sqrt(2 * (seeds - 1))
    # the spread over test points is another quantity, many times larger here
    assert estimates[0].point_stderr > 5 * mc_stderr
    # the same draws, without chunks or logs: Var_k(w) / (K mean(w)²) per point, in plain torch
    one = iwae_estimate(parts.model, parts.guide, x, 100, seed=7, chunk_elements=10**6)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        w = log_importance_weights(parts.model, parts.guide, x, num_samples=100).double()
    w = (w - w.max(0).values).exp()                                    # (K, N), rescaled
    plain = w.var(0) / (100 * w.mean(0) ** 2)
    assert torch.allclose(one.per_point_mc_var.double(), plain, rtol=1e-4)


def test_the_enum_guide_has_no_monte_carlo_error_and_one_sample_reports_none():
    parts = build("gmm", "enum", "enum", data_dim=2, components=3, hidden_dims=(8,))
    x = torch.randn(50, 2) * 2
    estimate = iwae_estimate(parts.model, parts.guide, x, 100)
    exact = parts.model.exact_log_likelihood(x).detach()
    assert torch.allclose(estimate.per_point, exact, atol=1e-5)
    assert estimate.mc_stderr < 1e-6 and estimate.point_sd > 0.1
    vae = build("vae", "normal", "trace", data_dim=10, latent_dim=2, hidden_dims=(16,))
    assert math.isnan(iwae_estimate(vae.model, vae.guide, x.new_ones(5, 10), 1).mc_stderr)
