"""The semi-supervised VAE (M2) and its guides, against bounds written out by hand in plain torch.

A minibatch of B = 8 of N = 12 points, some labeled (y ≥ 0) and some not (y = −1), in float64.
The unlabeled bound with y enumerated in the guide is

    U(x) = Σ_y q(y|x) [log p(y) + log p(z_y) + log p(x|y, z_y) − log q(y|x) − log q(z_y|x, y)],

one z_y ~ q(z|x, y) per class; the labeled bound is L(x, y) = log p(y) + log p(z) + log p(x|y, z)
− log q(z|x, y) at the label; the auxiliary term adds α log q(y|x) on labeled rows; the loss is
−(N/B) times the minibatch's sum. The hand versions read only the networks (classifier,
encoder, decoder), not the model's or guide's Pyro code, and reuse the guide's draws of z
through their noise ε = (z − μ) / σ, so that gradients can be compared too.
"""
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from torch.distributions import Bernoulli, Normal
from torch.nn.functional import one_hot, softplus

from guides.m2 import M2EnumGuide, M2Guide
from models.ssvae import SSVAE
from models.vae import VAE

N, B, D, C, LATENT = 12, 8, 5, 3, 2
INDEX = torch.tensor([0, 2, 3, 5, 7, 8, 10, 11])
LABELS = torch.tensor([1, -1, 0, -1, -1, 2, 1, -1])     # the minibatch's labels, −1: unlabeled
SCALE = N / B


def parts(guide_class=M2EnumGuide, aux_weight=0.0, latent_dim=LATENT):
    model = SSVAE(D, latent_dim=latent_dim, hidden_dims=(6,), num_classes=C).double()
    guide = guide_class(model, hidden_dims=(6,), aux_weight=aux_weight).double()
    return model, guide


def data():
    generator = torch.Generator().manual_seed(5)
    return torch.rand(N, D, generator=generator, dtype=torch.float64).bernoulli()[INDEX]


def recording(guide, draws: dict):
    """The guide, storing the value of every site it samples in ``draws``."""
    def run(*args, **kwargs):
        with poutine.trace() as tape:
            guide(*args, **kwargs)
        draws.update({name: site["value"] for name, site in tape.trace.nodes.items()
                      if site["type"] == "sample" and not site["is_observed"]})
    return run


def q_z(guide, x, y):
    """(μ, σ) of q(z|x, y) from the encoder, y a tensor of classes broadcasting with x's rows."""
    onehot = one_hot(y, C).double().expand(*x.shape[:-1], C)
    loc, raw = guide.encoder(torch.cat([x, onehot], -1)).chunk(2, -1)
    return loc, softplus(raw) + 1e-6


def log_p(model, x, y, z):
    """log p(y) + log p(z) + log p(x|y, z), by hand from the decoder."""
    onehot = one_hot(y, C).double().expand(*z.shape[:-1], C)
    logits = model.decoder(torch.cat([z, onehot], -1))
    return (-math.log(C) + Normal(0.0, 1.0).log_prob(z).sum(-1)
            + Bernoulli(logits=logits).log_prob(x).sum(-1))


def hand_loss(model, guide, x, labels, draws, aux_weight, enumerated=True,
              scales=(SCALE, SCALE)):
    """−(N/B) [Σ_unlabeled U(x_i) + Σ_labeled (L(x_i, y_i) + α log q(y_i|x_i))], z at the
    guide's draws; with ``enumerated`` False, the one-sample bound at the guide's sampled y;
    ``scales`` (labeled, unlabeled) in place of N/B for each group's sum."""
    known = labels >= 0
    total = 0.0
    x_u, x_l, y_l = x[~known], x[known], labels[known]
    log_q_y = guide.classifier(x_u).log_softmax(-1)                                 # (Bu, C)
    classes = range(C) if enumerated else [None]
    for c in classes:
        y = torch.full((len(x_u),), c) if enumerated else draws["y"]
        loc, scale = q_z(guide, x_u, y)
        z_drawn = draws["z"][c] if enumerated else draws["z"]
        eps = ((z_drawn - loc) / scale).detach()
        z = loc + scale * eps
        log_q = log_q_y.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        bound = log_p(model, x_u, y, z) - log_q - Normal(loc, scale).log_prob(z).sum(-1)
        total = total + ((log_q.exp() if enumerated else 1.0) * bound).sum()
    loc, scale = q_z(guide, x_l, y_l)
    z = loc + scale * ((draws["z_labeled"] - loc) / scale).detach()
    labeled = (log_p(model, x_l, y_l, z) - Normal(loc, scale).log_prob(z).sum(-1)).sum()
    log_q_labels = guide.classifier(x_l).log_softmax(-1).gather(-1, y_l.unsqueeze(-1)).sum()
    return -scales[1] * total - scales[0] * (labeled + aux_weight * log_q_labels)


