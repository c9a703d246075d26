"""The Gaussian mixture and its guides: exact log-likelihood and responsibilities against scipy,
bounds below log p(x), enumeration that makes the bound exact, and recovery of a true mixture."""
import math

import numpy as np
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI
from scipy.special import logsumexp, softmax
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from experiments.config.config import INIT_CHOICES
from experiments.data.synthetic import TRUTHS, draw
from experiments.evaluation.diagnostics import mixture_recovery, posterior_kl
from experiments.evaluation.likelihood import iwae_log_likelihood, log_importance_weights, mean_elbo
from experiments.parts.build import build
from experiments.training.initialize import PARTITIONS, initialize

K, D = 3, 2


def make_mixture(guide="enum", elbo="enum", **options):
    parts = build("gmm", guide, elbo, data_dim=D, components=K, hidden_dims=(16,), **options)
    parts.model.weights = torch.tensor([0.2, 0.5, 0.3])
    parts.model.locs = torch.tensor([[-2.0, 0.0], [0.5, 1.0], [2.0, -1.0]])
    parts.model.scales = torch.tensor([[0.5, 1.0], [0.8, 0.6], [1.2, 0.4]])
    return parts


@pytest.fixture
def x():
    return torch.randn(200, D) * 2.0


def scipy_log_joint(model, x: torch.Tensor) -> np.ndarray:
    """log λ_n + Σ_d log N(x_d | μ_nd, σ_nd²) in float64, shape (N, K)."""
    w, mu, sigma = (t.detach().double().numpy() for t in (model.weights, model.locs, model.scales))
    x = x.double().numpy()[:, None, :]
    return np.log(w) + norm.logpdf(x, mu, sigma).sum(-1)


def test_exact_log_likelihood_and_responsibilities_match_scipy(x):
    model = make_mixture().model
    reference = scipy_log_joint(model, x)
    assert np.allclose(model.exact_log_likelihood(x).detach().numpy(),
                       logsumexp(reference, axis=-1), atol=1e-5)
    assert np.allclose(model.exact_posterior(x).detach().numpy(), softmax(reference, axis=-1),
                       atol=1e-6)


def test_parameters_are_constrained_and_the_latent_site_is_declared():
    model = make_mixture().model
    site = model.latent_sites["z"]
    assert site.discrete and site.num_categories == K
    assert model.weights.sum().item() == pytest.approx(1.0) and (model.scales > 0).all()
    names = dict(model.named_parameters())
    assert {"weights_unconstrained", "locs_unconstrained", "scales_unconstrained"} <= set(names)


def test_z_is_enumerated_in_parallel_the_pyro_way(x):
    parts = make_mixture()
    enumerated = poutine.enum(parts.model, first_available_dim=-2)
    trace = poutine.trace(enumerated).get_trace(x)
    assert trace.nodes["z"]["infer"]["enumerate"] == "parallel"
    assert trace.nodes["z"]["value"].shape == (K, 1)            # every n, left of the data plate
    assert trace.nodes["x"]["fn"].batch_shape == (K, len(x))


def test_with_enum_the_bound_is_the_exact_log_likelihood(x):
    """TraceEnum_ELBO with a guide that samples nothing sums z out: ELBO(x) = log p(x)."""
    parts = make_mixture()
    exact = parts.model.exact_log_likelihood(x).mean().item()
    bound = -parts.elbo.loss(parts.model, parts.guide, x) / len(x)
    assert abs(bound - exact) < 1e-4
    assert abs(mean_elbo(parts.model, parts.guide, x) - exact) < 1e-4
    # in chunks of 7 of the 200 points: each chunk's loss scaled back to its share
    assert abs(mean_elbo(parts.model, parts.guide, x, chunk=7) - exact) < 1e-4
    iwae, _ = iwae_log_likelihood(parts.model, parts.guide, x, num_samples=10)
    assert abs(iwae - exact) < 1e-4
    iwae, _ = iwae_log_likelihood(parts.model, parts.guide, x, num_samples=10, chunk_elements=30)
    assert abs(iwae - exact) < 1e-4
    assert posterior_kl(parts.model, parts.guide, x, "z") == 0.0


