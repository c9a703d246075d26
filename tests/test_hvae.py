"""The two-layer hvae and the chain guide: sites, what the compatibility rules allow, and every
estimator's loss and gradients against the bounds written out in plain PyTorch.

The references below never call the model's or the guide's code: they read the networks'
weights and recompute

    log w_ik = log p(x_i|z₁) + log N(z₁ | μ_θ(z₂), σ_θ(z₂)²) + log N(z₂ | 0, I)
               − log N(z₁ | μ_φ(x_i), σ_φ(x_i)²) − log N(z₂ | μ_φ(z₁), σ_φ(z₁)²)

at z₁ = μ_φ(x_i) + σ_φ(x_i) ε₁, z₂ = μ_φ(z₁) + σ_φ(z₁) ε₂, the draws ε read back from the guide,
in float64, on a minibatch of B = 5 of N = 20 points with K = 4 particles.
"""
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from torch.nn.functional import softplus

from experiments.common.errors import UserError
from experiments.estimators import ELBOS
from experiments.evaluation.bounds import elbo_terms, importance_weights
from experiments.evaluation.likelihood import iwae_log_likelihood
from experiments.parts.build import build
from experiments.parts.compatibility import check_combination, matrix
from experiments.training.end_to_end import run
from guides import GUIDES
from models import MODELS

N, B, K, D = 20, 5, 4, 6
D1, D2 = 3, 2
ALPHA = 0.5
SCALE = N / B


def make_pair(likelihood="bernoulli", hidden_dims=(5, 4)):
    model = MODELS["hvae"](data_dim=D, latent_dims=(D1, D2), hidden_dims=hidden_dims,
                           likelihood=likelihood).double()
    return model, GUIDES["chain"](model, hidden_dims=hidden_dims).double()


def data():
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(N, D, generator=generator, dtype=torch.float64).round()
    return x, torch.randperm(N, generator=generator)[:B]


# --- the densities by hand -----------------------------------------------------------------

def dense(params, prefix, h):
    """The MLP ``prefix`` (Linear layers ``prefix.0``, ``prefix.2``, …, ReLU between) on h."""
    layers = sorted(int(k[len(prefix) + 1:].split(".")[0]) for k in params
                    if k.startswith(prefix + ".") and k.endswith(".weight"))
    for j, i in enumerate(layers):
        h = h @ params[f"{prefix}.{i}.weight"].T + params[f"{prefix}.{i}.bias"]
        h = h.relu() if j < len(layers) - 1 else h
    return h


def gaussian(out):
    loc, raw = out.chunk(2, dim=-1)
    return loc, softplus(raw) + 1e-6


def normal_log_density(value, loc, scale):
    return (-0.5 * ((value - loc) / scale) ** 2 - torch.log(scale)
            - 0.5 * math.log(2 * math.pi)).sum(-1)


def log_p(pm, x, z1, z2, sigma=None):
    """log p(x, z₁, z₂): Bernoulli logits, or a Gaussian of scale ``sigma``."""
    out = dense(pm, "decoder", z1)
    if sigma is None:
        log_lik = (x * out - softplus(out)).sum(-1)
    else:
        log_lik = normal_log_density(x, out, sigma * torch.ones_like(out))
    z1_loc, z1_scale = gaussian(dense(pm, "z1_decoder", z2))
    return (log_lik + normal_log_density(z1, z1_loc, z1_scale)
            + normal_log_density(z2, torch.zeros(()), torch.ones(())))


def log_q(pg, x, z1, z2):
    """log q(z₁|x) + log q(z₂|z₁)."""
    return (normal_log_density(z1, *gaussian(dense(pg, "encoder", x)))
            + normal_log_density(z2, *gaussian(dense(pg, "chain.0", z1))))


def reparameterize(pg, x, eps1, eps2):
    loc1, scale1 = gaussian(dense(pg, "encoder", x))
    z1 = loc1 + scale1 * eps1
    loc2, scale2 = gaussian(dense(pg, "chain.0", z1))
    return z1, loc2 + scale2 * eps2


