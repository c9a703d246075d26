"""The collapse diagnostics against hand computations: active units from a variance by hand, the
per-dimension KL from the Gaussian formula, and the ELBO surgery's I(x; z) and KL(q(z) ‖ p(z))
by quadrature over z."""
import math

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from experiments import train
from experiments.evaluation.collapse import active_units, elbo_surgery
from experiments.parts.build import build
from experiments.parts.kl_per_unit import kl_per_point_and_dimension
from experiments.training.end_to_end import run
from experiments.training.free_bits import FreeBitsModel
from experiments.training.trained import load_trained

K_SE = 4.0


def test_active_units_count_coordinates_whose_mean_varies_over_points():
    means = torch.stack([torch.tensor([0.0, 1.0, 2.0, 3.0]),         # variance 5/3: active
                         torch.tensor([0.1, 0.0, 0.1, 0.0]),         # variance 1/300: not
                         torch.tensor([0.0, 0.25, 0.0, 0.25])], -1)  # variance 1/48: active
    assert active_units(means) == 2


def test_kl_per_dimension_is_the_gaussian_formula_and_sums_to_the_kl():
    loc, scale = torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[0.3, 1.0], [2.0, 0.5]])
    q = dist.Normal(loc, scale).to_event(1)
    prior = dist.Normal(torch.zeros(()), torch.ones(())).expand([2]).to_event(1)
    by_hand = 0.5 * (scale ** 2 + loc ** 2 - 1) - scale.log()
    per_dimension = kl_per_point_and_dimension(q, prior)
    assert torch.allclose(per_dimension, by_hand, atol=1e-6)
    assert torch.allclose(per_dimension.sum(-1), torch.distributions.kl_divergence(q, prior))
    full = dist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    assert kl_per_point_and_dimension(full, prior) is None      # does not split by coordinate


def test_elbo_surgery_matches_quadrature_over_z():
    """Three points, q(z|x_n) = N(m_n, s_n²) in one dimension, p(z) = N(0, 1): I(x; z) and
    KL(q(z) ‖ p(z)) by the rectangle rule on a fine grid, against the Monte Carlo estimates,
    within K_SE standard errors (each integrand's variance under q, by the same quadrature)."""
    m, s = torch.tensor([-2.0, 0.5, 1.0]), torch.tensor([0.5, 1.0, 0.3])
    q = dist.Independent(dist.Normal(m.unsqueeze(-1), s.unsqueeze(-1)), 1)
    prior = dist.Normal(torch.zeros(()), torch.ones(())).expand([1]).to_event(1)
    grid = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    h = (grid[1] - grid[0]).item()
    log_qn = torch.distributions.Normal(m.double().unsqueeze(-1), s.double().unsqueeze(-1)
                                        ).log_prob(grid)                     # (3, G)
    log_agg = log_qn.logsumexp(0) - math.log(3)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(grid)
    weight = log_qn.exp() * h / 3                                            # q(z|x_n)/N dz

    def mean_and_se(integrand: torch.Tensor, samples: int):
        mean = (weight * integrand).sum().item()
        per_point_var = (log_qn.exp() * h * integrand ** 2).sum(-1) - (
            log_qn.exp() * h * integrand).sum(-1) ** 2
        return mean, math.sqrt(per_point_var.mean().item() / (3 * samples))

    torch.manual_seed(0)
    found = elbo_surgery(q, prior, num_samples=4000)
    info, info_se = mean_and_se(log_qn - log_agg, 4000)
    marginal, marginal_se = mean_and_se(log_agg - log_p, 4000)
    assert 0.3 < info < math.log(3)                  # a case where neither bound is touched
    assert abs(found["mutual_information"] - info) < K_SE * info_se
    assert abs(found["marginal_kl"] - marginal) < K_SE * marginal_se


def test_a_vae_run_reports_its_units_information_and_kl_per_dimension(quick_config):
    result = run(quick_config(latent_dim=4))
    summary = result.summary
    assert 0 <= summary["test_active_units"] <= 4
    assert 0 <= summary["test_mutual_information"] <= math.log(100) + 0.1
    assert len(summary["kl_per_dimension"]) == 4
    assert (result.run_dir / "kl_per_dimension.png").read_bytes()[:4] == b"\x89PNG"
    assert "test_mutual_information" in (result.run_dir / "metrics.csv").read_text()


