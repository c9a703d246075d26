"""What a kept recording depends on: the *material*, a text whose SHA-256 names the program's
file in ``cache`` (``material``):

- the versions: Python (bytecode), torch, Pyro, ELBO Lab, the releases ``adapter`` was tested
  with, the entry's ``FORMAT``, torch's default dtype, and the source of the recording engine
  itself (``experiments/recording/*.py``);
- the step's signature (tensor layouts, other arguments by value, the handlers around the step
  with their scalar settings) — a non-scalar argument or handler setting is not cached;
- the parameters: name, shape, strides, dtype, device, ``requires_grad``, constraint;
- model, guide and loss: their classes, the structure of their modules (classes, scalar
  attributes, tensors' layouts), the scalar values ``guard.Watch`` reads from them (a β,
  ``num_particles``), and the code they reach (``_code``): the bytecode, constants, names and
  defaults of every function and method reached from them, their classes' scalar attributes,
  the scalar globals that code names; code inside torch and Pyro (keyed by version), the
  standard library, and installed packages (keyed by their ``__version__``) is not walked.
"""
import hashlib
import json
import re
import sys
import types
from pathlib import Path
from typing import Dict, List, Optional

import pyro
import torch
from torch import nn

import experiments
from experiments.recording.adapter import TESTED_WITH, handlers, param_constraints
from experiments.recording.cache import Uncacheable
from experiments.recording.cache_entry import FORMAT, layout
from experiments.recording.guard import SCALARS
from experiments.recording.guard import _global_names as global_names

#: how far ``_code`` follows functions, classes, objects and globals from model, guide, loss
CODE_DEPTH = 6
#: top-level packages keyed by version, whose code ``_code`` does not walk
VERSIONED = {"torch", "pyro", "numpy", "builtins"}
_ENGINE = Path(__file__).parent
#: ``model#3``: the number of a set of parts in its process (experiments.parts.namespaces)
_NUMBERED = re.compile(r"#\d+\b")


def material(roots: Dict[str, object], signature: tuple, params: Dict[str, torch.Tensor],
             watched: List[tuple], code: str) -> str:
    """What a recording of the step depends on, as one canonical text (the module's docstring
    lists it). ``roots``: model, guide and loss by role; ``watched``: (what, value) pairs a
    ``guard.Watch`` reads; ``code``: ``code_digest(roots)``. Raises ``Uncacheable`` where a
    part has no value another run can compare (an argument or handler setting other than a
    number, string or flag)."""
    constraints = param_constraints()
    return _NUMBERED.sub("#", json.dumps({
        "format": FORMAT,
        "versions": [sys.version, torch.__version__, pyro.__version__, experiments.__version__,
                     TESTED_WITH, str(torch.get_default_dtype())],
        "engine": _engine_source(),
        "signature": _signature_text(signature),
        "params": [[name, *layout(p), p.requires_grad, str(constraints.get(name))]
                   for name, p in params.items()],
        "roots": {role: _class_path(type(root)) for role, root in roots.items()},
        "modules": [_module_structure(where, m) for where, m in _modules(roots)],
        "watched": [[what, _scalar(value)] for what, value in watched
                    if isinstance(value, SCALARS)],
        "code": code,
    }, sort_keys=True, default=str))