def noise(pg, x, z1, z2):
    """(ε₁, ε₂) such that ``reparameterize`` gives back (z₁, z₂)."""
    loc1, scale1 = gaussian(dense(pg, "encoder", x))
    loc2, scale2 = gaussian(dense(pg, "chain.0", z1))
    return (z1 - loc1) / scale1, (z2 - loc2) / scale2


def leaves(module):
    return {n: p.detach().clone().requires_grad_() for n, p in module.named_parameters()}


# --- sites and declarations ----------------------------------------------------------------

def test_guide_mirrors_model_sites_in_one_data_plate():
    model, guide = make_pair()
    x, _ = data()
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    latent = lambda trace: [n for n in trace.stochastic_nodes if n != "data"]
    assert latent(guide_trace) == ["z1", "z2"] and latent(model_trace) == ["z2", "z1"]
    assert model_trace.observation_nodes == ["x"]
    for name, size in (("z1", D1), ("z2", D2)):
        for trace in (guide_trace, model_trace):
            site = trace.nodes[name]
            assert site["value"].shape == (N, size) and site["fn"].event_shape == (size,)
            assert [f.name for f in site["cond_indep_stack"]] == ["data"]
        assert guide_trace.nodes[name]["fn"].has_rsample
    assert model_trace.nodes["x"]["fn"].event_shape == (D,)
    assert list(model.latent_sites) == ["z1", "z2"]
    assert not any(s.discrete for s in model.latent_sites.values())


def test_hvae_takes_the_chain_guide_with_the_estimators_the_issue_names():
    allowed = {(r["guide"], r["elbo"]) for r in matrix(latent_dim=2, hidden_dims=(8,))
               if r["model"] == "hvae" and r["ok"]}
    assert allowed == {("chain", e) for e in ("trace", "tracegraph", "iwae", "renyi",
                                              "tail-adaptive", "score-function", "stl", "dreg")}
    assert GUIDES["normal"].fit_error(make_pair()[0]) == (
        "it covers one continuous latent site, and the model has 2: continuous z1 ∈ R^3; "
        "continuous z2 ∈ R^2")
    with pytest.raises(ValueError, match="it covers one continuous latent site"):
        GUIDES["normal"](make_pair()[0])
    with pytest.raises(UserError, match="meanfield needs KL.*with --guide chain: --elbo trace"):
        check_combination("hvae", "chain", "meanfield")
    assert GUIDES["chain"].fit_error(MODELS["vae"](data_dim=4)) is None
    assert "continuous latent sites only" in GUIDES["chain"].fit_error(MODELS["gmm"](data_dim=4))


def test_latent_sizes_are_checked():
    with pytest.raises(UserError, match="^--model hvae: hvae has two latent layers.*got 5,4,3"):
        build("hvae", "chain", "trace", data_dim=4, latent_dims=(5, 4, 3))


# --- the model's densities -----------------------------------------------------------------

@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_log_joint_pairs_equal_the_densities_by_hand(likelihood):
    model, _ = make_pair(likelihood)
    x, _ = data()
    z1, z2 = torch.randn(7, D1, dtype=torch.float64), torch.randn(7, D2, dtype=torch.float64)
    sigma = model.likelihood.scale.detach() if likelihood == "gaussian" else None
    expected = log_p(dict(model.named_parameters()), x.unsqueeze(1), z1, z2, sigma)   # (N, 7)
    assert torch.allclose(model.log_joint(x, z1, z2), expected, rtol=1e-10)


def test_ancestral_means_are_probabilities():
    model, _ = make_pair()
    means = model.ancestral_means(torch.zeros(1, dtype=torch.float64), 9)
    assert means.shape == (9, D) and 0 <= means.min() and means.max() <= 1


# --- every estimator against its bound by hand ---------------------------------------------

