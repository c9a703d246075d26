"""The ELBO's identities and the bounds above it, per data point, on a nonlinear LVM whose
log p(x) and p(z|x) are computed by quadrature: every tolerance is a multiple of the Monte
Carlo standard error of the quantity tested."""
import math

import pytest
import torch

from experiments.common.rng import isolated_rng
from experiments.evaluation.bounds import elbo_terms, importance_weights, iwae_bounds, renyi_bounds
from experiments.evaluation.diagnostics import posterior_kl_per_point
from experiments.evaluation.likelihood import guide_distribution
from experiments.parts.build import build

S = 2000


@pytest.fixture(scope="module")
def lvm():
    """An untrained LVM (d = 1) and normal guide, so that q(z|x) is far from p(z|x), on 40
    points drawn from the model itself."""
    torch.manual_seed(0)
    parts = build("lvm", "normal", "trace", data_dim=2, latent_dim=1, hidden_dims=(16,))
    parts.model.likelihood.scale = torch.tensor(0.3)
    with torch.no_grad():
        z = torch.randn(40, 1)
        x = parts.model.likelihood(parts.model.decoder(z)).sample()
    log_w = importance_weights(parts.model, parts.guide, x, S)
    return parts.model, parts.guide, x, log_w


def test_the_gap_of_the_elbo_is_the_kl_to_the_exact_posterior(lvm):
    model, guide, x, log_w = lvm
    with torch.no_grad():
        gap = model.exact_log_likelihood(x) - log_w.mean(0)        # Monte Carlo, S samples
    kl = posterior_kl_per_point(model, guide, x, "z")             # quadrature, no sampling
    stderr = log_w.std(0) / math.sqrt(S)
    assert kl.mean() > 0.2                                        # far apart: a real test
    assert ((gap - kl).abs() <= 4 * stderr + 1e-3).all()


def test_the_elbo_is_reconstruction_minus_kl_to_the_prior(lvm):
    model, guide, x, log_w = lvm
    terms = elbo_terms(model, guide, x, log_w)
    with torch.no_grad(), isolated_rng(1, x.device):            # independent draws of q(z|x)
        z = guide_distribution(guide, x, "z").sample((S,))
        log_lik = model.likelihood(model.decoder(z)).log_prob(x)                 # (S, N)
    stderr = log_lik.std(0) / math.sqrt(S) + log_w.std(0) / math.sqrt(S)
    assert ((terms["expected_log_likelihood"] - log_lik.mean(0)).abs() <= 4 * stderr).all()
    assert (terms["kl_prior"] > 0).all()


def test_iwae_bounds_rise_with_k_towards_the_exact_log_likelihood(lvm):
    model, _, x, log_w = lvm
    bounds = {k: v.mean().item() for k, v in iwae_bounds(log_w, [1, 10, 100]).items()}
    with torch.no_grad():
        exact = model.exact_log_likelihood(x).mean().item()
    assert bounds[1] == pytest.approx(log_w.mean().item(), abs=1e-6)
    assert bounds[1] < bounds[10] < bounds[100]
    spread = (log_w.logsumexp(0) - math.log(S)).std().item()      # scale of one point's L_S
    assert bounds[100] <= exact + 3 * spread / math.sqrt(len(x))


def test_renyi_bounds_fall_with_alpha_from_the_iwae_to_the_elbo_on_the_same_samples(lvm):
    _, _, _, log_w = lvm
    alphas = [0.0, 0.25, 0.5, 0.75, 0.99, 1.0]
    bounds = renyi_bounds(log_w, alphas)
    for low, high in zip(alphas, alphas[1:]):      # the power-mean inequality, sample by sample
        assert (bounds[low] >= bounds[high] - 1e-5).all()
    assert torch.allclose(bounds[0.0], iwae_bounds(log_w, [S])[S], atol=1e-5)
    assert torch.allclose(bounds[1.0], log_w.mean(0))
    assert torch.allclose(bounds[0.99], bounds[1.0], atol=0.05)    # continuous at α = 1
