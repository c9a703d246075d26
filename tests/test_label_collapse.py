"""The collapse diagnostics of the ssvae's z (experiments/evaluation/label_collapse.py) against
computations written apart from it: the guide's q(z|x, y) read off Pyro's traces class by
class (an enumeration over y by hand), a linear ssvae whose means, KL per unit and active units
are plain-torch formulas, and the three-way ELBO surgery by quadrature over a one-dimensional z.
"""
import math

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch.nn.functional import softplus

from experiments.evaluation.label_collapse import (
    LabelPosterior,
    label_collapse_applies,
    label_diagnostics,
    label_posterior,
    label_surgery,
)
from experiments.parts.build import build
from experiments.training.end_to_end import run
from guides.m2 import M2EnumGuide
from models.ssvae import SSVAE

K_SE = 4.0
N, D, C, LATENT = 6, 4, 3, 3


def points() -> torch.Tensor:
    return torch.rand(N, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


def small_parts(hidden_dims=(5,)):
    model = SSVAE(D, latent_dim=LATENT, hidden_dims=hidden_dims, num_classes=C).double()
    return model, M2EnumGuide(model, hidden_dims=hidden_dims).double()


def test_the_posterior_at_each_class_is_the_guides_trace_given_that_label():
    """q(z|x, y=c) for every c from the guide's own labeled rows (site ``z_labeled``, all rows
    given the label c), and q(y|x) from the classifier's softmax."""
    model, guide = small_parts()
    x = points()
    posterior = label_posterior(guide, x)
    for c in range(C):
        trace = poutine.trace(guide).get_trace(x, y=torch.full((N,), c))
        q = trace.nodes["z_labeled"]["fn"].base_dist
        assert torch.allclose(posterior.given_label.base_dist.loc[:, c], q.loc)
        assert torch.allclose(posterior.given_label.base_dist.scale[:, c], q.scale)
    assert torch.allclose(posterior.probs, guide.classifier(x).softmax(-1))


def raw(scale: float) -> float:
    """σ̃ with softplus(σ̃) + 1e-6 = σ."""
    return math.log(math.expm1(scale - 1e-6))


def linear_parts(classifier_weight: float):
    """A linear guide: q(y|x) = softmax(c · V x), q(z|x, y) = N(W x + M_y + b, diag σ²) with
    unit 1 reading x and y, unit 2 reading y alone, unit 3 equal to the prior N(0, 1)."""
    model, guide = small_parts(hidden_dims=())
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        guide.classifier[0].weight.copy_(classifier_weight * torch.randn(C, D, generator=generator))
        guide.classifier[0].bias.zero_()
        weight = torch.zeros(2 * LATENT, D + C, dtype=torch.float64)
        weight[0, :D] = torch.tensor([1.0, -0.5, 0.7, 0.2])          # unit 1: x …
        weight[0, D:] = torch.tensor([0.3, -0.3, 0.0])               # … and y
        weight[1, D:] = torch.tensor([1.0, -1.0, 0.5])               # unit 2: y alone
        guide.encoder[0].weight.copy_(weight)
        guide.encoder[0].bias.copy_(torch.tensor([0.1, 0.0, 0.0, raw(0.4), raw(0.6),
                                                  raw(1.0)]))
    return model, guide


def by_hand(guide, x: torch.Tensor):
    """E_q[z|x] (N, d) and KL_j (d,) from the linear guide's weights, in plain torch."""
    probs = (x @ guide.classifier[0].weight.T).softmax(-1)                           # (N, C)
    weight = guide.encoder[0].weight[:LATENT]
    bias = guide.encoder[0].bias[:LATENT]
    loc = (x @ weight[:, :D].T).unsqueeze(1) + weight[:, D:].T + bias                # (N, C, d)
    scale = softplus(guide.encoder[0].bias[LATENT:]) + 1e-6                           # (d,)
    kl = 0.5 * (scale ** 2 + loc ** 2 - 1) - scale.log()                             # (N, C, d)
    return ((probs.unsqueeze(-1) * loc).sum(1),
            (probs.unsqueeze(-1) * kl).sum(1).mean(0))


@pytest.mark.parametrize("classifier_weight, active", [(3.0, 2), (0.0, 1)])
def test_linear_means_kl_per_unit_and_active_units_are_the_formulas(classifier_weight, active):
    """With a classifier that reads x, units 1 and 2 vary with x (unit 2 through q(y|x)); with
    one that ignores x (q(y|x) uniform), unit 2's mean Σ_y q(y|x) M_y is the same for every x:
    inactive, though its KL is not zero. Unit 3 is the prior: no KL, inactive."""
    model, guide = linear_parts(classifier_weight)
    x = points()
    means, kl = by_hand(guide, x)
    found = label_diagnostics(model, guide, x)
    assert torch.allclose(label_posterior(guide, x).mixture().mean, means)
    assert torch.allclose(torch.tensor(found["kl_per_dimension"], dtype=torch.float64), kl)
    assert found["kl"] == pytest.approx(kl.sum().item())
    assert found["active_units"] == active == int((means.var(0) > 0.01).sum())
    assert kl[1] > 0.1 and abs(kl[2]) < 1e-5


def quadrature_posterior() -> LabelPosterior:
    """Three points, two classes, z ∈ R¹: q(y|x_n) and q(z|x_n, y) = N(m_ny, s_ny²)."""
    probs = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    loc = torch.tensor([[-2.0, 1.0], [0.5, -0.5], [1.5, 0.0]])
    scale = torch.tensor([[0.5, 0.8], [1.0, 0.4], [0.3, 0.6]])
    return LabelPosterior(probs, dist.Normal(loc.unsqueeze(-1), scale.unsqueeze(-1)).to_event(1))


def test_the_three_way_surgery_matches_quadrature_over_z():
    """I(x; z), I(y; z | x) and KL(q(z) ‖ p(z)) by the rectangle rule on a fine grid, against
    the Monte Carlo estimates within K_SE standard errors (each integrand's variance under its
    own sampling distribution, by the same quadrature); the KL term is exact, and the three add
    up to it."""
    posterior, samples = quadrature_posterior(), 4000
    grid = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    h = (grid[1] - grid[0]).item()
    probs = posterior.probs.double()
    base = posterior.given_label.base_dist
    log_given = torch.distributions.Normal(base.loc.double(), base.scale.double()).log_prob(grid)
    log_point = (probs.log().unsqueeze(-1) + log_given).logsumexp(1)            # (N, G)
    log_aggregate = log_point.logsumexp(0) - math.log(3)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(grid)

    def moments(log_density, integrand):
        """E and Var of ``integrand`` under each density on the grid (leading shapes)."""
        weight = log_density.exp() * h
        mean = (weight * integrand).sum(-1)
        return mean, (weight * integrand ** 2).sum(-1) - mean ** 2

    information, variance = moments(log_point, log_point - log_aggregate)                # (N,)
    info_se = math.sqrt(variance.sum().item() / 9 / samples)
    given, given_var = moments(log_given, log_given - log_point.unsqueeze(1))            # (N, C)
    label = (probs * given).sum(-1).mean().item()
    label_se = math.sqrt((probs ** 2 * given_var).sum().item() / 9 / samples)
    kl_term = (probs * moments(log_given, log_given - log_p)[0]).sum(-1).mean().item()
    marginal = moments(log_aggregate, log_aggregate - log_p)[0].item()
    assert kl_term == pytest.approx(information.mean().item() + label + marginal, abs=1e-4)
    prior = dist.Normal(torch.zeros(()), torch.ones(())).expand([1]).to_event(1)
    torch.manual_seed(0)
    found = label_surgery(posterior, prior, num_samples=samples)
    assert 0.2 < information.mean().item() < math.log(3) and 0.1 < label < math.log(2)
    assert found["kl"] == pytest.approx(kl_term, abs=1e-4)
    assert abs(found["mutual_information"] - information.mean().item()) < K_SE * info_se
    assert abs(found["label_information"] - label) < K_SE * label_se
    assert abs(found["marginal_kl"] - marginal) < K_SE * math.hypot(info_se, label_se)


def test_only_a_class_beside_a_continuous_z_has_them():
    assert label_collapse_applies(build("ssvae", data_dim=D, num_classes=C).model)
    assert not label_collapse_applies(build("vae", "normal", data_dim=D, latent_dim=2).model)
    assert not label_collapse_applies(build("hvae", "chain", data_dim=D,
                                            latent_dims=(2, 2)).model)


@pytest.mark.slow
def test_an_ssvae_run_reports_the_units_kl_and_surgery_of_z(quick_config, capsys):
    """Every epoch records them, the summary's KL per unit sums to its KL term (the same seeded
    pass), the surgery's parts add up to it and lie in their ranges, the figure is drawn, and
    the printed summary names the KL given the class."""
    from experiments.train import print_summary

    result = run(quick_config(model="ssvae", labels=50, epochs=1, latent_dim=4))
    s = result.summary
    assert 0 <= s["test_active_units"] <= 4 and len(s["kl_per_dimension"]) == 4
    assert sum(s["kl_per_dimension"]) == pytest.approx(s["test_kl_to_prior"], rel=1e-5)
    assert s["test_kl_to_prior"] == pytest.approx(
        s["test_mutual_information"] + s["test_label_information"] + s["test_marginal_kl"])
    assert 0 <= s["test_mutual_information"] <= math.log(100) + 0.1
    assert -0.1 <= s["test_label_information"] <= math.log(10) + 0.1
    header = (result.run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "test_label_information" in header and "test_marginal_kl" in header
    assert (result.run_dir / "kl_per_dimension.png").read_bytes()[:4] == b"\x89PNG"
    print_summary(result)
    out = capsys.readouterr().out
    assert " of 4: Cov_x" in out and "KL(q(z|x,y) ‖ p(z))" in out and "I(y; z | x)" in out