def lab(name, vectorize):
    """(loss, {name: gradient} of model and guide, ε₁, ε₂) from the estimator, one call."""
    model, guide = make_pair()
    x, index = data()
    draws = []

    def recording_guide(*args):
        with poutine.trace() as tape:
            guide(*args)
        z = [tape.trace.nodes[n]["value"].detach() for n in ("z1", "z2")]
        if not draws or not all(torch.equal(a, b) for a, b in zip(draws[-1], z)):
            draws.append(z)                                   # reruns at z̄ repeat a draw

    elbo = ELBOS[name](num_particles=K, vectorize_particles=vectorize, max_plate_nesting=1,
                       **({"alpha": ALPHA} if name == "renyi" else {}))
    pyro.set_rng_seed(11)
    loss = elbo.loss_and_grads(model, recording_guide, x[index], index, N)
    grads = {f"{owner}.{n}": p.grad.clone()
             for owner, module in (("model", model), ("guide", guide))
             for n, p in module.named_parameters()}
    z1 = torch.cat([d[0].reshape(-1, B, D1) for d in draws])                   # (K, B, d₁)
    z2 = torch.cat([d[1].reshape(-1, B, D2) for d in draws])
    eps = noise(dict(guide.named_parameters()), x[index], z1, z2)
    return loss, grads, [e.detach() for e in eps], (model, guide)


def reference(name, eps, modules):
    """(loss, {name: gradient}) of estimator ``name`` at the draws ε."""
    x, index = data()
    x = x[index]
    pm, pg = leaves(modules[0]), leaves(modules[1])
    pg_fixed = {n: p.detach() for n, p in pg.items()}
    z1, z2 = reparameterize(pg, x, *eps)                                      # (K, B, d)
    log_w = log_p(pm, x, z1, z2) - log_q(pg, x, z1, z2)                       # (K, B)
    path = log_p(pm, x, z1, z2) - log_q(pg_fixed, x, z1, z2)    # q's score dropped
    value = -SCALE * log_w.mean(0).sum()
    if name == "trace":
        surrogate = value
    elif name == "tail-adaptive":
        rho = (log_w.detach().argsort(0, descending=True).argsort(0) + 1.0) ** -1.0
        surrogate = -SCALE * (rho / rho.sum(0) * log_w).sum()
    elif name == "stl":
        surrogate = -SCALE * path.mean(0).sum()
    elif name == "score-function":
        z1, z2 = z1.detach(), z2.detach()
        log_q_fixed = log_q(pg, x, z1, z2)
        log_w_fixed = (log_p(pm, x, z1, z2) - log_q_fixed).detach()
        surrogate = -SCALE * (log_p(pm, x, z1, z2) + log_w_fixed * log_q_fixed).mean(0).sum()
    elif name in ("iwae", "dreg"):
        value = surrogate = -SCALE * (log_w.logsumexp(0) - math.log(K)).sum()
        if name == "dreg":
            tilde = torch.softmax(log_w.detach(), 0)
            theta = _grads(-SCALE * (tilde * log_w).sum(), pm, "model")
            phi = _grads(-SCALE * (tilde ** 2 * path).sum(), pg, "guide")
            return value.item(), {**theta, **phi}
    elif name == "renyi":
        bound = (((1 - ALPHA) * log_w).logsumexp(0) - math.log(K)) / (1 - ALPHA)
        value = surrogate = -SCALE * bound.sum()
    else:
        raise KeyError(name)
    return value.item(), {**_grads(surrogate, pm, "model"), **_grads(surrogate, pg, "guide")}


def _grads(loss, params, owner):
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True, retain_graph=True)
    return {f"{owner}.{n}": (torch.zeros_like(p) if g is None else g)
            for (n, p), g in zip(params.items(), grads)}


ESTIMATORS = ["trace", "stl", "score-function", "iwae", "renyi", "dreg", "tail-adaptive"]
SETTINGS = [(name, vectorize) for name in ESTIMATORS for vectorize in (True, False)
            if vectorize or not ELBOS[name].vectorized]


@pytest.mark.parametrize("name, vectorize", SETTINGS,
                         ids=[f"{n}-{'vectorized' if v else 'sequential'}" for n, v in SETTINGS])
def test_loss_and_gradients_equal_the_two_layer_bound_by_hand(name, vectorize):
    loss, grads, eps, modules = lab(name, vectorize)
    assert eps[0].shape == (K, B, D1) and eps[1].shape == (K, B, D2)
    expected_loss, expected = reference(name, eps, modules)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert grads.keys() == expected.keys()
    for param, grad in grads.items():
        assert torch.allclose(grad, expected[param], rtol=1e-6, atol=1e-9), param


