"""The score-function (REINFORCE) estimator as a one-hook subclass of ``Trace_ELBO``."""
from pyro.poutine.messenger import Messenger

from experiments.estimators.surrogate import TensorTrace_ELBO
from experiments.estimators.traits import EstimatorTraits


class _DetachedSamples(Messenger):
    """Marks every latent sample site non-reparameterized: z is drawn with ``sample()``, so
    no gradient flows through it and Pyro scores the site with ∇ log q instead."""

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and getattr(msg["fn"], "has_rsample", False):
            _detach_sampling(msg["fn"])


def _detach_sampling(fn) -> None:
    """Switch off reparameterized sampling of ``fn`` in place. ``Independent`` and
    ``TransformedDistribution`` read ``has_rsample`` from their base distribution."""
    base = getattr(fn, "base_dist", None)
    if base is not None:
        _detach_sampling(base)
    else:
        fn.has_rsample = False


class ScoreFunction_ELBO(EstimatorTraits, TensorTrace_ELBO):
    """Trace_ELBO with the guide's continuous sites forced to score-function gradients:

        ∇_φ ELBO = E_q[∇_φ log q_φ(z|x) · (log p_θ(x, z) − log q_φ(z|x))]

    (the term E_q[∇_φ log q] vanishes in expectation and is kept by Pyro's surrogate).
    Model gradients are unchanged. Same loss values as ``Trace_ELBO``; only the gradient
    estimator of φ differs, which is what the comparison with the reparameterization trick
    z = μ + σ ε needs.

    References
    [1] Williams (1992), Simple statistical gradient-following algorithms for connectionist
        reinforcement learning.
    [2] Ranganath, Gerrish & Blei (2014), Black Box Variational Inference.
    """

    detaches_samples = True

    def _get_trace(self, model, guide, args, kwargs):
        return super()._get_trace(model, _DetachedSamples()(guide), args, kwargs)
