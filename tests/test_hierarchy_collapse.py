"""The hvae's collapse diagnostics layer by layer, against closed forms: a linear hvae whose
scales are constants, where E_q[z₂|x], the KL per unit of both layers and their sum (the KL
term of the ELBO) are Gaussian integrals written out here, and a plain-torch Monte Carlo of the
same integrands gives the standard errors."""
import math

import pytest
import torch
from pyro import poutine

from experiments.evaluation.hierarchy_collapse import (
    chain_draws,
    hierarchy_applies,
    hierarchy_diagnostics,
    layer_kl_per_dimension,
    layer_means,
    seeded,
    top_layer_information,
    unit_diagnostics,
)
from experiments.parts.build import build
from experiments.training.end_to_end import run
from guides import GUIDES
from models import MODELS

K_SE = 4.0
N, D = 5, 3
W, BIAS, SIGMA1 = (torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]], dtype=torch.float64),
                   torch.tensor([0.1, -0.2], dtype=torch.float64),
                   torch.tensor([0.5, 0.8], dtype=torch.float64))
A, B2, S2 = (torch.tensor([[1.5, -0.5], [0.0, 0.0]], dtype=torch.float64),
             torch.tensor([0.3, 0.0], dtype=torch.float64),
             torch.tensor([0.6, 1.0 - 1e-6], dtype=torch.float64))     # unit 2: q = N(0, 1)
C, E, T = (torch.tensor([[0.7, 0.4], [-1.2, 0.0]], dtype=torch.float64),
           torch.tensor([0.05, -0.3], dtype=torch.float64),
           torch.tensor([0.9, 0.4], dtype=torch.float64))


def raw(scale: torch.Tensor) -> torch.Tensor:
    """σ̃ with softplus(σ̃) + 1e-6 = σ (``models.networks.diagonal_normal``)."""
    return torch.log(torch.expm1(scale - 1e-6))


def linear_pair():
    """q(z₁|x) = N(Wx + b, σ₁²), q(z₂|z₁) = N(A z₁ + b₂, s₂²), p(z₁|z₂) = N(C z₂ + e, t²)."""
    model = MODELS["hvae"](data_dim=D, latent_dims=(2, 2), hidden_dims=()).double()
    guide = GUIDES["chain"](model, hidden_dims=()).double()
    with torch.no_grad():
        for layer, weight, bias, scale in ((guide.encoder[0], W, BIAS, SIGMA1),
                                           (guide.chain[0][0], A, B2, S2),
                                           (model.z1_decoder[0], C, E, T)):
            layer.weight.copy_(torch.cat([weight, torch.zeros_like(weight)]))
            layer.bias.copy_(torch.cat([bias, raw(scale)]))
    return model, guide


