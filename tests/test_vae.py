"""The VAE model and the normal guide: Pyro sites, shapes, and the minibatch scaling."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.util import torch_item
from torch.fx.experimental.proxy_tensor import make_fx

from guides import GUIDES
from models import MODELS
from models.likelihoods import LIKELIHOODS, BernoulliVector, SoftplusSum, dot


def make_pair(likelihood="bernoulli", data_dim=12, latent_dim=3):
    model = MODELS["vae"](data_dim=data_dim, latent_dim=latent_dim, hidden_dims=(16, 8),
                          likelihood=likelihood)
    return model, GUIDES["normal"](model, hidden_dims=(16, 8))


@pytest.mark.parametrize("likelihood", list(LIKELIHOODS))
def test_guide_mirrors_model_sites_and_shapes(likelihood):
    model, guide = make_pair(likelihood)
    x = torch.rand(5, 12)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    latent = lambda trace: [n for n in trace.stochastic_nodes if n != "data"]
    assert latent(guide_trace) == latent(model_trace) == ["z"]
    assert model_trace.observation_nodes == ["x"]
    assert guide_trace.nodes["z"]["value"].shape == (5, 3)
    assert model_trace.nodes["z"]["fn"].event_shape == (3,)
    assert model_trace.nodes["x"]["fn"].event_shape == (12,)
    assert guide_trace.nodes["z"]["fn"].has_rsample


def test_model_and_guide_parameters_never_share_names():
    model, guide = make_pair("gaussian")
    x = torch.rand(4, 12)
    with poutine.trace(param_only=True) as tr:
        Trace_ELBO().loss(model, guide, x)
    names = list(tr.trace.nodes)
    assert any(n.startswith("model.") for n in names) and any(n.startswith("guide.") for n in names)
    assert all(n.startswith(("model.", "guide.")) for n in names)
    assert "model.likelihood.scale" in names      # the Gaussian's learned σ is a parameter


def test_minibatch_objective_is_scaled_to_the_full_data_set():
    """With index and num_data = N, log-densities are scaled by N / B: the loss of a minibatch
    of B equals (N / B) times its unscaled loss for the same draws of z."""
    model, guide = make_pair()
    x = torch.rand(4, 12).bernoulli()
    index = torch.tensor([3, 17, 42, 99])
    pyro.set_rng_seed(1)
    unscaled = torch_item(Trace_ELBO().loss(model, guide, x))
    pyro.set_rng_seed(1)
    scaled = torch_item(Trace_ELBO().loss(model, guide, x, index, 100))
    assert scaled == pytest.approx(100 / 4 * unscaled, rel=1e-5)


def test_elbo_matches_a_plain_pytorch_single_sample_estimate():
    """Pyro's one-sample ELBO is log p(x|z) + log p(z) − log q(z|x) at the guide's draw z,
    with log p(z) computed independently of the model's code."""
    model, guide = make_pair()
    x = torch.rand(6, 12).bernoulli()
    pyro.set_rng_seed(3)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    q = guide.posterior(x)
    log_px_z = model_trace.nodes["x"]["fn"].log_prob(x)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    single_sample_elbo = log_px_z + log_pz - q.log_prob(z)
    pyro.set_rng_seed(3)
    pyro_elbo = -Trace_ELBO().loss(model, guide, x)
    assert pyro_elbo == pytest.approx(single_sample_elbo.sum().item(), rel=1e-5)


def test_the_bernoulli_likelihood_is_torchs_bernoulli_summed_first():
    """``BernoulliVector`` sums −BCE over pixels before its sign: the log-density and its
    gradient of ``Bernoulli(logits).to_event(1)``, under broadcasting, masks and ``expand``."""
    logits = torch.randn(4, 6, 10, requires_grad=True)           # (K, B, D)
    x = torch.rand(6, 10).bernoulli()
    ours, torchs = BernoulliVector(logits), dist.Bernoulli(logits=logits).to_event(1)
    assert (ours.batch_shape, ours.event_shape) == (torchs.batch_shape, torchs.event_shape)
    torch.testing.assert_close(ours.log_prob(x), torchs.log_prob(x))
    (g_ours,) = torch.autograd.grad(ours.log_prob(x).sum(), logits)
    (g_torch,) = torch.autograd.grad(torchs.log_prob(x).sum(), logits)
    torch.testing.assert_close(g_ours, g_torch)
    mask = torch.rand(4, 6) > 0.5
    torch.testing.assert_close(ours.mask(mask).log_prob(x), torchs.mask(mask).log_prob(x))
    wide = BernoulliVector(logits[0]).expand((3, 6))
    assert wide.batch_shape == (3, 6)
    torch.testing.assert_close(wide.log_prob(x), torchs.log_prob(x)[0].expand(3, 6))


#: (shape of a, shape of b, whether broadcasting shares an operand among rows of the other)
DOT_CASES = [((6, 10), (6, 10), False),       # a step's logits against its minibatch
             ((1, 6, 10), (6, 10), False),    # the same, one particle
             ((4, 6, 10), (6, 10), True),     # K particles against the minibatch
             ((3, 10), (3, 1, 10), True)]     # log_prob_pairs: every out_g against every x_i


@pytest.mark.parametrize("a_shape, b_shape, shared", DOT_CASES)
def test_the_likelihoods_dot_product_is_float32_rounding_of_the_exact_sum(a_shape, b_shape,
                                                                         shared):
    """Σ_j a_j b_j against float64, within the rounding bound of a float32 sum of D products,
    γ_D Σ_j |a_j b_j| with γ_D = D u / (1 − D u), u = 2⁻²⁴, on both of ``dot``'s paths."""
    a, b = torch.randn(a_shape), torch.randn(b_shape)
    exact = (a.double() * b.double()).sum(-1)
    d, u = a.shape[-1], 2.0 ** -24
    bound = d * u / (1 - d * u) * (a.double() * b.double()).abs().sum(-1)
    got = dot(a, b)
    assert got.shape == exact.shape
    assert ((got.double() - exact).abs() <= bound).all()


@pytest.mark.parametrize("a_shape, b_shape, shared", DOT_CASES)
def test_the_likelihoods_dot_product_is_a_matrix_product_only_where_an_operand_is_shared(
        a_shape, b_shape, shared):
    """``einsum`` makes one matrix product per row pair, a kernel call each, where the operands
    share nothing (B calls of 1 × D by D × 1: 0.7 ms of a 7 ms step at B = 128, D = 784), and
    one product over the shared operand where broadcasting repeats one (K particles, pairs)."""
    program = make_fx(dot)(torch.randn(a_shape), torch.randn(b_shape))
    targets = {n.target for n in program.graph.nodes if n.op == "call_function"}
    products = {torch.ops.aten.bmm.default, torch.ops.aten.mm.default}
    assert bool(targets & products) == shared


def test_softplus_sum_is_exact_and_differentiable_at_every_scale():
    """Σ_j log(1 + e^{l_j}) against float64 softplus, for logits from −200 to 200 (where
    log(1 + e^l) over- or underflows if computed as written), and its gradient by gradcheck."""
    logits = torch.tensor([[-200.0, -90.0, -30.0, -1.0, 0.0, 1.0, 30.0, 90.0, 200.0]])
    exact = torch.nn.functional.softplus(logits.double()).sum(-1)
    torch.testing.assert_close(SoftplusSum.apply(logits).double(), exact, rtol=1e-6, atol=1e-6)
    wide = (10 * torch.randn(3, 4, 5, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(SoftplusSum.apply, (wide,))