def test_the_enumerated_minibatch_objective_is_scaled_to_the_full_data_set(x):
    parts = make_mixture()
    index = torch.arange(20)
    full = parts.elbo.loss(parts.model, parts.guide, x[:20])
    scaled = parts.elbo.loss(parts.model, parts.guide, x[:20], index, 1000)
    assert scaled == pytest.approx(1000 / 20 * full, rel=1e-5)


@pytest.mark.parametrize("elbo", ["trace", "tracegraph"])
def test_categorical_guide_bound_is_below_exact_by_the_kl(x, elbo):
    """E_q[log p(x, z) − log q(z|x)] = log p(x) − KL(q(z|x) ‖ p(z|x)): the Monte Carlo mean of
    the log weights matches exact − KL within 4 standard errors, and so lies below exact."""
    parts = make_mixture("categorical", elbo)
    log_w = log_importance_weights(parts.model, parts.guide, x, num_samples=400).detach()
    estimate = log_w.mean().item()
    stderr = log_w.std().item() / math.sqrt(log_w.numel())
    exact = parts.model.exact_log_likelihood(x).mean().item()
    kl = posterior_kl(parts.model, parts.guide, x, "z")
    assert kl > 0.0
    assert abs(estimate - (exact - kl)) < 4 * stderr
    assert estimate < exact + 4 * stderr


@pytest.mark.parametrize("guide, elbo", [("enum", "enum"), ("categorical", "trace"),
                                         ("categorical", "tracegraph")])
def test_training_steps_move_every_part(x, guide, elbo):
    """Steps under validation (Pyro's warnings are errors) update the model; the categorical
    guide's net always, its baseline only under tracegraph."""
    parts = make_mixture(guide, elbo)
    before = {k: v.clone() for k, v in {**parts.model.state_dict(),
                                         **parts.guide.state_dict()}.items()}
    svi = SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 1e-2}), parts.elbo)
    for _ in range(3):
        svi.step(x[:50], torch.arange(50), len(x))
    after = {**parts.model.state_dict(), **parts.guide.state_dict()}
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert "locs_unconstrained" in moved
    if guide == "categorical":
        assert "encoder.0.weight" in moved
        assert ("baseline.0.weight" in moved) == (elbo == "tracegraph")


def test_recovery_matches_components_whatever_their_order():
    truth = TRUTHS["gmm-2d"]
    true = truth.component_distribution.base_dist
    model = build("gmm", "enum", "enum", data_dim=2, components=4).model
    order = torch.tensor([2, 0, 3, 1])
    model.weights = truth.mixture_distribution.probs[order]
    model.locs = true.loc[order] + torch.tensor([0.1, 0.0])
    model.scales = true.scale[order] * 1.5
    errors = mixture_recovery(model, truth)
    assert errors["recovery_weights_error"] == pytest.approx(0.0, abs=1e-6)
    assert errors["recovery_means_error"] == pytest.approx(0.1, abs=1e-5)
    assert errors["recovery_scales_error"] == pytest.approx(0.5 * true.scale.max().item(),
                                                            rel=1e-5)


@pytest.mark.parametrize("method", INIT_CHOICES)
def test_initialization_starts_each_component_on_a_cluster(method):
    assert set(PARTITIONS) == set(INIT_CHOICES)
    x, _ = draw("gmm-1d", num_train=2000)
    model = build("gmm", "enum", "enum", data_dim=1, components=3).model
    initialize(model, x, method, seed=0)
    assert model.weights.sum().item() == pytest.approx(1.0)
    assert len(set(model.locs.detach().flatten().tolist())) == 3
    if method == "kmeans":        # k-means finds the three well separated clusters
        true = TRUTHS["gmm-1d"].component_distribution.base_dist.loc.flatten()
        assert torch.allclose(model.locs.detach().flatten().sort().values, true, atol=0.4)