def test_free_bits_is_the_elbo_plus_the_clamped_kl_per_dimension():
    """The trained model's log-joint differs from the plain model's by exactly the factor
    N · Σ_j min(0, KL̄_j − λ), KL̄_j computed by hand from the encoder's μ and σ."""
    parts = build("vae", "normal", data_dim=6, latent_dim=3, hidden_dims=(8,))
    x, index = torch.rand(4, 6).bernoulli(), torch.tensor([0, 3, 5, 7])
    wrapped = FreeBitsModel(parts.model, parts.guide, 0.4)
    trace = poutine.trace(wrapped).get_trace(x, index, 10)
    q = parts.guide.posterior(x).base_dist
    kl = (0.5 * (q.scale ** 2 + q.loc ** 2 - 1) - q.scale.log()).mean(0)             # (d,)
    expected = 10 * torch.clamp(kl - 0.4, max=0.0).sum()
    site = trace.nodes["free_bits"]
    assert torch.allclose(site["fn"].log_prob(site["value"]), expected, atol=1e-5)
    assert expected < 0                  # some unit is under λ at initialization


@pytest.mark.slow
def test_free_bits_trains_resumes_and_refuses_what_it_cannot_split(quick_config, capsys,
                                                                   tmp_path):
    """Training sees the correction (about −2 nats per unit of z ∈ R² at λ = 2, where the KL
    per unit starts near 0), the test bound does not; a resumed run continues it."""
    first = run(quick_config(free_bits=2.0, epochs=1))
    plain = run(quick_config(epochs=1, out=str(tmp_path / "plain")))
    assert first.summary["train_elbo"] < plain.summary["train_elbo"] - 2
    assert abs(first.summary["test_elbo"] - plain.summary["test_elbo"]) < 2
    resumed = run(quick_config(free_bits=2.0, epochs=2), resume=first.run_dir)
    assert resumed.summary["epochs"] == 2
    for flags in (["--guide", "mvn"], ["--elbo", "iwae", "--num-particles", "2",
                                       "--vectorize-particles"], ["--beta", "2"]):
        assert train.main(["--free-bits", "0.5", "--epochs", "1", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "--free-bits" in err and "\n" not in err


def diagonal_gaussian_kl(q, p):
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) per point and coordinate, written out."""
    mq, sq, mp, sp = q.base_dist.loc, q.base_dist.scale, p.base_dist.loc, p.base_dist.scale
    return torch.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5


@pytest.mark.slow
def test_a_cvae_run_reports_its_units_and_kl_to_its_conditional_prior_but_no_surgery(
        quick_config):
    """Under p(z|x_v) the KL of each point is against its own prior: the mean and the per-unit
    KL match the Gaussian formula at every test point; I(x; z) and KL(q(z) ‖ p(z)), which need
    one p(z) for all points, are left out."""
    result = run(quick_config(model="cvae", visible=2, epochs=1, latent_dim=3))
    summary = result.summary
    _, data, parts = load_trained(result.run_dir)
    with torch.no_grad():
        by_hand = diagonal_gaussian_kl(parts.guide.posterior(data.x_test),
                                       parts.model.prior(data.x_test))                 # (N, d)
    assert summary["test_kl_to_prior"] == pytest.approx(by_hand.sum(-1).mean().item(), rel=1e-4)
    assert summary["kl_per_dimension"] == pytest.approx(by_hand.mean(0).tolist(), rel=1e-4)
    assert 0 <= summary["test_active_units"] <= 3
    assert "test_mutual_information" not in summary and "test_marginal_kl" not in summary
    assert (result.run_dir / "kl_per_dimension.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("width", [1, 3, 8, 20, 21, 50, 784])
def test_the_kl_per_unit_figure_ticks_units_only(width):
    """Ticks lie on units 1 … d (the hvae's 20 units once read 0 … 21): all of them up to 20,
    else unit 1 and a tick every ⌈d / 20⌉ units, at most 21 ticks."""
    from experiments.figures.collapse import unit_ticks

    ticks = unit_ticks(width)
    assert ticks[0] == 1 and ticks[-1] <= width and ticks == sorted(set(ticks))
    assert ticks == list(range(1, width + 1)) if width <= 20 else len(ticks) <= 21
    assert width - ticks[-1] < math.ceil(width / 20)
