"""Guides beyond the diagonal Gaussian: full covariance, flows, relaxed, local, refinement."""
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from experiments.evaluation.likelihood import mean_elbo
from experiments.evaluation.refine import EPOCH_REFIT, FINAL_REFIT, Schedule, fit_local_posterior
from experiments.parts.build import build
from experiments.parts.namespaces import local_name


def test_mvn_guide_is_a_valid_full_covariance_gaussian():
    parts = build("vae", "mvn", "trace", data_dim=6, latent_dim=3, hidden_dims=(8,))
    q = parts.guide.posterior(torch.rand(5, 6))
    cov = q.covariance_matrix                                                # (5, 3, 3)
    assert cov.shape == (5, 3, 3)
    assert torch.allclose(cov, cov.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(cov) > 0).all()
    off_diagonal = cov - torch.diag_embed(cov.diagonal(dim1=-2, dim2=-1))
    assert off_diagonal.abs().max() > 0                 # correlations are representable


def test_flow_guide_log_density_is_base_density_minus_log_jacobian():
    parts = build("vae", "flow", "trace", data_dim=6, latent_dim=3, hidden_dims=(8,),
                  flow_layers=2)
    x = torch.rand(4, 6)
    q = parts.guide.posterior(x)
    z0 = q.base_dist.sample()
    z, log_det = z0, torch.zeros(4)
    for f in q.transforms:
        z_next = f(z)
        log_det = log_det + f.log_abs_det_jacobian(z, z_next)         # event_dim 1: (batch,)
        z = z_next
    expected = q.base_dist.log_prob(z0) - log_det
    assert torch.allclose(q.log_prob(z), expected, atol=1e-4)
    assert len(list(parts.guide.flows.parameters())) > 0
    with poutine.trace(param_only=True) as tr:
        Trace_ELBO().loss(parts.model, parts.guide, x)
    assert any(local_name(name).startswith("guide.flows") for name in tr.trace.nodes)  # by SVI


def test_relaxed_guide_trains_through_hard_samples_and_scores_with_the_exact_categorical():
    parts = build("discrete-vae", "relaxed", "trace", data_dim=6, latent_dim=2, categories=3,
                  hidden_dims=(8,), temperature=0.5)
    x = torch.rand(5, 6).bernoulli()
    trace = poutine.trace(parts.guide).get_trace(x)
    z = trace.nodes["z"]["value"]
    assert z.shape == (5, 2, 3) and set(z.unique().tolist()) == {0.0, 1.0}   # hard one-hot
    assert z.sum(-1).eq(1).all() and z.requires_grad                         # with a gradient path
    scoring = poutine.trace(parts.guide.scoring_guide()).get_trace(x)
    assert isinstance(scoring.nodes["z"]["fn"].base_dist, pyro.distributions.OneHotCategorical)
    # with the exact categorical q, the test ELBO is a true bound: E_q[log w] ≤ log E_q[w]
    logits = parts.guide.logits(x)
    assert torch.allclose(scoring.nodes["z"]["fn"].base_dist.logits,
                          logits - logits.logsumexp(-1, keepdim=True), atol=1e-6)


def test_local_guide_moves_only_the_rows_of_its_minibatch():
    parts = build("vae", "local", "trace", data_dim=6, latent_dim=2, hidden_dims=(8,),
                  num_data=20)
    x = torch.rand(20, 6).bernoulli()
    svi = SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 0.1}), parts.elbo)
    before = parts.guide.loc.detach().clone()
    index = torch.tensor([2, 5, 11])
    svi.step(x[index], index, 20)
    moved = (parts.guide.loc.detach() != before).any(-1)
    assert moved.nonzero().flatten().tolist() == [2, 5, 11]
    with pytest.raises(ValueError, match="holds parameters for 20 data points"):
        parts.guide(torch.rand(7, 6), None, 7)


def test_refined_local_posterior_beats_the_encoder_and_touches_nothing_else():
    """Fitting per-point q with θ fixed can only raise the ELBO over the encoder's (it is
    the optimum of the same family): the amortization gap is ≥ 0."""
    parts = build("vae", "normal", "trace", data_dim=8, latent_dim=2, hidden_dims=(16,))
    x = torch.rand(25, 8).bernoulli()
    svi = SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 0.02}), parts.elbo)
    for _ in range(150):            # a decoder that uses z, so that q matters
        svi.step(x)
    model_state = {k: v.clone() for k, v in parts.model.state_dict().items()}
    rng = torch.get_rng_state()
    refined = fit_local_posterior(parts.model, x, steps=200, init=parts.guide)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(model_state[k], v) for k, v in parts.model.state_dict().items())
    assert all(p.grad is None or not p.grad.any() for p in parts.model.parameters())
    precise = Trace_ELBO(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
    amortized = mean_elbo(parts.model, parts.guide, x, elbo=precise)
    best = mean_elbo(parts.model, refined, x, elbo=precise)
    assert best > amortized


@pytest.mark.slow
def test_the_test_set_refit_stops_once_a_block_gains_little_and_lands_near_convergence():
    """The schedules of a local guide's test numbers: each stops long before its step budget,
    and both land within a few hundredths of a nat per point of a fit run until it stops
    moving (judged with 500 samples per point, a standard error near 0.01)."""
    parts = build("vae", "normal", "trace", data_dim=8, latent_dim=2, hidden_dims=(16,))
    x = torch.rand(40, 8).bernoulli()
    svi = SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 0.02}), parts.elbo)
    for _ in range(150):
        svi.step(x)
    precise = Trace_ELBO(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
    converged = fit_local_posterior(parts.model, x, schedule=Schedule(
        steps=3000, lr=0.05, block=100, tolerance=0.002, halvings=4))
    best = mean_elbo(parts.model, converged, x, elbo=precise)
    for schedule in (EPOCH_REFIT, FINAL_REFIT):
        fitted = fit_local_posterior(parts.model, x, schedule=schedule)
        assert fitted.steps < schedule.steps / 2 and fitted.steps % schedule.block == 0
        assert mean_elbo(parts.model, fitted, x, elbo=precise) > best - 0.05
    assert fit_local_posterior(parts.model, x, steps=30).steps == 30    # no block: fixed steps