# --- why meanfield is refused --------------------------------------------------------------

def test_meanfield_would_not_be_the_elbo():
    """Pyro's TraceMeanField_ELBO on hvae + chain computes, per particle,

        log p(x|z₁) − KL(q(z₁|x) ‖ p(z₁|z₂)) − KL(q(z₂|z₁) ‖ p(z₂)),  z₁ ~ q(z₁|x), z₂ ~ q(z₂|z₁),

    the first KL integrating z₁ out as if it were independent of the z₂ drawn from it. With
    linear maps q(z₁|x) = N(0, 1), q(z₂|z₁) = N(cz₁, 0.6²), p(z₁|z₂) = N(2z₂, σ²), σ = 0.5, its
    expectation exceeds the ELBO by E[log p(z₁'|z₂)] − E[log p(z₁|z₂)] (z₁' an independent copy)
    = −4 Cov(z₁, z₂) / (2σ²) = −4c / (2σ²) = 6.4 nats for c = −0.8: it is not the ELBO, and
    here not even below it. Checked per particle against that formula (Pyro's value), then the
    mean difference from the ELBO's particles against 6.4, within 4 standard errors."""
    model = MODELS["hvae"](data_dim=2, latent_dims=(1, 1), hidden_dims=()).double()
    guide = GUIDES["chain"](model, hidden_dims=()).double()
    inverse_softplus = lambda s: math.log(math.expm1(s - 1e-6))
    linear = {guide.encoder[0]: ([[0.0, 0.0], [0.0, 0.0]], [0.0, inverse_softplus(1.0)]),
              guide.chain[0][0]: ([[-0.8], [0.0]], [0.0, inverse_softplus(0.6)]),
              model.z1_decoder[0]: ([[2.0], [0.0]], [0.0, inverse_softplus(0.5)])}
    with torch.no_grad():
        for layer, (weight, bias) in linear.items():
            layer.weight.copy_(torch.tensor(weight)), layer.bias.copy_(torch.tensor(bias))
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    num_particles = 4000
    traced = poutine.trace(guide)
    with pyro.validation_enabled(False):                  # its warning on the sites' order
        loss = TraceMeanField_ELBO(num_particles=num_particles, vectorize_particles=True,
                                   max_plate_nesting=1).loss(model, traced, x)
    z1, z2 = (traced.trace.nodes[n]["value"].reshape(-1, 1) for n in ("z1", "z2"))   # (K, 1)

    def kl(m1, s1, m2, s2):                               # KL(N(m1, s1²) ‖ N(m2, s2²))
        return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5

    logits = model.decoder(z1).detach()
    log_lik = (x * logits - softplus(logits)).sum(-1)                                # (K,)
    meanfield = log_lik - (kl(0.0, 1.0, 2 * z2, 0.5) + kl(-0.8 * z1, 0.6, 0.0, 1.0)).sum(-1)
    assert loss == pytest.approx(-meanfield.mean().item(), rel=1e-6)
    log_density = lambda z, loc, s: normal_log_density(z, loc, torch.tensor(s))
    elbo = (log_lik + log_density(z1, 2 * z2, 0.5) + log_density(z2, 0.0, 1.0)
            - log_density(z1, 0.0, 1.0) - log_density(z2, -0.8 * z1, 0.6))
    gap = meanfield - elbo
    mean, stderr = gap.mean().item(), gap.std().item() / math.sqrt(num_particles)
    assert abs(mean - 6.4) < 4 * stderr and mean > 20 * stderr, (mean, stderr)


# --- hvae on images ------------------------------------------------------------------------

def test_a_conv_hvae_takes_iwae_steps():
    x = torch.rand(8, 1, 6, 6).round().flatten(1)
    parts = build("hvae", "chain", "iwae", data_dim=36, latent_dims=(3, 2), hidden_dims=(8,),
                  network="conv", image_shape=(1, 6, 6), num_particles=3,
                  vectorize_particles=True)
    svi = pyro.infer.SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 1e-2}), parts.elbo)
    assert all(math.isfinite(svi.step(x[:4], torch.arange(4), 8)) for _ in range(3))


# --- evaluation: every guide site in the importance weights --------------------------------