def _engine_source() -> str:
    digest = hashlib.sha256()
    for path in sorted(_ENGINE.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _signature_text(signature: tuple) -> list:
    """``svi._signature``'s tuple as text: layouts, arguments by value, and the handlers
    around the step (now) with their scalar settings."""
    positional, keywords, _ = signature
    return [[_spec(s) for s in positional], [[k, _spec(s)] for k, s in keywords],
            _handler_settings(handlers())]


def _spec(spec: tuple) -> list:
    if isinstance(spec[0], type):                      # (type, value) of another argument
        kind, value = spec
        if not isinstance(value, SCALARS):
            raise Uncacheable(f"an argument of the step is a {kind.__name__}")
        return [kind.__name__, _scalar(value)]
    shape, dtype, device = spec
    return [list(shape), str(dtype), str(device)]


def _handler_settings(around: tuple) -> list:
    """The handlers around the step, each as its class and scalar settings; one holding
    anything else (a list of sites, a tensor) is not cached."""
    settings = []
    for handler in around:
        values = vars(handler)
        if not all(isinstance(v, SCALARS) for v in values.values()):
            raise Uncacheable(f"the handler {type(handler).__name__} around the step holds "
                              "other values than numbers, strings and flags")
        settings.append([_class_path(type(handler)),
                         sorted([k, _scalar(v)] for k, v in values.items())])
    return settings


def _scalar(value) -> str:
    return f"{type(value).__name__}:{value!r}"



def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _modules(roots: Dict[str, object]):
    """(where, module) for the modules model, guide and loss are or hold (a bound method's
    object's attributes, a function's closure and the globals it names), in a fixed order."""
    for role, root in roots.items():
        for where, value in _held(root, role):
            if isinstance(value, nn.Module):
                yield where, value


def _held(root, role: str):
    """(where, value) for the root and the values it holds one step away."""
    if isinstance(root, types.MethodType):
        root = root.__self__
    yield role, root
    if isinstance(root, types.FunctionType):
        code = root.__code__
        for name, cell in zip(code.co_freevars, root.__closure__ or ()):
            try:
                yield f"{role}.{name}", cell.cell_contents
            except ValueError:
                pass
        for name in sorted(global_names(code)):
            if name in root.__globals__:
                yield f"{role}.{name}", root.__globals__[name]
    elif not isinstance(root, nn.Module) and hasattr(root, "__dict__"):
        for name, value in vars(root).items():
            yield f"{role}.{name}", value


def _module_structure(where: str, module: nn.Module) -> list:
    """A module's submodules (class, scalar attributes) and its tensors' layouts, by name."""
    return [where,
            [[name, _class_path(type(m)),
              sorted([k, _scalar(v)] for k, v in vars(m).items() if isinstance(v, SCALARS))]
             for name, m in module.named_modules()],
            [[name, *layout(t)] for name, t in module.named_parameters(remove_duplicate=False)],
            [[name, *layout(t)] for name, t in module.named_buffers(remove_duplicate=False)]]


def named_tensors(roots: Dict[str, object]) -> Dict[str, torch.Tensor]:
    """Tensors by names another run gives the same tensors: the parameters and buffers of the
    modules model, guide and loss are or hold, then the tensors they hold (``_held``). The
    first name found for a tensor is its name. (The param store's tensors a step uses are the
    program's inputs, not found tensors.)"""
    names: Dict[str, torch.Tensor] = {}
    for where, module in _modules(roots):
        for name, t in [*module.named_parameters(remove_duplicate=False),
                        *module.named_buffers(remove_duplicate=False)]:
            names.setdefault(f"{where}.{name}", t)
    for role, root in roots.items():
        for where, value in _held(root, role):
            if torch.is_tensor(value):
                names.setdefault(where, value)
    return names


def code_digest(roots: Dict[str, object]) -> str:
    """A digest of the code reached from model, guide and loss (see the module's docstring):
    functions' bytecode, constants, names and defaults, classes' scalar attributes, scalar
    globals named, versions of the installed packages reached."""
    digest, seen, todo = hashlib.sha256(), set(), [(root, 0) for root in roots.values()]
    while todo:
        obj, depth = todo.pop(0)
        if id(obj) in seen or depth > CODE_DEPTH:
            continue
        seen.add(id(obj))
        for text, child in _reached(obj):
            digest.update(text.encode())
            if child is not None:
                todo.append((child, depth + 1))
    return digest.hexdigest()


def _reached(obj):
    """(text to hash, object to follow or None) for what ``obj`` holds of code."""
    if isinstance(obj, types.MethodType):
        yield "method", obj.__func__
        yield "self", obj.__self__
    elif isinstance(obj, types.FunctionType):
        if not _walked(obj.__module__):
            yield f"function {obj.__module__}.{obj.__qualname__}", None
            return
        yield from _function(obj)
    elif isinstance(obj, type):
        if not _walked(obj.__module__):
            yield f"class {_class_path(obj)} {_package_version(obj.__module__)}", None
            return
        yield f"class {_class_path(obj)}", None
        for base in obj.__mro__[1:]:
            yield "base", base
        for name, value in vars(obj).items():
            if isinstance(value, SCALARS):
                yield f"{name}={_scalar(value)}", None
            for function in _functions_of(value):
                yield name, function
    elif isinstance(obj, types.ModuleType):
        yield f"module {obj.__name__} {_package_version(obj.__name__)}", None
    elif isinstance(obj, nn.Module):
        yield "module object", type(obj)
        for _, module in obj.named_modules():
            yield "submodule", type(module)
            for name, value in vars(module).items():
                if not name.startswith("_") and not isinstance(value, (*SCALARS, nn.Module)):
                    yield name, value
    elif isinstance(obj, (list, tuple)):
        for value in obj[:64]:
            yield "item", value
    elif isinstance(obj, dict):
        for key, value in list(obj.items())[:64]:
            yield str(key), value
    elif hasattr(obj, "__dict__") and not torch.is_tensor(obj):
        yield "object", type(obj)
        for name, value in vars(obj).items():
            yield name, value


def _function(function: types.FunctionType):
    """The function's code, defaults and closure, and the globals it names."""
    code = function.__code__
    yield _code_text(code), None
    for value in (function.__defaults__ or ()) + tuple((function.__kwdefaults__ or {}).values()):
        yield (_scalar(value), None) if isinstance(value, SCALARS) else ("default", value)
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        yield (f"{name}={_scalar(value)}", None) if isinstance(value, SCALARS) else (name, value)
    for name in sorted(global_names(code)):
        if name in function.__globals__:
            value = function.__globals__[name]
            yield (f"{name}={_scalar(value)}", None) if isinstance(value, SCALARS) \
                else (name, value)


def _code_text(code: types.CodeType) -> str:
    """Bytecode, names and constants (nested code included), not file names or line numbers."""
    constants = [_code_text(c) if isinstance(c, types.CodeType) else
                 repr(sorted(map(repr, c))) if isinstance(c, frozenset) else repr(c)
                 for c in code.co_consts]
    return repr((code.co_code.hex(), code.co_names, code.co_varnames, constants))


def _functions_of(value) -> list:
    if isinstance(value, (staticmethod, classmethod)):
        return [value.__func__]
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset) if f is not None]
    return [value] if isinstance(value, types.FunctionType) else []


def _walked(module: Optional[str]) -> bool:
    """Whether code of this module is walked: not torch's, Pyro's, the standard library's or
    an installed package's (those are keyed by version)."""
    top = (module or "builtins").split(".")[0]
    if top in VERSIONED or top in sys.stdlib_module_names:
        return False
    file = getattr(sys.modules.get(top), "__file__", None) or ""
    return "site-packages" not in file and "dist-packages" not in file


def _package_version(module: str) -> str:
    return str(getattr(sys.modules.get(module.split(".")[0]), "__version__", ""))
