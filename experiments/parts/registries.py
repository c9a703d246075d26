"""The registries by name: a look-up that refuses an unknown name in one line, and a
construction that hands a part exactly the options its constructor names."""
import inspect
from typing import Any, Callable, Dict

from experiments.common.errors import UserError
from experiments.estimators import ELBOS
from guides import GUIDES
from models import MODELS


def lookup(registry: Dict[str, Any], name: str, kind: str) -> Any:
    """``registry[name]``, or a ``UserError`` listing the names there are."""
    if name not in registry:
        raise UserError(f"unknown {kind} {name!r}: choose one of {', '.join(registry)}")
    return registry[name]


def check_names(model: str, guide: str, elbo: str) -> None:
    """Refuse an unregistered name with one line listing the valid ones."""
    for registry, name, what in ((MODELS, model, "model"), (GUIDES, guide, "guide"),
                                 (ELBOS, elbo, "ELBO estimator")):
        lookup(registry, name, what)


def construct(factory: Callable, **available: Any) -> Any:
    """``factory(**kwargs)`` with the subset of ``available`` that its signature names."""
    names = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in available.items() if k in names})