def points() -> torch.Tensor:
    return torch.rand(N, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def closed_form_kl(x: torch.Tensor):
    """KL₁,j and KL₂,j (d,) each, the module's formulas as Gaussian integrals."""
    m = x @ W.T + BIAS                                                     # (N, d₁)
    second_moment = (m @ A.T + B2) ** 2 + (A ** 2 @ SIGMA1 ** 2)            # E[(A z₁ + b₂)²]
    top = (0.5 * (S2 ** 2 + second_moment - 1) - S2.log()).mean(0)
    w = torch.eye(2, dtype=torch.float64) - C @ A                           # u = w z₁ + …
    residual = (m @ w.T - B2 @ C.T - E) ** 2 + w ** 2 @ SIGMA1 ** 2 + C ** 2 @ S2 ** 2
    bottom = (-0.5 * torch.log(2 * math.pi * math.e * SIGMA1 ** 2)
              + 0.5 * torch.log(2 * math.pi * T ** 2) + residual / (2 * T ** 2)).mean(0)
    return bottom, top


def plain_torch_kl_terms(x: torch.Tensor, samples: int):
    """The integrands of KL₁,j and KL₂,j at ``samples`` draws per point, (samples·N, d) each."""
    generator = torch.Generator().manual_seed(11)
    normal = torch.distributions.Normal
    m = (x @ W.T + BIAS).repeat(samples, 1)
    z1 = m + SIGMA1 * torch.randn(m.shape, generator=generator, dtype=torch.float64)
    loc2 = z1 @ A.T + B2
    z2 = loc2 + S2 * torch.randn(loc2.shape, generator=generator, dtype=torch.float64)
    top = torch.distributions.kl_divergence(normal(loc2, S2), normal(0.0, 1.0))
    bottom = normal(m, SIGMA1).log_prob(z1) - normal(z2 @ C.T + E, T).log_prob(z1)
    return bottom, top


def test_the_closed_forms_agree_with_a_plain_torch_monte_carlo():
    for exact, terms in zip(closed_form_kl(points()), plain_torch_kl_terms(points(), 20000)):
        se = terms.std(0) / math.sqrt(len(terms))
        assert torch.all((terms.mean(0) - exact).abs() < K_SE * se + 1e-9)


def test_kl_per_unit_of_each_layer_matches_the_gaussian_integrals():
    model, guide = linear_pair()
    torch.manual_seed(0)
    samples = 20000
    found = layer_kl_per_dimension(model, chain_draws(guide, points(), samples))
    for layer, exact, terms in zip(("z1", "z2"), closed_form_kl(points()),
                                   plain_torch_kl_terms(points(), samples)):
        se = terms.std(0) / math.sqrt(len(terms))
        assert torch.all((found[layer] - exact).abs() < K_SE * se + 1e-9), layer
    assert found["z2"][1].abs() < 1e-5             # q(z₂,₂|z₁) = p(z₂,₂): no KL


def test_units_sum_to_the_kl_term_of_the_elbo_from_pyros_traces():
    """Σ over units and layers against (1/N) Σ_n E_q[log q(z₁, z₂|x) − log p(z₁, z₂)], read off
    the guide's trace and the model replayed on it."""
    model, guide = linear_pair()
    x = points().repeat(20000, 1)
    torch.manual_seed(1)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    per_row = sum(guide_trace.nodes[site]["fn"].log_prob(guide_trace.nodes[site]["value"])
                  - model_trace.nodes[site]["fn"].log_prob(model_trace.nodes[site]["value"])
                  for site in ("z1", "z2"))
    total = sum(part.sum() for part in closed_form_kl(points())).item()
    assert abs(per_row.mean().item() - total) < K_SE * per_row.std().item() / math.sqrt(len(x))
    found = hierarchy_diagnostics(model, guide, points())
    assert found["kl_z1"] + found["kl_z2"] == pytest.approx(
        sum(found["kl_per_dimension_z1"]) + sum(found["kl_per_dimension_z2"]))


def test_layer_means_and_active_units():
    """E_q[z₂|x] = A E_q[z₁|x] + b₂; the unit of z₂ whose q is the prior counts inactive."""
    model, guide = linear_pair()
    torch.manual_seed(2)
    samples = 4000
    means = layer_means(chain_draws(guide, points(), samples))
    m = points() @ W.T + BIAS
    assert torch.allclose(means["z1"], m)
    se = torch.sqrt((A ** 2 @ SIGMA1 ** 2 + S2 ** 2) / samples)
    assert torch.all((means["z2"] - (m @ A.T + B2)).abs() < K_SE * se + 1e-9)
    found = hierarchy_diagnostics(model, guide, points())
    assert (found["active_units_z1"], found["active_units_z2"]) == (2, 1)
    assert 0 <= found["mutual_information_z2"] <= math.log(2 * N)
    assert found["marginal_kl_z2"] == pytest.approx(found["kl_z2"]
                                                    - found["mutual_information_z2"])


def test_only_the_two_layer_hierarchy_has_them():
    assert hierarchy_applies(build("hvae", "chain", data_dim=D, latent_dims=(2, 2)).model)
    assert not hierarchy_applies(build("vae", "normal", data_dim=D, latent_dim=2).model)


@pytest.mark.slow
def test_an_hvae_run_reports_both_layers_and_none_of_the_one_site_numbers(quick_config):
    """The summary's KL per unit sums to its KL term of each layer (the same seeded draws), the
    units and I(z₁; z₂) lie in their ranges, every epoch records them, the figure is drawn."""
    result = run(quick_config(model="hvae", latent_dims=(3, 2), epochs=1))
    summary = result.summary
    for layer, width in (("z1", 3), ("z2", 2)):
        assert 0 <= summary[f"test_active_units_{layer}"] <= width
        assert len(summary[f"kl_per_dimension_{layer}"]) == width
        assert sum(summary[f"kl_per_dimension_{layer}"]) == pytest.approx(
            summary[f"test_kl_to_prior_{layer}"], rel=1e-5)
    assert 0 <= summary["test_mutual_information_z2"] <= math.log(2 * 100) + 0.1
    assert summary["test_marginal_kl_z2"] == pytest.approx(
        summary["test_kl_to_prior_z2"] - summary["test_mutual_information_z2"])
    assert not {"test_active_units", "test_kl_to_prior", "kl_per_dimension"} & set(summary)
    assert "test_mutual_information_z2" in (result.run_dir / "metrics.csv").read_text()
    assert (result.run_dir / "kl_per_dimension.png").read_bytes()[:4] == b"\x89PNG"


def test_the_per_epoch_metrics_share_one_chain_pass_with_the_numbers_of_each_alone():
    """metrics_on_test_set runs the guide twice for the five layer metrics (the 64-draw chain
    pass and the surgery's), and each metric equals its number computed alone from the same
    seeded stream, as every metric computed its own pass before."""
    from experiments.evaluation.metrics import metrics_on_test_set

    model, guide = linear_pair()
    calls = []
    guide.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    row = metrics_on_test_set(model, guide, points(), 10)
    assert calls == [N, N, N]                         # the test ELBO's, the chain's, the surgery's
    alone = seeded(lambda rows: unit_diagnostics(model, guide, rows), points())
    for layer in ("z1", "z2"):
        assert row[f"test_active_units_{layer}"] == alone[f"active_units_{layer}"]
        assert row[f"test_kl_to_prior_{layer}"] == alone[f"kl_{layer}"]
    information = seeded(lambda rows: top_layer_information(guide, rows), points())
    assert row["test_mutual_information_z2"] == information
    assert row["test_marginal_kl_z2"] == alone["kl_z2"] - information
