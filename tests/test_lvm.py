"""The nonlinear latent variable model: its quadrature log p(x) against closed forms and
importance sampling, its grid posterior, and the normal guide's bound below it."""
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from experiments.common.errors import UserError
from experiments.common.rng import isolated_rng
from experiments.evaluation.likelihood import log_importance_weights
from experiments.parts.build import build
from models import MODELS


def lvm_parts(latent_dim: int, hidden_dims=(32,), scale: float = 0.2, seed: int = 0):
    torch.manual_seed(seed)
    parts = build("lvm", "normal", "trace", data_dim=2, latent_dim=latent_dim,
                  hidden_dims=hidden_dims)
    parts.model.likelihood.scale = torch.tensor(scale)
    return parts


@pytest.mark.parametrize("latent_dim", [0, 3, 20])
def test_latent_dimensions_other_than_1_or_2_are_refused_in_one_line(latent_dim):
    with pytest.raises(ValueError, match="must be 1 or 2"):
        MODELS["lvm"](data_dim=2, latent_dim=latent_dim)
    with pytest.raises(UserError) as info:
        build("lvm", "normal", "trace", data_dim=2, latent_dim=latent_dim)
    assert str(info.value).startswith("--model lvm: the latent dimension must be 1 or 2")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("latent_dim", [1, 2])
def test_with_a_linear_f_the_quadrature_is_the_closed_form_of_ppca(latent_dim):
    """hidden_dims = () makes f(z) = W z + b: the lvm is then PPCA, whose log p(x) and p(z|x)
    are Gaussian in closed form; the grid's rectangle rule must reproduce both."""
    ppca = MODELS["ppca"](data_dim=3, latent_dim=latent_dim)
    ppca.likelihood.scale = torch.tensor(0.3)
    linear = MODELS["lvm"](data_dim=3, latent_dim=latent_dim, hidden_dims=())
    linear.load_state_dict(ppca.state_dict())
    x = torch.randn(40, 3)
    with torch.no_grad():
        assert torch.allclose(linear.exact_log_likelihood(x), ppca.exact_log_likelihood(x),
                              atol=2e-4)
        grid, closed = linear.exact_posterior(x[:5]), ppca.exact_posterior(x[:5])
        assert torch.allclose(grid.mean, closed.mean, atol=1e-3)
        assert torch.allclose(grid.variance, closed.variance, atol=1e-3)
        total = (grid.log_density.exp() * grid.cell_volume).sum(-1)
        assert torch.allclose(total, torch.ones(5), atol=1e-5)


@pytest.mark.parametrize("latent_dim", [1, 2])
def test_quadrature_agrees_with_large_sample_importance_sampling(latent_dim):
    """An independent estimate of p(x) = E_r[p(x|z) p(z) / r(z)] with 100,000 draws from the
    defensive proposal r = ½ p(z) + ½ N(m, 4 s²) (m, s² the grid posterior's moments), whose
    weights are bounded by 2 p(x|z): |log p̂ − log p| must lie within four standard errors of
    log p̂ (delta method: sd(w) / (mean(w) √S)) plus the quadrature's own 1e-3."""
    parts = lvm_parts(latent_dim)
    model = parts.model
    x = model.decode(torch.randn(4, latent_dim)).detach() + 0.2 * torch.randn(4, 2)
    with torch.no_grad():
        quadrature = model.exact_log_likelihood(x)
        moments = model.exact_posterior(x)
    s = 100_000
    for i in range(len(x)):
        near = Independent(Normal(moments.mean[i], 2 * moments.variance[i].sqrt()), 1)
        prior = Independent(Normal(torch.zeros(latent_dim), torch.ones(latent_dim)), 1)
        proposal = MixtureSameFamily(Categorical(torch.tensor([0.5, 0.5])), Independent(
            Normal(torch.stack([prior.base_dist.loc, near.base_dist.loc]),
                   torch.stack([prior.base_dist.scale, near.base_dist.scale])), 1))
        with torch.no_grad(), isolated_rng(i, x.device):
            z = proposal.sample((s,))
            f = model.decoder(z)
            log_w = (Independent(Normal(f, model.likelihood.scale), 1).log_prob(x[i])
                     + prior.log_prob(z) - proposal.log_prob(z)).double()
        w = (log_w - log_w.max()).exp()
        estimate = (w.mean().log() + log_w.max()).item()
        stderr = (w.std() / (w.mean() * math.sqrt(s))).item()
        assert abs(estimate - quadrature[i].item()) < 4 * stderr + 1e-3


@pytest.mark.parametrize("latent_dim", [1, 2])
def test_normal_guide_bound_is_below_the_exact_log_likelihood(latent_dim):
    """The ELBO's Monte Carlo mean lies below log p(x) up to four standard errors, and the
    importance-weighted bound of the same draws above the ELBO (Burda et al. 2016)."""
    parts = lvm_parts(latent_dim, hidden_dims=(16,), scale=0.5)
    x = torch.randn(30, 2)
    log_w = log_importance_weights(parts.model, parts.guide, x, num_samples=500).detach()
    elbo, stderr = log_w.mean().item(), log_w.std().item() / math.sqrt(log_w.numel())
    with torch.no_grad():
        exact = parts.model.exact_log_likelihood(x).mean().item()
    assert elbo < exact + 4 * stderr
    iwae = (log_w.logsumexp(0) - math.log(len(log_w))).mean().item()
    assert iwae > elbo
