"""``stl`` and ``dreg``: their losses are ``trace``'s and ``iwae``'s, their gradients are unbiased,
and the variance they exist to remove is gone.

Gradients are compared on common random numbers (the same seed for both estimators), so a
difference of means is tested against the standard error of the paired differences. The
models: the small VAE with its normal guide or a flow guide; a linear-Gaussian model whose
posterior and ELBO are Gaussian integrals, where the guide keeps free parameters for each row
of x and every row is a copy of the same x₀, so that a single call returns M independent
draws of the one-data-point gradient, one per row; and a randomly subsampled toy.
"""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions.transforms import affine_autoregressive
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints, transform_to

from experiments.estimators import ELBOS
from experiments.parts.build import build
from guides.normal import NormalGuide

REFERENCE = {"stl": "trace", "dreg": "iwae"}


def gradients(elbo, model, guide, *args, differentiable: bool = False) -> dict:
    """One call of ``elbo.loss_and_grads`` (or of ``differentiable_loss(…).backward()``): the
    gradient of each unconstrained parameter, by name (the tensors SVI would step), after which
    the ``.grad`` fields are cleared."""
    with poutine.trace(param_only=True) as tape:
        if differentiable:
            elbo.differentiable_loss(model, guide, *args).backward()
        else:
            elbo.loss_and_grads(model, guide, *args)
    params = {name: site["value"].unconstrained() for name, site in tape.trace.nodes.items()}
    grads = {name: p.grad.clone() for name, p in params.items() if p.grad is not None}
    for p in params.values():
        p.grad = None
    return grads


def flat(grads: dict, prefix: str) -> torch.Tensor:
    """The gradients of the parameters named ``prefix.*`` as one vector."""
    return torch.cat([g.flatten() for name, g in sorted(grads.items()) if name.startswith(prefix)])


def assert_mean_zero(samples: torch.Tensor, alpha: float = 1e-3) -> None:
    """Each column of ``samples`` (draws × coordinates) has mean zero, by a two-sided z-test at
    level ``alpha`` for all columns together (Bonferroni); a column that is zero in every draw
    passes."""
    num_draws, num_coords = samples.shape
    limit = dist.Normal(0.0, 1.0).icdf(torch.tensor(1 - alpha / (2 * num_coords))).item()
    mean, stderr = samples.mean(0), samples.std(0) / math.sqrt(num_draws)
    excess = mean.abs() - limit * stderr
    worst = excess.argmax()
    assert excess[worst] <= 1e-6 * samples.abs().max(), \
        (f"coordinate {worst}: mean {mean[worst]:.3g} is {mean[worst].abs() / stderr[worst]:.1f} "
         f"standard errors from zero (limit {limit:.1f})")


# --- the small VAE, with its normal guide or a flow ---------------------------------------------

DATA_DIM, LATENT_DIM, HIDDEN = 6, 2, (8,)


def vae(elbo: str, num_particles: int = 1, vectorize_particles: bool = False):
    return build("vae", "normal", elbo, data_dim=DATA_DIM, latent_dim=LATENT_DIM,
                 hidden_dims=HIDDEN, num_particles=num_particles,
                 vectorize_particles=vectorize_particles)


class FlowGuide(NormalGuide):
    """The normal guide's N(μ(x), σ(x)²) pushed through an inverse autoregressive transform:
    Pyro scores its samples through the transform's cache, its other points by inversion."""

    def __init__(self, model):
        super().__init__(model, hidden_dims=HIDDEN)
        self.iaf = affine_autoregressive(LATENT_DIM, hidden_dims=[8])

    def posterior(self, x):
        return dist.TransformedDistribution(super().posterior(x), [self.iaf])


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(4, DATA_DIM).bernoulli()


def paired_vae_gradients(name: str, reference: str, x, num_draws: int, flow: bool, **options):
    """``num_draws`` gradients of ``name`` and of ``reference`` at the same parameters, each
    pair on the same random draws: two dicts of (num_draws, n) tensors keyed by "model", "guide"."""
    parts = vae(name, **options)
    guide = FlowGuide(parts.model) if flow else parts.guide
    other = vae(reference, **options).elbo
    draws = {name: [], reference: []}
    for seed in range(num_draws):
        for key, elbo in ((name, parts.elbo), (reference, other)):
            pyro.set_rng_seed(seed)
            draws[key].append(gradients(elbo, parts.model, guide, x))
    return [{group: torch.stack([flat(g, group) for g in draws[key]])
             for group in ("model", "guide")} for key in (name, reference)]