def mle_standard_errors(weights, locs, scales, n: int) -> np.ndarray:
    """Asymptotic standard errors of the maximum-likelihood (λ, μ, σ) of a 1-D mixture from n
    points: sqrt(diag I⁻¹ / n), I = ∫ s sᵀ p(x) dx the Fisher information of one point (by
    quadrature on a fine grid), s the score in (λ_1 … λ_{K−1}, μ, σ), λ_K = 1 − Σ λ_n:

        ∂/∂λ_n log p = (N_n − N_K) / p,  ∂/∂μ_n log p = r_n (x − μ_n) / σ_n²,
        ∂/∂σ_n log p = r_n ((x − μ_n)² / σ_n³ − 1 / σ_n),
        N_n = N(x | μ_n, σ_n²),  r_n = λ_n N_n / p.

    Returns the errors of λ (K), μ (K) and σ (K) as one array (3K,)."""
    x = np.linspace(locs.min() - 10 * scales.max(), locs.max() + 10 * scales.max(), 40001)
    dx = x[1] - x[0]
    dens = norm.pdf(x[:, None], locs, scales)                                   # (G, K)
    p = dens @ weights
    r = weights * dens / p[:, None]
    score = np.concatenate([(dens[:, :-1] - dens[:, -1:]) / p[:, None],
                            r * (x[:, None] - locs) / scales ** 2,
                            r * ((x[:, None] - locs) ** 2 / scales ** 3 - 1 / scales)], axis=1)
    cov = np.linalg.inv((score * p[:, None] * dx).T @ score) / n
    k = len(weights)
    se_last_weight = np.sqrt(cov[:k - 1, :k - 1].sum())
    return np.concatenate([np.sqrt(np.diag(cov)[:k - 1]), [se_last_weight],
                           np.sqrt(np.diag(cov)[k - 1:])])


def test_learned_mixture_recovers_the_true_parameters_on_gmm_1d():
    """On 5,000 points of gmm-1d the fit must be the maximum-likelihood estimate (scikit-learn's
    EM, run to convergence) within half a standard error, and lie within four standard errors
    of the true parameters, each standard error from the Fisher information of the mixture."""
    n = 5000
    x, _ = draw("gmm-1d", num_train=n)
    parts = build("gmm", "enum", "enum", data_dim=1, components=3)
    initialize(parts.model, x, "kmeans", seed=0)
    svi = SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 0.05}), parts.elbo)
    for _ in range(80):                       # full batch: no minibatch noise at the end
        svi.step(x)
    model = parts.model
    order = model.locs.detach().flatten().argsort()
    learned = torch.cat([model.weights[order], model.locs[order, 0],
                         model.scales[order, 0]]).detach().double().numpy()
    truth = TRUTHS["gmm-1d"]
    true = np.concatenate([truth.mixture_distribution.probs.numpy(),
                           truth.component_distribution.base_dist.loc[:, 0].numpy(),
                           truth.component_distribution.base_dist.scale[:, 0].numpy()])
    se = mle_standard_errors(true[:3], true[3:6], true[6:], n)
    em = GaussianMixture(3, n_init=3, tol=1e-10, max_iter=5000, random_state=0).fit(x.numpy())
    em_order = em.means_[:, 0].argsort()
    mle = np.concatenate([em.weights_[em_order], em.means_[em_order, 0],
                          np.sqrt(em.covariances_[em_order, 0, 0])])
    assert np.all(np.abs(learned - mle) < 0.5 * se)
    assert np.all(np.abs(learned - true) < 4 * se)
    assert mixture_recovery(model, truth)["recovery_means_error"] < 4 * se[3:6].max()
