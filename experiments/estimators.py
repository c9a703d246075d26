"""ELBO estimators, registered by the name users pass to ``--elbo``.

Each entry builds a Pyro ``ELBO`` from the options it names; ``experiments.build`` passes it the
model's ``max_plate_nesting`` and the run's ``num_particles``, ``vectorize_particles`` and
``alpha``. All are Pyro's own estimators but ``stl`` and ``dreg``, which no Pyro release has
(small subclasses in ``experiments.path_derivative``); the notation is ELBO(x) =
E_{q(z|x)}[log p(x, z) − log q(z|x)] with K = ``num_particles`` samples z_k ~ q(z|x).
"""
from pyro.infer import (RenyiELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO,
                        TraceMeanField_ELBO, TraceTailAdaptive_ELBO)

from experiments.path_derivative import DReG_ELBO, STL_ELBO


def trace(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Monte Carlo ELBO: reparameterized gradients where q allows them (z = μ + σ ε), the score
    function ∇ log q(z|x) · (log p − log q) elsewhere."""
    return Trace_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                      max_plate_nesting=max_plate_nesting)


def meanfield(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) with the KL in closed form where one is known."""
    return TraceMeanField_ELBO(num_particles=num_particles,
                               vectorize_particles=vectorize_particles,
                               max_plate_nesting=max_plate_nesting)


def tracegraph(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Score-function terms Rao-Blackwellized over the dependency graph, with decaying-average
    baselines on non-reparameterized sites (Schulman et al. 2015)."""
    return TraceGraph_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                           max_plate_nesting=max_plate_nesting)


def enum(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Discrete latent sites left to enumeration are summed out exactly: for a mixture,
    log p(x) = log Σ_n p(z = n) p(x | z = n)."""
    return TraceEnum_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                          max_plate_nesting=max_plate_nesting)


def iwae(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """The importance-weighted bound log (1/K) Σ_k p(x, z_k) / q(z_k|x) (Burda et al. 2016):
    Pyro's Rényi bound at α = 0."""
    return RenyiELBO(alpha=0.0, num_particles=num_particles,
                     vectorize_particles=vectorize_particles, max_plate_nesting=max_plate_nesting)


def renyi(alpha=0.5, num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """The Rényi bound 1/(1−α) log (1/K) Σ_k (p(x, z_k) / q(z_k|x))^{1−α} (Li & Turner 2016)."""
    return RenyiELBO(alpha=alpha, num_particles=num_particles,
                     vectorize_particles=vectorize_particles, max_plate_nesting=max_plate_nesting)


def tail_adaptive(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Gradients of the tail-adaptive f-divergence (Wang, Liu & Liu 2018): particles weighted by
    the rank of p/q; needs reparameterized sites and vectorized particles, and has no loss value."""
    return TraceTailAdaptive_ELBO(num_particles=num_particles,
                                  vectorize_particles=vectorize_particles,
                                  max_plate_nesting=max_plate_nesting)


def stl(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """Trace_ELBO's loss with the path-derivative gradient: q's score term dropped, so the
    gradient vanishes where q(z|x) = p(z|x) (Roeder et al. 2017); needs reparameterized sites."""
    return STL_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                    max_plate_nesting=max_plate_nesting)


def dreg(num_particles=1, vectorize_particles=False, max_plate_nesting=1):
    """The IWAE bound with doubly-reparameterized guide gradients Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ,
    whose signal-to-noise ratio does not decay with K (Tucker et al. 2019); needs reparameterized
    sites."""
    return DReG_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                     max_plate_nesting=max_plate_nesting)


ELBOS = {
    "trace": trace,
    "meanfield": meanfield,
    "tracegraph": tracegraph,
    "enum": enum,
    "iwae": iwae,
    "renyi": renyi,
    "tail-adaptive": tail_adaptive,
    "stl": stl,
    "dreg": dreg,
}
