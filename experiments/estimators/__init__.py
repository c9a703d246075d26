"""ELBO estimators, registered by the name users pass to ``--elbo``.

Each entry is a class: a Pyro ``ELBO`` that declares what it needs of a guide
(``experiments.estimators.traits``), so that ``experiments.parts.compatibility`` refuses impossible
combinations before anything trains. ``experiments.parts.build`` constructs it with the options its
``__init__`` names: the model's ``max_plate_nesting`` and the run's ``num_particles``,
``vectorize_particles`` and ``alpha``. The notation: ELBO(x) = E_{q(z|x)}[log p(x, z) − log
q(z|x)], with K = ``num_particles`` samples z_k ~ q(z|x). Pyro's own estimators appear as
subclasses that only add their traits; ``score-function``, ``stl`` and ``dreg`` exist in no
Pyro release, and ``iwae``, ``renyi`` and ``tail-adaptive`` fix what Pyro's compute under
minibatches (``importance_weighted``, ``tail_adaptive``).
"""
from pyro.infer import TraceEnum_ELBO, TraceGraph_ELBO

from experiments.estimators.importance_weighted import IWAE_ELBO, Renyi_ELBO
from experiments.estimators.path_derivative import STL_ELBO, DReG_ELBO
from experiments.estimators.score_function import ScoreFunction_ELBO
from experiments.estimators.surrogate import TensorMeanField_ELBO, TensorTrace_ELBO
from experiments.estimators.tail_adaptive import TailAdaptive_ELBO
from experiments.estimators.traits import EstimatorTraits


class Trace(EstimatorTraits, TensorTrace_ELBO):
    """Pyro's Trace_ELBO: the Monte Carlo ELBO with K samples.

    Reparameterized gradients where q allows them (z = μ + σ ε), the score function
    ∇ log q(z|x) · (log p − log q) elsewhere; the loss one tensor (``TensorTrace_ELBO``)."""


class MeanField(EstimatorTraits, TensorMeanField_ELBO):
    """Pyro's TraceMeanField_ELBO: the KL term in closed form.

    ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), the KL analytic instead of sampled."""

    reparameterized = True
    closed_form_kl = True


class TraceGraph(EstimatorTraits, TraceGraph_ELBO):
    """Pyro's TraceGraph_ELBO: Rao-Blackwellized score functions with baselines.

    Each non-reparameterized site's score term keeps only the downstream costs it influences
    and subtracts the baseline the guide supplies at that site (the categorical guide's learned
    network), or a decaying average where the guide asks for one (Schulman et al. 2015)."""

    recordable = False        # the gradient exists only inside loss_and_grads


class Enum(EstimatorTraits, TraceEnum_ELBO):
    """Pyro's TraceEnum_ELBO: discrete sites summed out exactly.

    For a mixture, log p(x) = log Σ_n p(z = n) p(x | z = n): no sampling of z at all."""

    enumerates = True
    recordable = False        # Pyro checks the loss for NaN in Python (warn_if_nan)


ELBOS = {
    "trace": Trace,
    "meanfield": MeanField,
    "tracegraph": TraceGraph,
    "enum": Enum,
    "iwae": IWAE_ELBO,
    "renyi": Renyi_ELBO,
    "tail-adaptive": TailAdaptive_ELBO,
    "score-function": ScoreFunction_ELBO,
    "stl": STL_ELBO,
    "dreg": DReG_ELBO,
}
