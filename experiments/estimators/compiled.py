"""Compiled ELBO estimators (``--jit``): Pyro's JIT estimators, made safe for ELBO Lab's runs.

``pyro.infer.JitTrace_ELBO`` records one pass of guide and model with ``torch.jit.trace`` and
replays the recorded graph at every later step, so the Python of Pyro's effect handlers (traces,
plates, parameter look-ups, log-density bookkeeping) runs once instead of at every step. The
estimate is the same, ELBO(x) = E_q[log p(x, z) − log q(z|x)], up to rounding. Compiling assumes
a model of static structure (the same sample sites at every step); batch sizes may vary.

Two things are fixed here, for Pyro 1.9:

1. ``JitTraceMeanField_ELBO`` checks for ``_loss_and_surrogate_loss`` but caches its compiled
   function as ``_differentiable_loss``, so it re-traces model and guide at *every* step, which
   makes it about 4–5× slower than the uncompiled estimator. ``CompiledMeanField`` sets the
   attribute that is checked, so it compiles once.
2. Compiling runs guide and model twice more (Pyro's parameter-capture pass and the traced
   pass), drawing random numbers an uncompiled step does not: a resumed run, which compiles at
   another step than an uninterrupted one, would drift away from it. ``IsolatedCompile`` runs
   the compiling call in a forked random stream and drops the gradients it leaves, so a
   compiled run draws exactly the random numbers of an uncompiled one.

``torch.jit.trace`` is deprecated in favour of ``torch.compile``, which cannot compile Pyro's
effect handlers without breaking the graph at every one of them; its deprecation notice is
silenced while compiling.
"""
import warnings

import torch
from pyro import poutine
from pyro.infer import JitTrace_ELBO, JitTraceMeanField_ELBO

from experiments.common.rng import isolated_rng

COMPILE_SEED = 0


class IsolatedCompile:
    """Mixin for a ``pyro.infer.JitTrace*_ELBO``: compile without touching the run's random
    stream or gradients. Pyro compiles once per number of positional arguments and set of
    keyword arguments (non-tensor inputs, e.g. ``num_data``, must be keywords)."""

    def __init__(self, num_particles=1, max_plate_nesting=float("inf"),
                 vectorize_particles=False):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles, ignore_jit_warnings=True)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        key = (id(model), id(guide), len(args), tuple(sorted(kwargs.items())))
        compiled = self.__dict__.setdefault("_compiled_keys", set())
        if key not in compiled:
            device = next((a.device for a in args if torch.is_tensor(a)), torch.device("cpu"))
            with isolated_rng(COMPILE_SEED, device), warnings.catch_warnings(), \
                    poutine.trace(param_only=True) as params:
                warnings.filterwarnings("ignore", "`torch.jit.trace` is deprecated")
                super().loss_and_grads(model, guide, *args, **kwargs)
            for site in params.trace.nodes.values():
                site["value"].unconstrained().grad = None
            compiled.add(key)
        return super().loss_and_grads(model, guide, *args, **kwargs)


class CompiledTrace(IsolatedCompile, JitTrace_ELBO):
    """``trace`` compiled: Pyro's ``JitTrace_ELBO``."""


class CompiledMeanField(IsolatedCompile, JitTraceMeanField_ELBO):
    """``meanfield`` compiled: Pyro's ``JitTraceMeanField_ELBO``, compiling once (fix 1 above)."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss    # the attribute Pyro checks
        return loss


#: the estimators of ``experiments.estimators.ELBOS`` that ``--jit`` can compile
JIT_ELBOS = {
    "trace": CompiledTrace,
    "meanfield": CompiledMeanField,
}
