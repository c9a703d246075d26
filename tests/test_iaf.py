"""The amortized IAF guide: log q(z|x) against the flow's log-determinant computed by hand, its
transforms changing with x, and a run that trains, resumes and is scored by AIS."""
import math

import pytest
import torch
from pyro import poutine

from experiments.evaluation.ais import ais_estimate
from experiments.parts.build import build
from experiments.training.end_to_end import run
from guides.iaf import IAFGuide


@pytest.fixture
def parts():
    return build("vae", "iaf", data_dim=6, latent_dim=3, hidden_dims=(16,), flow_layers=3)


def by_hand(guide: IAFGuide, x: torch.Tensor, z0: torch.Tensor):
    """z_T and log q(z_T|x) = log N(z₀ | μ, σ²) − Σ_t Σ_j log σ_tj, pushing z₀ through each
    MADE network by hand: z_t = exp(log σ_t) z_{t−1} + μ_t, with Pyro's clamp of log σ_t."""
    out = guide.encoder(x)
    d = guide.site.size
    loc, scale = out[:, :d], torch.nn.functional.softplus(out[:, d:2 * d])
    context = out[:, 2 * d:]
    log_q = torch.distributions.Normal(loc, scale).log_prob(z0).sum(-1)
    z = z0
    for conditional in guide.flows:
        mean, log_scale = conditional.nn(z, context=context)
        log_scale = log_scale.clamp(-5.0, 3.0)
        z = torch.exp(log_scale) * z + mean
        log_q = log_q - log_scale.sum(-1)
    return z, log_q


def test_log_q_is_the_base_density_minus_the_log_determinants(parts):
    guide, x = parts.guide, torch.rand(5, 6)
    z0 = torch.randn(5, 3)
    z, expected = by_hand(guide, x, z0)
    with torch.no_grad():
        assert torch.allclose(guide.posterior(x).log_prob(z), expected, atol=1e-4)
    # the sample site's own log-density is this one at the guide's draw
    trace = poutine.trace(guide).get_trace(x)
    site = trace.nodes["z"]
    assert torch.allclose(site["fn"].log_prob(site["value"]),
                          guide.posterior(x).log_prob(site["value"]), atol=1e-4)


def test_the_transforms_change_with_x(parts):
    """Amortized: two inputs, the same z₀ and the same base shifted away, differ in the
    log-determinant (a shared flow would give the same one)."""
    guide = parts.guide
    with torch.no_grad():
        guide.encoder[-1].bias.zero_()
    x = torch.stack([torch.zeros(6), torch.ones(6)])
    z0 = torch.zeros(2, 3)
    z, log_q = by_hand(guide, x, z0)
    base = torch.distributions.Normal(*_loc_scale(guide, x)).log_prob(z0).sum(-1)
    log_det = base - log_q
    assert not torch.allclose(log_det[0], log_det[1], atol=1e-4)


def _loc_scale(guide, x):
    out, d = guide.encoder(x), guide.site.size
    return out[:, :d], torch.nn.functional.softplus(out[:, d:2 * d])


@pytest.mark.slow
def test_an_iaf_run_trains_resumes_and_is_scored_by_ais(quick_config):
    first = run(quick_config(guide="iaf", latent_dim=4, flow_layers=2, epochs=1))
    resumed = run(quick_config(guide="iaf", latent_dim=4, flow_layers=2, epochs=2),
                  resume=first.run_dir)
    assert resumed.summary["epochs"] == 2
    assert resumed.summary["test_iwae"] >= resumed.summary["test_elbo"] - 0.1
    parts = resumed.parts
    x = torch.rand(4, 64).bernoulli()
    estimate = ais_estimate(parts.model, parts.guide, x, num_steps=3, num_chains=2,
                            leapfrog_steps=1)
    assert math.isfinite(estimate.value)


def test_iaf_is_refused_for_one_dimension_and_with_the_closed_form_estimator():
    from experiments.common.errors import UserError
    with pytest.raises(UserError, match="latent dimension of 2 or more"):
        build("vae", "iaf", data_dim=6, latent_dim=1)
    with pytest.raises(UserError, match="meanfield needs KL"):
        build("vae", "iaf", "meanfield", data_dim=6, latent_dim=3)


def test_training_scores_the_drawn_z_without_inverting_the_flow(parts, monkeypatch):
    """The transforms cache the z they drew: the ELBO's log q(z|x) must read it, not run the
    inverse (d sequential passes of every network, and a Python read that stops recording)."""
    from pyro.distributions.transforms import AffineAutoregressive
    from pyro.infer import Trace_ELBO

    def refuse(self, y):
        raise AssertionError("the flow was inverted")

    monkeypatch.setattr(AffineAutoregressive, "_inverse", refuse)
    x = torch.rand(5, 6).bernoulli()
    assert math.isfinite(Trace_ELBO(num_particles=3, vectorize_particles=True).loss(
        parts.model, parts.guide, x))