# --- a linear-Gaussian model, with the exact posterior as a guide -----------------------------

class LinearGaussian(PyroModule):
    """p(z) = N(0, I_d), p(x|z) = N(x | A z + b, σ² I_D), so that p(z|x) = N(Σ Aᵀ(x − b)/σ², Σ)
    with Σ = (I + AᵀA/σ²)⁻¹."""

    def __init__(self, A: torch.Tensor, b: torch.Tensor, sigma: float):
        super().__init__(name="model")
        self.A, self.b, self.sigma = torch.nn.Parameter(A), torch.nn.Parameter(b), sigma

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0).expand([self.A.shape[1]])
                            .to_event(1))                                   # (…, rows, d)
            pyro.sample("x", dist.Normal(z @ self.A.T + self.b, self.sigma).to_event(1), obs=x)

    def posterior(self, x):
        """The mean (rows, d) and covariance (d, d) of p(z|x)."""
        A, b, s2 = self.A.detach(), self.b.detach(), self.sigma ** 2
        cov = torch.linalg.inv(torch.eye(A.shape[1], dtype=A.dtype) + A.T @ A / s2)
        return (x - b) @ A @ cov / s2, cov

    def elbo(self, x, loc, scale_tril):
        """E_q[log p(x|z) + log p(z)] + H[q] in closed form for q(z) = N(loc, L Lᵀ), per row."""
        A, b, s2 = self.A, self.b, self.sigma ** 2
        cov = scale_tril @ scale_tril.mT
        log_lik = (dist.Normal(loc @ A.T + b, self.sigma).log_prob(x).sum(-1)
                   - (A @ cov @ A.T).diagonal(dim1=-2, dim2=-1).sum(-1) / (2 * s2))
        log_prior = (dist.Normal(0.0, 1.0).log_prob(loc).sum(-1)
                     - cov.diagonal(dim1=-2, dim2=-1).sum(-1) / 2)
        return log_lik + log_prior + dist.MultivariateNormal(loc, scale_tril=scale_tril).entropy()


class LocalGaussian(PyroModule):
    """q(z_i) = N(m_i, L_i L_iᵀ), full covariance, with free parameters for each row x_i."""

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor):
        super().__init__(name="guide")
        self.loc = PyroParam(loc)
        self.scale_tril = PyroParam(scale_tril, constraint=constraints.lower_cholesky)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril))


def linear_gaussian(rows: int, loc_shift: float = 0.0, scale_factor: float = 1.0):
    """The model, ``rows`` copies of one x₀, and a guide at the exact posterior of x₀ with its
    mean shifted by ``loc_shift`` and its Cholesky factor scaled by ``scale_factor`` (float64)."""
    generator = torch.Generator().manual_seed(0)
    A, b, x0 = (torch.randn(shape, generator=generator, dtype=torch.float64)
                for shape in [(3, 2), (3,), (3,)])                          # D = 3, d = 2
    model = LinearGaussian(A, b, sigma=0.7)
    loc, cov = model.posterior(x0[None])
    scale_tril = torch.linalg.cholesky(cov) * scale_factor
    guide = LocalGaussian((loc + loc_shift).expand(rows, 2).clone(),
                          scale_tril.expand(rows, 2, 2).clone())
    return model, guide, x0.expand(rows, 3)


def row_gradients(name: str, model, guide, x, num_particles: int = 1) -> torch.Tensor:
    """The guide's gradients under estimator ``name``, one row per copy of x₀: (rows, 2 + 4)."""
    elbo = ELBOS[name](max_plate_nesting=1, num_particles=num_particles, vectorize_particles=True)
    grads = gradients(elbo, model, guide, x)
    return torch.cat([grads["guide.loc"], grads["guide.scale_tril"].flatten(1)], dim=1)


def closed_form_gradient(model, guide, x0) -> torch.Tensor:
    """−∇ ELBO(x₀) with respect to the guide's unconstrained (loc, scale_tril) at its first row,
    from ``LinearGaussian.elbo``: what ``row_gradients`` estimates, shape (1, 2 + 4)."""
    to_tril = transform_to(constraints.lower_cholesky)
    loc = guide.loc[:1].detach().requires_grad_()
    raw = to_tril.inv(guide.scale_tril[:1].detach()).requires_grad_()
    grads = torch.autograd.grad(-model.elbo(x0, loc, to_tril(raw)).sum(), [loc, raw])
    return torch.cat([g.flatten(1) for g in grads], dim=1)


