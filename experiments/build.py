"""Assemble a model, a guide and an ELBO estimator from their registered names."""
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from pyro.infer import ELBO

from experiments.compatibility import check_combination
from experiments.errors import UserError
from experiments.estimators import ELBOS
from experiments.estimators.compiled import JIT_ELBOS
from guides import GUIDES
from guides.base import Guide
from models import MODELS, LatentVariableModel


@dataclass
class Parts:
    """The three independent parts of an experiment, ready for ``pyro.infer.SVI``."""

    model: LatentVariableModel
    guide: Guide
    elbo: ELBO


def build(model: str = "vae", guide: str = "normal", elbo: str = "trace", *, data_dim: int,
          num_data: Optional[int] = None, jit: bool = False, **options: Any) -> Parts:
    """The parts named ``model``, ``guide`` and ``elbo`` for data of dimension ``data_dim``
    (``num_data`` training points, which a non-amortized guide needs); with ``jit``, the
    estimator compiled (``experiments.estimators.compiled``).

    Each part's constructor receives exactly the ``options`` it names (``latent_dim``,
    ``hidden_dims``, ``num_particles``, …); the rest are ignored, so one flat set of options
    (a ``Config``'s fields) serves every combination. An impossible combination, or a model
    that refuses its options (a ``ValueError``), is refused with a ``UserError`` in one line
    saying why and what would work.
    """
    check_names(model, guide, elbo, jit)
    model_part = build_model(model, data_dim=data_dim, **options)
    check_combination(model, guide, elbo, model=model_part, **options)
    guide_part = construct(GUIDES[guide], model=model_part, num_data=num_data, **options)
    estimator = JIT_ELBOS[elbo] if jit else ELBOS[elbo]
    elbo_part = construct(estimator, max_plate_nesting=model_part.max_plate_nesting, **options)
    return Parts(model_part, guide_part, elbo_part)


def build_model(name: str, *, data_dim: int, **options: Any) -> LatentVariableModel:
    """The model called ``name`` alone (e.g. to time its exact log-likelihood), from the
    ``options`` its constructor names; a model that refuses its options (a ``ValueError``) is
    refused in one line."""
    try:
        return construct(_lookup(MODELS, name, "model"), data_dim=data_dim, **options)
    except ValueError as exc:
        raise UserError(f"--model {name}: {exc}") from None


def check_names(model: str, guide: str, elbo: str, jit: bool = False) -> None:
    """Refuse an unregistered name with one line listing the valid ones."""
    elbos, kind = ((JIT_ELBOS, "compiled (--jit) ELBO estimator") if jit else
                   (ELBOS, "ELBO estimator"))
    for registry, name, what in ((MODELS, model, "model"), (GUIDES, guide, "guide"),
                                 (elbos, elbo, kind)):
        _lookup(registry, name, what)


def _lookup(registry: Dict[str, Any], name: str, kind: str) -> Any:
    if name not in registry:
        raise UserError(f"unknown {kind} {name!r}: choose one of {', '.join(registry)}")
    return registry[name]


def construct(factory: Callable, **available: Any) -> Any:
    """``factory(**kwargs)`` with the subset of ``available`` that its signature names."""
    names = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in available.items() if k in names})
