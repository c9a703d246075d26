"""ELBO estimators, registered by the name users pass to ``--elbo``.

Each entry pairs a factory of a Pyro ``ELBO`` with what the estimator needs of a guide, so that
``experiments.compatibility`` refuses impossible combinations before anything trains. A factory
takes the options it names; ``experiments.build`` passes the model's ``max_plate_nesting`` and
the run's ``num_particles``, ``vectorize_particles`` and ``alpha``. The notation: ELBO(x) =
E_{q(z|x)}[log p(x, z) − log q(z|x)], with K = ``num_particles`` samples z_k ~ q(z|x). All are
Pyro's own estimators but ``score-function``, ``stl`` and ``dreg``, which no Pyro release has.
The new ones are small subclasses: ``experiments.score_function`` and
``experiments.path_derivative``.
"""
from dataclasses import dataclass
from typing import Callable

from pyro.infer import (ELBO, RenyiELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO,
                        TraceMeanField_ELBO, TraceTailAdaptive_ELBO)

from experiments.path_derivative import DReG_ELBO, STL_ELBO
from experiments.score_function import ScoreFunction_ELBO


@dataclass(frozen=True)
class Estimator:
    """An ELBO factory and its requirements.

    :param reparameterized: every guide sample must be reparameterized.
    :param closed_form_kl: KL(q(z|x) ‖ p(z)) must have a closed form.
    :param enumerates: discrete sites must be left to enumeration (the ``enum`` guide); an
        estimator without it cannot sum anything out and refuses that guide.
    :param vectorized: needs ``--vectorize-particles`` and ``--num-particles`` ≥ 2.
    :param has_loss: reports a loss value (tail-adaptive reports only gradients).
    :param detaches_samples: draws the guide's samples without their path gradient, which
        leaves a straight-through guide's hard samples scored by the density of relaxed ones.
    :param k_sample: its bound depends on K (IWAE-like); others only average K estimates.
    :param path_derivative: rescores q at its own (detached) samples, which for a
        straight-through guide are hard one-hot values where the relaxed density degenerates.
    """

    factory: Callable[..., ELBO]
    reparameterized: bool = False
    closed_form_kl: bool = False
    enumerates: bool = False
    vectorized: bool = False
    has_loss: bool = True
    detaches_samples: bool = False
    k_sample: bool = False
    path_derivative: bool = False


def trace(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Pyro's Trace_ELBO: the Monte Carlo ELBO with K samples.

    Reparameterized gradients where q allows them (z = μ + σ ε), the score function
    ∇ log q(z|x) · (log p − log q) elsewhere."""
    return Trace_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                      max_plate_nesting=max_plate_nesting)


def meanfield(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Pyro's TraceMeanField_ELBO: the KL term in closed form.

    ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), the KL analytic instead of sampled."""
    return TraceMeanField_ELBO(num_particles=num_particles,
                               vectorize_particles=vectorize_particles,
                               max_plate_nesting=max_plate_nesting)


def tracegraph(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Pyro's TraceGraph_ELBO: Rao-Blackwellized score functions with baselines.

    Each non-reparameterized site's score term keeps only the downstream costs it influences
    and subtracts the baseline the guide supplies at that site (the categorical guide's learned
    network), or a decaying average where the guide asks for one (Schulman et al. 2015)."""
    return TraceGraph_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                           max_plate_nesting=max_plate_nesting)


def enum(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Pyro's TraceEnum_ELBO: discrete sites summed out exactly.

    For a mixture, log p(x) = log Σ_n p(z = n) p(x | z = n): no sampling of z at all."""
    return TraceEnum_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                          max_plate_nesting=max_plate_nesting)


def iwae(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """The importance-weighted bound (IWAE, Burda et al. 2016): Pyro's RenyiELBO at α = 0.

    log (1/K) Σ_k p(x, z_k) / q(z_k|x), tighter as K grows."""
    return RenyiELBO(alpha=0.0, num_particles=num_particles,
                     vectorize_particles=vectorize_particles, max_plate_nesting=max_plate_nesting)


def renyi(alpha=0.5, num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Pyro's RenyiELBO: the Rényi α bound (Li & Turner 2016).

    1/(1−α) log (1/K) Σ_k (p(x, z_k) / q(z_k|x))^{1−α}; α = 0 is IWAE, α → 1 the ELBO."""
    return RenyiELBO(alpha=alpha, num_particles=num_particles,
                     vectorize_particles=vectorize_particles, max_plate_nesting=max_plate_nesting)


def tail_adaptive(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Pyro's TraceTailAdaptive_ELBO: the tail-adaptive f-divergence (Wang, Liu & Liu 2018).

    Particles weighted by the rank of p/q; needs reparameterized sites and vectorized
    particles, and gives gradients only, no loss value."""
    return TraceTailAdaptive_ELBO(num_particles=num_particles,
                                  vectorize_particles=vectorize_particles,
                                  max_plate_nesting=max_plate_nesting)


def score_function(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Trace_ELBO with score-function (REINFORCE) gradients even for reparameterizable q.

    ∇_φ ELBO ≈ (1/K) Σ_k ∇_φ log q(z_k|x) · (log p(x, z_k) − log q(z_k|x)), to compare with the
    reparameterization trick on the very same model and guide."""
    return ScoreFunction_ELBO(num_particles=num_particles,
                              vectorize_particles=vectorize_particles,
                              max_plate_nesting=max_plate_nesting)


def stl(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Sticking the landing: Trace_ELBO's loss with the path-derivative gradient.

    q's score term is dropped, so the guide's gradient vanishes where q(z|x) = p(z|x)
    (Roeder, Wu & Duvenaud 2017); needs reparameterized sites."""
    return STL_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                    max_plate_nesting=max_plate_nesting)


def dreg(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """The IWAE bound with doubly-reparameterized guide gradients (Tucker et al. 2019).

    Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ, whose signal-to-noise ratio does not decay with K;
    needs reparameterized sites."""
    return DReG_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                     max_plate_nesting=max_plate_nesting)


ELBOS = {
    "trace": Estimator(trace),
    "meanfield": Estimator(meanfield, reparameterized=True, closed_form_kl=True),
    "tracegraph": Estimator(tracegraph),
    "enum": Estimator(enum, enumerates=True),
    # Pyro's RenyiELBO gives a non-reparameterized site no score-function gradient at α = 0
    # (its surrogate scales log q by α / (1 − α)), so q would not learn: reparameterized only
    "iwae": Estimator(iwae, reparameterized=True, k_sample=True),
    "renyi": Estimator(renyi, reparameterized=True, k_sample=True),
    "tail-adaptive": Estimator(tail_adaptive, reparameterized=True, vectorized=True,
                               has_loss=False, k_sample=True),
    "score-function": Estimator(score_function, detaches_samples=True),
    "stl": Estimator(stl, reparameterized=True, path_derivative=True),
    "dreg": Estimator(dreg, reparameterized=True, k_sample=True, path_derivative=True),
}
