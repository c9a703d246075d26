"""The conditional VAE: quadrant masks, shapes, the baseline, and the conditional log-likelihood
log p(x_h | x_v) that the project's importance-sampled bound estimates, against quadrature."""
import math

import pyro
import pytest
import torch
from pyro import poutine
from torch.distributions import Bernoulli, Normal
from torch.nn.functional import softplus

from guides.normal import NormalGuide
from models.cvae import CVAE, default_image_shape, quadrant_mask, train_baseline


def test_quadrant_masks_follow_pyros_example():
    visible = {k: quadrant_mask((4, 4), k).reshape(4, 4).int().tolist() for k in (1, 2, 3)}
    assert visible[1] == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert visible[2] == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert visible[3] == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    odd = quadrant_mask((3, 5), 1).reshape(3, 5)                  # split at row 1, column 2
    assert odd.sum() == 4 and odd[1:, :2].all()
    channels = quadrant_mask((2, 4, 4), 3).reshape(2, 4, 4)
    assert torch.equal(channels[0], channels[1]) and channels[0].sum() == 12
    assert default_image_shape(64) == (8, 8) and default_image_shape(5) == (1, 5)


def test_refusals():
    with pytest.raises(ValueError, match="1, 2 or 3"):
        quadrant_mask((4, 4), 4)
    with pytest.raises(ValueError, match="does not hold"):
        CVAE(16, image_shape=(3, 5))
    with pytest.raises(ValueError, match="no visible or no hidden"):
        CVAE(4, image_shape=(4, 1))
    with pytest.raises(ValueError, match="likelihood"):
        CVAE(16, likelihood="gaussian")


def test_shapes_with_vectorized_particles():
    model = CVAE(36, latent_dim=3, hidden_dims=(8,), visible=2)           # 6 × 6: 18 visible
    guide = NormalGuide(model, hidden_dims=(8,))
    x = torch.rand(5, 36).bernoulli()
    with pyro.plate("particles", 4, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert model_trace.nodes["z"]["value"].shape == (4, 5, 3)
    hidden = model_trace.nodes["x_hidden"]
    assert hidden["is_observed"] and torch.equal(hidden["value"], x[:, ~model.visible_mask])
    assert hidden["fn"].log_prob(hidden["value"]).shape == (4, 5)
    completed = model.predict(x, num_samples=3)
    assert completed.shape == (3, 5, 36)
    shown = model.visible_mask
    assert torch.equal(completed[..., shown], x[:, shown].expand(3, 5, 18))
    assert torch.equal(model.merge(*model.split(x)), x)
    baseline = model.baseline_completion(x)
    assert baseline.shape == (5, 36) and ((baseline >= 0) & (baseline <= 1)).all()


def test_baseline_trains_alone_and_svi_leaves_it_fixed():
    model = CVAE(16, latent_dim=2, hidden_dims=(32,), visible=2)
    x = torch.rand(64, 16).bernoulli()
    for row in range(4):           # the hidden right half mirrors the visible left half
        x[:, 4 * row + 2: 4 * row + 4] = x[:, 4 * row: 4 * row + 2]
    visible, hidden = model.split(x)
    by_hand = Bernoulli(logits=model.baseline(visible)).log_prob(hidden).sum(-1)
    torch.testing.assert_close(model.baseline_log_likelihood(x), by_hand)
    history = train_baseline(model, x, epochs=30, batch_size=16, lr=1e-2)
    assert history[0] > 4.0 and history[-1] < 0.5      # 8 fair coins: 8 log 2 = 5.5 nats
    frozen = {k: v.clone() for k, v in model.baseline.state_dict().items()}
    guide = NormalGuide(model, hidden_dims=(32,))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-1}), pyro.infer.Trace_ELBO())
    prior_before = model.prior_net[0].weight.detach().clone()
    for _ in range(3):
        svi.step(x[:16], torch.arange(16), 64)
    assert all(torch.equal(frozen[k], v) for k, v in model.baseline.state_dict().items())
    assert not torch.equal(prior_before, model.prior_net[0].weight)