# --- (a) the same loss values as trace and iwae ------------------------------------------------

@pytest.mark.parametrize("num_particles,vectorize", [(1, False), (5, False), (5, True)])
@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_loss_is_the_references_on_the_same_draws(name, num_particles, vectorize, x):
    """The estimators change gradients only: for the same seed, ``loss`` and ``loss_and_grads``
    return the number that ``trace`` (for stl) or ``iwae`` (for dreg) returns."""
    parts = vae(name, num_particles, vectorize)
    reference = vae(REFERENCE[name], num_particles, vectorize).elbo
    for method in ("loss", "loss_and_grads"):
        losses = []
        for elbo in (parts.elbo, reference):
            pyro.set_rng_seed(1)
            losses.append(getattr(elbo, method)(parts.model, parts.guide, x))
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)   # float32 rounding at most


# --- (b) unbiased gradients ---------------------------------------------------------------------

@pytest.mark.parametrize("flow", [False, True], ids=["normal", "flow"])
@pytest.mark.parametrize("name,num_particles", [("stl", 1), ("dreg", 5)])
def test_gradients_are_unbiased(name, num_particles, flow):
    """On the same draws, θ's gradient is the reference's exactly and φ's differs from it by
    a term of mean zero (the score term, dropped or reparameterized): tested over 20 draws of
    a 64-row batch, each draw a sum of 64 independent rows."""
    x = torch.rand(64, DATA_DIM).bernoulli()
    ours, theirs = paired_vae_gradients(name, REFERENCE[name], x, num_draws=20, flow=flow,
                                        num_particles=num_particles, vectorize_particles=True)
    assert torch.allclose(ours["model"], theirs["model"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours["guide"], theirs["guide"], rtol=1e-3)
    assert_mean_zero(ours["guide"] - theirs["guide"])


def test_stl_guide_gradient_averages_to_the_closed_form_elbo_gradient():
    """An independent reference: 2000 draws of stl's one-data-point gradient (one per row),
    at a guide off the posterior, against −∇ELBO computed from the Gaussian integrals."""
    model, guide, x = linear_gaussian(2000, loc_shift=0.5, scale_factor=1.5)
    exact = closed_form_gradient(model, guide, x[0])
    assert exact.abs().max() > 0.1                    # off the posterior: a real target
    assert_mean_zero(row_gradients("stl", model, guide, x) - exact)


def test_score_function_guide_gradient_averages_to_the_closed_form_elbo_gradient():
    """The same reference for ``score-function``, with the power to see a wrong score term:
    4000 one-data-point draws (each the mean of K = 10 particles' gradients) must average to
    −∇ELBO within 4.5 standard errors in every
    coordinate, while the largest coordinate is more than 9 standard errors from 0.8 × and
    from 2 × that gradient (a score term scaled by 0.8 or doubled fails)."""
    model, guide, x = linear_gaussian(4000, loc_shift=1.0, scale_factor=1.5)
    exact = closed_form_gradient(model, guide, x[0])[0]
    draws = row_gradients("score-function", model, guide, x, num_particles=10)  # (4000, 6)
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert ((mean - exact).abs() <= 4.5 * stderr).all(), (mean, exact, stderr)
    largest = exact.abs().argmax()
    assert 0.2 * exact[largest].abs() > 9 * stderr[largest]


def test_dreg_with_one_particle_is_stl(x):
    """With K = 1 the weight w̃₁ = 1 and both gradients are the path derivative of the ELBO."""
    parts, stl = vae("dreg"), vae("stl").elbo
    for seed in range(3):
        grads = []
        for elbo in (parts.elbo, stl):
            pyro.set_rng_seed(seed)
            grads.append(torch.cat([flat(gradients(elbo, parts.model, parts.guide, x), g)
                                    for g in ("model", "guide")]))
        assert torch.allclose(*grads, rtol=1e-5, atol=1e-6)


def test_stl_differentiable_loss_has_the_same_gradients(x):
    """``STL_ELBO.differentiable_loss`` (for ``ELBOModule`` and plain PyTorch optimizers) is
    Trace_ELBO's, built on the same traces as ``loss_and_grads``."""
    parts = vae("stl", num_particles=3, vectorize_particles=True)
    grads = []
    for differentiable in (False, True):
        pyro.set_rng_seed(0)
        grads.append(gradients(parts.elbo, parts.model, parts.guide, x,
                               differentiable=differentiable))
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6)


