"""ELBO estimators, registered by the name users pass to ``--elbo``.

Each entry builds a Pyro ``ELBO`` from the options it names; ``experiments.build`` passes it
the model's ``max_plate_nesting`` and the run's ``num_particles`` and ``vectorize_particles``.
"""
from pyro.infer import Trace_ELBO


def trace(num_particles: int = 1, vectorize_particles: bool = False,
          max_plate_nesting: int = 1) -> Trace_ELBO:
    """ELBO = E_q[log p(x, z) − log q(z|x)], estimated with K = ``num_particles`` samples of
    z ~ q(z|x); reparameterized gradients where q allows them, score-function ones elsewhere."""
    return Trace_ELBO(num_particles=num_particles, vectorize_particles=vectorize_particles,
                      max_plate_nesting=max_plate_nesting)


ELBOS = {
    "trace": trace,
}