def gradients(loss, modules):
    params = [p for m in modules for p in m.parameters()]
    return torch.autograd.grad(loss, params, allow_unused=True)


def test_sites_and_shapes_of_the_labeled_and_unlabeled_rows():
    model, guide = parts()
    x = data()
    enumerated = poutine.enum(guide, first_available_dim=-2)
    guide_trace = poutine.trace(enumerated).get_trace(x, INDEX, N, LABELS)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
        x, INDEX, N, LABELS)
    unlabeled, labeled = int((LABELS < 0).sum()), int((LABELS >= 0).sum())
    assert guide_trace.nodes["y"]["value"].shape == (C, 1)                  # enumerated
    assert guide_trace.nodes["z"]["value"].shape == (C, unlabeled, LATENT)
    assert guide_trace.nodes["z_labeled"]["value"].shape == (labeled, LATENT)
    assert model_trace.nodes["y_labeled"]["is_observed"]
    assert torch.equal(model_trace.nodes["y_labeled"]["value"], LABELS[LABELS >= 0])
    assert torch.equal(model_trace.nodes["x"]["value"], x[LABELS < 0])
    assert torch.equal(model_trace.nodes["x_labeled"]["value"], x[LABELS >= 0])
    for site in ("y", "z", "x", "z_labeled", "y_labeled", "x_labeled"):    # every row scaled N/B
        assert model_trace.nodes[site]["scale"] == pytest.approx(SCALE)
    probs = guide.classify(x)
    assert probs.shape == (B, C) and torch.allclose(probs.sum(-1), torch.ones(B, dtype=x.dtype))
    assert model.decode(torch.zeros(4, LATENT, dtype=x.dtype), torch.arange(4) % C).shape == (4, D)


def test_enumerated_loss_and_gradients_equal_the_sum_over_y_by_hand():
    model, guide = parts(aux_weight=3.0)
    x, draws = data(), {}
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        model, recording(guide, draws), x, INDEX, N, LABELS)
    assert torch.equal(draws["y"], torch.arange(C).reshape(C, 1))
    expected = hand_loss(model, guide, x, LABELS, draws, aux_weight=3.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    for got, want in zip(gradients(loss, [model, guide]), gradients(expected, [model, guide])):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_labeled_rows_drawn_apart_count_for_their_own_share_of_the_data():
    """``num_labeled`` = 5 of the N = 12 points: the minibatch's 4 labeled rows stand for 5
    points (scale 5/4), its 4 unlabeled rows for the other 7 (scale 7/4), the auxiliary term
    too; with the sum over groups still an unbiased estimate of the data set's."""
    model, guide = parts(aux_weight=3.0)
    x, draws = data(), {}
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        model, recording(guide, draws), x, INDEX, N, LABELS, num_labeled=5)
    expected = hand_loss(model, guide, x, LABELS, draws, aux_weight=3.0, scales=(5 / 4, 7 / 4))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    mixed = hand_loss(model, guide, x, LABELS, draws, aux_weight=3.0)
    assert abs(mixed.item() - expected.item()) > 1e-3       # the scales tell the two apart
    for got, want in zip(gradients(loss, [model, guide]), gradients(expected, [model, guide])):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_sampled_loss_equals_the_one_sample_bound_at_the_sampled_y():
    model, guide = parts(M2Guide, aux_weight=3.0)
    x, draws = data(), {}
    loss = Trace_ELBO().loss(model, recording(guide, draws), x, INDEX, N, LABELS)
    expected = hand_loss(model, guide, x, LABELS, draws, aux_weight=3.0, enumerated=False)
    assert loss == pytest.approx(expected.item(), rel=1e-10)


def test_labeled_rows_observe_their_label_and_unlabeled_rows_sum_over_it():
    model, guide = parts()
    x, elbo = data(), TraceEnum_ELBO(max_plate_nesting=1)

    def loss(labels):
        pyro.set_rng_seed(1)
        return elbo.loss(model, guide, x, INDEX, N, labels)

    none_known = torch.full_like(LABELS, -1)
    assert loss(none_known) == pytest.approx(loss(None), rel=1e-12)
    relabeled = LABELS.clone()
    relabeled[0] = (LABELS[0] + 1) % C                 # a labeled row's label matters …
    assert abs(loss(relabeled) - loss(LABELS)) > 1e-3
    draws_a, draws_b = {}, {}                          # … an unlabeled row's does not exist
    pyro.set_rng_seed(1)
    elbo.loss(model, recording(guide, draws_a), x, INDEX, N, LABELS)
    assert draws_a["z"].shape[1] == int((LABELS < 0).sum())
    pyro.set_rng_seed(1)
    elbo.loss(model, recording(guide, draws_b), x, INDEX, N, None)
    assert draws_b["z"].shape[1] == B and "z_labeled" not in draws_b


