"""Parameter namespaces: each built set of parts keeps its parameters to itself.

Pyro keeps parameters in one global store, keyed by name, and a ``PyroModule`` that finds a
value in the store under its own name adopts it. Every model is built as the PyroModule
``model`` and every guide as ``guide``, so two sets of parts held in one process would share
parameters: after a second run, the first run's model would compute with the second's σ.
``place`` renames a freshly built part ``model#<n>`` or ``guide#<n>``, n counting the sets of
parts built in this process, so no two sets ever share a name (and a name still says which
part it belongs to); when a part is garbage, its parameters leave the store (``forget``), so a
long process does not hold every earlier run's.

Pyro's ``module_local_params`` setting keeps module parameters out of the store instead, but it
is one switch for the whole process, and ``pyro.infer.SVI`` cannot find the parameters it
hides (their sites carry no ``unconstrained()``), nor can ``RenyiELBO`` and ``TraceGraph_ELBO``
train without ``SVI``.

The namespace is not part of a parameter's identity on disk: checkpoints name the optimizer's
state by ``local_name`` (``model.decoder.0.weight``, as before namespaces), and
``experiments.training.optim`` restores a state by local name, whichever namespace saved it.
"""
import itertools
import re
import weakref
from typing import Dict, TypeVar

import pyro
from pyro.nn import PyroModule

Part = TypeVar("Part", bound=PyroModule)

_NUMBERS = itertools.count(1)
_NAMESPACE = re.compile(r"^(\w+)#\d+")


def new_namespace() -> str:
    """A namespace no other set of parts built in this process has: ``#<n>``."""
    return f"#{next(_NUMBERS)}"


def place(part: Part, namespace: str, role: str) -> Part:
    """``part`` (a model or guide not yet run) renamed ``<role><namespace>`` in Pyro's store,
    ``model#3``, its parameters dropped from the store once the part is garbage."""
    name = role + namespace
    # a PyroModule fixes its name when built; this is how a parent module renames a child
    # (``PyroModule.add_module``), and it reaches every submodule
    part._pyro_set_supermodule(name, part._pyro_context)
    weakref.finalize(part, forget, name).atexit = False
    return part


def forget(name: str) -> None:
    """Drop the parameters of the part called ``name`` from Pyro's store."""
    store = pyro.get_param_store()
    for key in [k for k in store.keys() if k.startswith(name + ".")]:
        del store[key]


def local_name(name: str) -> str:
    """A parameter's name without its namespace: ``model#3.decoder.0.weight`` →
    ``model.decoder.0.weight`` (a name without one is returned as it is)."""
    return _NAMESPACE.sub(r"\1", name)


def local_names(state: Dict[str, object]) -> Dict[str, object]:
    """``state`` keyed by ``local_name``."""
    return {local_name(name): value for name, value in state.items()}
