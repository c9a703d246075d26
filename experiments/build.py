"""Assemble a model, a guide and an ELBO estimator from their registered names."""
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict

from pyro.infer import ELBO
from pyro.nn import PyroModule

from experiments.errors import UserError
from experiments.estimators import ELBOS
from experiments.jit import JIT_ELBOS
from guides import GUIDES
from models import MODELS, LatentVariableModel


@dataclass
class Parts:
    """The three independent parts of an experiment, ready for ``pyro.infer.SVI``."""

    model: LatentVariableModel
    guide: PyroModule
    elbo: ELBO


def build(model: str = "vae", guide: str = "normal", elbo: str = "trace", *, data_dim: int,
          jit: bool = False, **options: Any) -> Parts:
    """The parts named ``model``, ``guide`` and ``elbo`` for data of dimension ``data_dim``;
    with ``jit``, the estimator compiled (``experiments.jit``).

    Each part's constructor receives exactly the ``options`` it names (``latent_dim``,
    ``hidden_dims``, ``num_particles``, …); the rest are ignored, so one flat set of options
    (a ``Config``'s fields) serves every combination.
    """
    _, guide_cls, elbo_fn = check_names(model, guide, elbo, jit)
    model_part = build_model(model, data_dim=data_dim, **options)
    guide_part = _construct(guide_cls, model=model_part, **options)
    elbo_part = _construct(elbo_fn, max_plate_nesting=model_part.max_plate_nesting, **options)
    return Parts(model_part, guide_part, elbo_part)


def build_model(name: str, *, data_dim: int, **options: Any) -> LatentVariableModel:
    """The model called ``name`` alone (e.g. to time its exact log-likelihood), from the
    ``options`` its constructor names."""
    return _construct(_lookup(MODELS, name, "model"), data_dim=data_dim, **options)


def check_names(model: str, guide: str, elbo: str, jit: bool = False) -> tuple:
    """The registered model, guide and estimator called so, or one line naming the valid ones."""
    elbos, kind = ((JIT_ELBOS, "compiled (--jit) ELBO estimator") if jit else
                   (ELBOS, "ELBO estimator"))
    return (_lookup(MODELS, model, "model"), _lookup(GUIDES, guide, "guide"),
            _lookup(elbos, elbo, kind))


def _lookup(registry: Dict[str, Callable], name: str, kind: str) -> Callable:
    if name not in registry:
        raise UserError(f"unknown {kind} {name!r}: choose one of {', '.join(registry)}")
    return registry[name]


def _construct(factory: Callable, **available: Any) -> Any:
    """``factory(**kwargs)`` with the subset of ``available`` that its signature names."""
    names = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in available.items() if k in names})