# --- (c) the variance they remove ---------------------------------------------------------------

@pytest.mark.parametrize("name,num_particles", [("stl", 1), ("dreg", 10)])
def test_at_the_exact_posterior_the_guide_gradient_sticks_the_landing(name, num_particles):
    """With q(z|x) = p(z|x), log p(x, z) − log q(z|x) = log p(x) for every z: the path
    derivative is zero in every draw, while the reference's gradient, zero only on average,
    keeps its variance. 500 draws, float64."""
    model, guide, x = linear_gaussian(500)
    ours = row_gradients(name, model, guide, x, num_particles)
    theirs = row_gradients(REFERENCE[name], model, guide, x, num_particles)
    assert theirs.std(0).max() > 0.5
    assert_mean_zero(theirs)
    assert ours.abs().max() <= 1e-12 * theirs.abs().max()     # zero up to float64 rounding


def test_dreg_signal_to_noise_grows_with_k_while_iwae_collapses():
    """Rainforth et al. (2018): IWAE's guide gradient has SNR = |E g| / std g = O(1/√K), since
    its expectation shrinks faster than its noise; DReG's does not decay (Tucker et al. 2019).
    At a fixed guide off the posterior, for the guide's mean, from K = 1 to K = 100 (1000 draws,
    so each SNR is known to about ±0.03)."""
    def snr(name, num_particles):
        model, guide, x = linear_gaussian(1000, loc_shift=0.5, scale_factor=1.5)
        loc_grads = row_gradients(name, model, guide, x, num_particles)[:, :2]
        return loc_grads.mean(0).abs() / loc_grads.std(0)

    assert (snr("iwae", 100) < 0.3 * snr("iwae", 1)).all()          # 1/√100 = 0.1 in theory
    assert (snr("dreg", 100) > snr("dreg", 1)).all()


# --- (d) subsampling (minibatches against a hand-written bound: test_minibatch_estimators.py) ---

def subsampled_model(x):
    """z_i ~ N(0, 1), x_i ~ N(z_i, 1), on a random subsample of 5 rows that the guide draws."""
    with pyro.plate("data", len(x), subsample_size=5) as rows:
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[rows])


def subsampled_guide(x):
    """A plain function with a ``pyro.param``: q(z_i) = N(m_i, 1) on a random subsample."""
    loc = pyro.param("loc", lambda: x.new_zeros(len(x)))
    with pyro.plate("data", len(x), subsample_size=5) as rows:
        pyro.sample("z", dist.Normal(loc[rows], 1.0))


@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_the_guide_is_rerun_on_its_own_random_subsample(name):
    """Dropping the score reruns the guide: it must reuse the rows it drew, not draw new ones."""
    x = torch.randn(100)
    grads, losses = [], []
    for estimator in (name, REFERENCE[name]):
        elbo = ELBOS[estimator](max_plate_nesting=1, num_particles=3, vectorize_particles=True)
        pyro.set_rng_seed(0)
        losses.append(elbo.loss(subsampled_model, subsampled_guide, x))
        pyro.set_rng_seed(0)
        grads.append(gradients(elbo, subsampled_model, subsampled_guide, x)["loc"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert (grads[1] != 0).sum() == 5
    assert torch.equal(grads[0] != 0, grads[1] != 0)             # the same 5 rows


# --- refusals -----------------------------------------------------------------------------------

def discrete_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Bernoulli(x.new_full((2,), 0.5)).to_event(1))


def empty_guide(x):
    pass


@pytest.mark.parametrize("name", ["stl", "dreg"])
@pytest.mark.parametrize("guide,message", [(discrete_guide, "without rsample"),
                                           (empty_guide, "guide has no site 'z'")])
def test_refuses_latent_sites_it_cannot_reparameterize(name, guide, message):
    model, _, x = linear_gaussian(4)
    with pyro.validation_enabled(False), pytest.raises(ValueError, match=message):
        elbo = ELBOS[name](max_plate_nesting=1, num_particles=2, vectorize_particles=True)
        elbo.loss_and_grads(model, guide, x)