def test_model_density_by_hand():
    """log p(z | x_v, ŷ) + log p(x_h | z, x_v) from the model's trace equals the networks'
    values by hand: the prior network reads x_v and the baseline's ŷ — never x_h — and the
    generation network reads z and x_v."""
    model = CVAE(16, latent_dim=2, hidden_dims=(8,), visible=1)
    x, z = torch.rand(6, 16).bernoulli(), torch.randn(6, 2)
    trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x)
    trace.compute_log_prob()
    shown = model.visible_mask
    visible = x[:, shown]
    filled = x.clone()
    filled[:, ~shown] = torch.sigmoid(model.baseline(visible))
    loc, raw = model.prior_net(filled).chunk(2, -1)
    logits = model.generation_net(torch.cat([z, visible], -1))
    torch.testing.assert_close(trace.nodes["z"]["log_prob"],
                               Normal(loc, softplus(raw) + 1e-6).log_prob(z).sum(-1))
    torch.testing.assert_close(trace.nodes["x_hidden"]["log_prob"],
                               Bernoulli(logits=logits).log_prob(x[:, ~shown]).sum(-1))


def exact_conditional_log_likelihood(model: CVAE, x: torch.Tensor, points: int = 4001):
    """log p(x_h | x_v) for a 1-d z by quadrature, from the networks alone: the prior network
    reads x with its hidden pixels replaced by the baseline's sigmoid(logits), p(z | x_v) =
    N(μ, σ²); in t = (z − μ)/σ the integral is ∫ N(t; 0, 1) p(x_h | μ + σ t, x_v) dt."""
    shown = model.visible_mask
    visible, hidden = x[:, shown], x[:, ~shown]
    filled = x.clone()
    filled[:, ~shown] = torch.sigmoid(model.baseline(visible))
    loc, raw = model.prior_net(filled).chunk(2, -1)                                # (N, 1)
    t = torch.linspace(-12, 12, points, dtype=x.dtype)
    z = (loc + (softplus(raw) + 1e-6) * t).unsqueeze(-1)                          # (N, G, 1)
    logits = model.generation_net(torch.cat([z, visible.unsqueeze(1).expand(-1, points, -1)], -1))
    log_lik = Bernoulli(logits=logits).log_prob(hidden.unsqueeze(1)).sum(-1)       # (N, G)
    return (Normal(0.0, 1.0).log_prob(t) + log_lik).logsumexp(-1) + math.log(t[1] - t[0])


@pytest.mark.parametrize("visible", [1, 3])
def test_importance_sampled_conditional_log_likelihood_against_quadrature(visible):
    """On 2 × 2 images (1 or 3 hidden pixels), z ∈ R: the weights w = p(x_h, z | x_v) / q(z | x)
    of experiments.evaluation.likelihood average to p(x_h | x_v) (E[w / p] = 1 within 4
    standard errors), and the K-sample estimate of log p(x_h | x_v) lies within 4 Monte Carlo
    standard errors (delta method) plus its bias of the quadrature."""
    from experiments.evaluation.likelihood import iwae_log_likelihood, log_importance_weights

    torch.manual_seed(visible)
    model = CVAE(4, latent_dim=1, hidden_dims=(6,), visible=visible).double()
    guide = NormalGuide(model, hidden_dims=(6,)).double()
    with torch.no_grad():      # q(z|x) = N(0, 2²), wider than p(z|x_v): weights of finite variance
        guide.encoder[-1].weight.zero_()
        guide.encoder[-1].bias.copy_(torch.tensor([0.0, math.log(math.expm1(2.0))]))
    x = torch.rand(12, 4, dtype=torch.float64).bernoulli()
    k = 3000
    with torch.no_grad():
        exact = exact_conditional_log_likelihood(model, x)                         # (N,)
        ratio = (log_importance_weights(model, guide, x, k) - exact).exp()         # (K, N)
        estimate, _ = iwae_log_likelihood(model, guide, x, k)
    assert abs(ratio.mean().item() - 1.0) < 4 * ratio.std().item() / math.sqrt(ratio.numel())
    per_point_var = ratio.var(0) / k                  # Var[log p̂_i] ≈ Var[w/p] / K
    mc_error = per_point_var.sum().sqrt().item() / len(x)
    bias = (per_point_var / 2).mean().item()          # E[log p̂_i] − log p_i ≈ −Var[w/p] / 2K
    assert abs(estimate - exact.mean().item()) < 4 * mc_error + bias
    assert mc_error < 0.01                        # power: an error of 0.05 nats would be caught
