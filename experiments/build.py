"""Assemble a model, a guide and an ELBO estimator from their registered names."""
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from pyro.infer import ELBO

from experiments.compatibility import check_combination
from experiments.errors import UserError
from experiments.estimators import ELBOS
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
          num_data: Optional[int] = None, **options: Any) -> Parts:
    """The parts named ``model``, ``guide`` and ``elbo`` for data of dimension ``data_dim``
    (``num_data`` training points, which a non-amortized guide needs).

    Each part's constructor receives exactly the ``options`` it names (``latent_dim``,
    ``hidden_dims``, ``num_particles``, …); the rest are ignored, so one flat set of options
    (a ``Config``'s fields) serves every combination. An impossible combination, or a model
    that refuses its options (a ``ValueError``), is refused with a ``UserError`` in one line
    saying why and what would work.
    """
    check_names(model, guide, elbo)
    try:
        model_part = construct(MODELS[model], data_dim=data_dim, **options)
    except ValueError as exc:
        raise UserError(f"--model {model}: {exc}") from None
    check_combination(model, guide, elbo, model=model_part, **options)
    guide_part = construct(GUIDES[guide], model=model_part, num_data=num_data, **options)
    elbo_part = construct(ELBOS[elbo].factory, max_plate_nesting=model_part.max_plate_nesting,
                          **options)
    return Parts(model_part, guide_part, elbo_part)


def check_names(model: str, guide: str, elbo: str) -> None:
    """Refuse an unregistered name with one line listing the valid ones."""
    for registry, name, kind in ((MODELS, model, "model"), (GUIDES, guide, "guide"),
                                 (ELBOS, elbo, "ELBO estimator")):
        _lookup(registry, name, kind)


def _lookup(registry: Dict[str, Any], name: str, kind: str) -> Any:
    if name not in registry:
        raise UserError(f"unknown {kind} {name!r}: choose one of {', '.join(registry)}")
    return registry[name]


def construct(factory: Callable, **available: Any) -> Any:
    """``factory(**kwargs)`` with the subset of ``available`` that its signature names."""
    names = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in available.items() if k in names})