@pytest.mark.parametrize("aux_weight", [0.0, 46.0])
def test_auxiliary_term_gives_the_classifier_alpha_times_the_gradient_of_log_q(aux_weight):
    """On labeled rows the ELBO does not involve q(y|x): the classifier's whole gradient is the
    auxiliary term's, −α (N/B) ∇ Σ_i log q(y_i|x_i)."""
    model, guide = parts(M2Guide, aux_weight=aux_weight)
    x, labels = data(), LABELS.clamp(min=0)
    loss = Trace_ELBO().differentiable_loss(model, guide, x, INDEX, N, labels)
    got = gradients(loss, [guide.classifier])
    log_q = guide.classifier(x).log_softmax(-1).gather(-1, labels.unsqueeze(-1)).sum()
    want = gradients(-aux_weight * SCALE * log_q, [guide.classifier])
    for g, w in zip(got, want):
        torch.testing.assert_close(g if g is not None else torch.zeros_like(w), w,
                                   rtol=1e-8, atol=1e-12)
    assert (aux_weight == 0) == all(g is None or not g.any() for g in got)


def test_sampled_y_is_unbiased_for_the_enumerated_objective():
    """E[Trace_ELBO loss] with y ~ q(y|x) equals E[TraceEnum_ELBO loss] (both draw z): their
    means over R repetitions of K vectorized particles differ by less than 4 standard errors."""
    model, sampled = parts(M2Guide, aux_weight=2.0)
    enumerated = M2EnumGuide(model, hidden_dims=(6,), aux_weight=2.0).double()
    enumerated.load_state_dict(sampled.state_dict())
    x, repeats, k = data(), 40, 50
    estimates = {}
    for name, guide, elbo in (
            ("trace", sampled, Trace_ELBO(num_particles=k, vectorize_particles=True,
                                          max_plate_nesting=1)),
            ("enum", enumerated, TraceEnum_ELBO(num_particles=k, vectorize_particles=True,
                                                max_plate_nesting=1))):
        losses = torch.tensor([elbo.loss(model, guide, x, INDEX, N, LABELS)
                               for _ in range(repeats)])
        estimates[name] = (losses.mean(), losses.std() / math.sqrt(repeats))
    (m_t, se_t), (m_e, se_e) = estimates["trace"], estimates["enum"]
    standard_error = math.sqrt(se_t ** 2 + se_e ** 2)
    assert abs(m_t - m_e) < 4 * standard_error
    # power: leaving out the entropy of q(y|x) (the −log q(y|x) of unlabeled rows) moves the
    # objective by (N/B) Σ H[q(y|x_i)], many standard errors
    with torch.no_grad():
        entropy = torch.distributions.Categorical(
            logits=sampled.classifier(x[LABELS < 0])).entropy().sum() * SCALE
    assert entropy > 10 * standard_error


def test_the_project_iwae_sums_y_out_of_log_p_x():
    """experiments.evaluation.likelihood's importance weights for ssvae, y and z both drawn from
    the guide, average to p(x) = Σ_y ∫ p(x, y, z) dz, computed here by quadrature for d = 1:
    E[w / p(x)] = 1 within 4 standard errors; its test ELBO (y enumerated) lies below
    log p(x)."""
    from experiments.evaluation.likelihood import log_importance_weights, mean_elbo

    model, guide = parts(M2EnumGuide, latent_dim=1)
    x = data()
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64).unsqueeze(-1)          # (G, 1)
    h = (grid[1] - grid[0]).item()
    with torch.no_grad():
        log_joint = torch.stack([log_p(model, x.unsqueeze(-2), torch.tensor(c), grid)
                                 for c in range(C)])                                # (C, B, G)
        exact = log_joint.logsumexp(-1).logsumexp(0) + math.log(h)                     # (B,)
        assert torch.allclose(model.log_joint(x.unsqueeze(-2), torch.tensor(1), grid),
                              log_joint[1])
        ratio = (log_importance_weights(model, guide, x, 4000) - exact).exp()        # (K, B)
    stderr = ratio.std() / math.sqrt(ratio.numel())
    assert abs(ratio.mean().item() - 1.0) < 4 * stderr
    assert stderr < 0.05                     # power: a ratio off by 20% would be caught
    assert mean_elbo(model, guide, x) < exact.mean().item()


def test_refusals():
    with pytest.raises(ValueError, match="2 classes"):
        SSVAE(D, num_classes=1)
    model, _ = parts()
    with pytest.raises(ValueError, match="at least 0"):
        M2Guide(model, aux_weight=-1.0)
    with pytest.raises(ValueError, match="one label per row"):
        poutine.trace(model).get_trace(data(), INDEX, N, LABELS[:3])
    with pytest.raises(ValueError, match="index"):
        poutine.trace(model).get_trace(data(), None, N)
    assert "a label y" in M2Guide.fit_error(VAE(D))
    assert M2Guide.fit_error(SSVAE(D)) is None
