"""Gradient variance and SNR: the measurements the estimator comparison rests on."""
import math

import pyro
import pytest
import torch
from torch.distributions import Normal

from experiments.evaluation.gradients import gaussian_mean_gradients, gradient_draws, gradient_stats
from experiments.parts.build import build


@pytest.fixture
def x():
    return torch.rand(16, 6).bernoulli()


def test_stats_of_known_draws():
    draws = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]])
    stats = gradient_stats(draws)
    # coordinate 0: mean 2, var 2; coordinate 1 never gets a gradient; coordinate 2 is exact
    assert stats.total_variance == pytest.approx(2.0)
    assert math.isinf(stats.mean_snr)
    assert gradient_stats(torch.tensor([[1.0], [3.0]])).mean_snr == pytest.approx(2 / math.sqrt(2))


def test_draws_have_one_row_per_draw_and_leave_parameters_and_grads_alone(x):
    parts = build("vae", "normal", "trace", data_dim=6, latent_dim=2, hidden_dims=(8,))
    state = {k: v.clone() for k, v in parts.guide.state_dict().items()}
    rng = torch.get_rng_state()
    draws = gradient_draws(parts, x, draws=20)
    n_guide = sum(p.numel() for p in parts.guide.parameters())
    n_model = sum(p.numel() for p in parts.model.parameters())
    assert draws["guide"].shape == (20, n_guide) and draws["model"].shape == (20, n_model)
    assert all(p.grad is None for p in parts.guide.parameters())
    assert all(torch.equal(state[k], v) for k, v in parts.guide.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    again = gradient_draws(parts, x, draws=20)            # its own seeded stream: repeatable
    assert torch.equal(draws["guide"], again["guide"])


def test_iwae_guide_snr_falls_with_k_while_the_model_snr_rises(x):
    """Rainforth et al. (2018): for the IWAE bound, the guide's gradient SNR is O(1/√K) and the
    model's O(√K), at fixed parameters."""
    snr = {}
    for k in (1, 100):
        pyro.set_rng_seed(0)
        parts = build("vae", "normal", "iwae", data_dim=6, latent_dim=2, hidden_dims=(8,),
                      num_particles=k, vectorize_particles=True)
        draws = gradient_draws(parts, x, draws=60)
        snr[k] = {g: gradient_stats(d).mean_snr for g, d in draws.items()}
    assert snr[100]["guide"] < snr[1]["guide"]
    assert snr[100]["model"] > snr[1]["model"]


def _gmm_batch():
    from experiments.data.synthetic import draw

    return draw("gmm-1d", num_train=128, num_test=10)[0]


def test_enum_on_the_mixture_has_no_variance_from_z():
    """Summing z out makes the objective a deterministic function of the minibatch."""
    x = _gmm_batch()
    parts = build("gmm", "enum", "enum", data_dim=1, components=3)
    draws = gradient_draws(parts, x, draws=10)
    assert draws["guide"].shape[1] == 0                   # no q, no φ
    assert gradient_stats(draws["model"]).total_variance == 0.0
    assert draws["model"].abs().sum() > 0                  # but θ does get a gradient


def test_tracegraph_baseline_lowers_the_variance_of_the_categorical_guide():
    """TraceGraph subtracts the guide's baseline b(x) from the cost in the score-function term;
    a baseline near the mean cost removes most of the variance that Trace_ELBO keeps."""
    x = _gmm_batch()
    graph = build("gmm", "categorical", "tracegraph", data_dim=1, components=3, hidden_dims=(16,))
    plain = build("gmm", "categorical", "trace", data_dim=1, components=3, hidden_dims=(16,))
    plain.model.load_state_dict(graph.model.state_dict())
    plain.guide.load_state_dict(graph.guide.state_dict())
    with torch.no_grad():          # b(x) = the mean per-point ELBO, a constant baseline
        mean_cost = -pyro.infer.Trace_ELBO().loss(graph.model, graph.guide, x) / len(x)
        graph.guide.baseline[-1].weight.zero_()
        graph.guide.baseline[-1].bias.fill_(mean_cost)
    var_graph = gradient_stats(gradient_draws(graph, x, draws=60)["guide"]).total_variance
    var_plain = gradient_stats(gradient_draws(plain, x, draws=60)["guide"]).total_variance
    assert var_graph < 0.5 * var_plain


def test_score_function_baseline_and_reparameterized_gradients_share_their_mean():
    """∂/∂μ E_{N(μ, σ²)}[log N(x0 | z, s²)] = (x0 − μ)/s²; the reparameterized draws are
    f′(z) = (x0 − z)/s², whose standard deviation is σ/s² exactly."""
    x0, s, mu, sigma, m = 2.0, 0.5, 0.0, 1.0, 20000
    mean_f = -((x0 - mu) ** 2 + sigma ** 2) / (2 * s ** 2) - math.log(s * math.sqrt(2 * math.pi))
    draws = gaussian_mean_gradients(lambda z: Normal(z, s).log_prob(torch.tensor(x0)), mu,
                                    sigma, m, baseline=mean_f)
    true = (x0 - mu) / s ** 2
    for name, d in draws.items():
        assert abs(d.mean().item() - true) < 4 * d.std().item() / math.sqrt(m), name
    assert draws["reparameterization"].std().item() == pytest.approx(sigma / s ** 2, rel=0.03)
    sd = {name: d.std().item() for name, d in draws.items()}
    assert sd["reparameterization"] < sd["score function, baseline"] < sd["score function"]