def recording(guide, calls: list, with_x: bool = False):
    """``guide``, appending to ``calls`` the (z1, z2) of each call (preceded by its x chunk)."""
    def recording_guide(x_chunk, index=None, num_data=None):
        with poutine.trace() as tape:
            guide(x_chunk, index, num_data)
        draws = [tape.trace.nodes[n]["value"] for n in ("z1", "z2")]
        calls.append((x_chunk, *draws) if with_x else draws)
    return recording_guide


def test_iwae_estimate_equals_the_two_layer_weights_by_hand():
    """``iwae_log_likelihood`` with S = 10 samples per point, taken in chunks of 4 samples (so
    its running log-sum-exp joins three calls), against log (1/S) Σ_k w_ik by hand at the
    draws the guide made, w_ik from ``log_p`` − ``log_q``: mean and standard error over the
    N = 20 points."""
    model, guide = make_pair()
    x, _ = data()
    calls = []

    mean, stderr = iwae_log_likelihood(model, recording(guide, calls, with_x=True), x, 10,
                                       chunk_elements=4)
    pm, pg = dict(model.named_parameters()), dict(guide.named_parameters())
    with torch.no_grad():
        log_w = [log_p(pm, xc, z1, z2) - log_q(pg, xc, z1, z2) for xc, z1, z2 in calls]
    assert [w.shape for w in log_w[:3]] == [(4, 1), (4, 1), (2, 1)]      # per point: 4 + 4 + 2
    per_point = torch.cat([torch.cat(log_w[3 * i:3 * i + 3]) for i in range(N)], dim=1)
    expected = per_point.logsumexp(0) - math.log(10)                                 # (N,)
    assert mean == pytest.approx(expected.mean().item(), rel=1e-10)
    assert stderr == pytest.approx(expected.std().item() / math.sqrt(N), rel=1e-8)


def test_elbo_terms_of_a_hierarchy_split_the_same_draws():
    """For the hvae, E_q[log p(x|z)] is averaged over the very draws of the log weights, and
    KL(q(z₁, z₂|x) ‖ p(z₁, z₂)) = E_q[log q − log p(z₁|z₂) − log p(z₂)] is the rest: both
    against ``log_p``/``log_q`` by hand at those draws."""
    model, guide = make_pair()
    x, _ = data()
    calls = []

    recording_guide = recording(guide, calls)
    log_w = importance_weights(model, recording_guide, x, 6)
    terms = elbo_terms(model, recording_guide, x, log_w)
    (z1, z2), again = calls
    assert torch.equal(z1, again[0]) and torch.equal(z2, again[1])   # the same draws, twice
    pm, pg = dict(model.named_parameters()), dict(guide.named_parameters())
    with torch.no_grad():
        log_joint, log_guide = log_p(pm, x, z1, z2), log_q(pg, x, z1, z2)            # (S, N)
        logits = dense(pm, "decoder", z1)
        log_lik = (x * logits - softplus(logits)).sum(-1)
    assert torch.allclose(terms["elbo"], (log_joint - log_guide).mean(0), rtol=1e-10)
    assert torch.allclose(terms["expected_log_likelihood"], log_lik.mean(0), rtol=1e-10)
    assert torch.allclose(terms["kl_prior"], (log_guide - log_joint + log_lik).mean(0),
                          rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_the_hvae_run_of_the_issue_completes_with_its_summary_and_figures(quick_config):
    """``--model hvae --guide chain --elbo iwae --num-particles 5 --vectorize-particles
    --latent-dims 8,4 --data digits``, shortened."""
    result = run(quick_config(model="hvae", guide="chain", elbo="iwae", num_particles=5,
                              vectorize_particles=True, latent_dims=(8, 4)))
    s = result.summary
    assert s["test_iwae"] >= s["test_elbo"] - 3 * s["test_iwae_point_stderr"]
    assert math.isfinite(s["test_elbo"]) and s["iwae_samples"] == 50
    for name in ("elbo.png", "reconstructions.png", "samples.png", "latent.png"):
        assert (result.run_dir / name).read_bytes()[:4] == b"\x89PNG"
    assert not (result.run_dir / "manifold.png").exists()
