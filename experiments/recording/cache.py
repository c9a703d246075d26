"""Recorded programs kept between runs: a cache on disk, keyed by what a recording depends on.

A signature costs a run two recordings and one rewrite (``svi``: about 0.3 s of CPU for a
784-400-20 VAE), every run again. ``RecordingCache`` keeps each signature's final program — the
functional, simplified ``program.Program`` a replay runs — in one file, and a later run of the
same program loads it instead of recording, as PyTorch's compile caches do. The file's name is
the SHA-256 of the *material* the program depends on (``material``):

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

Tensors a program *found* rather than made — a BatchNorm's running statistics, any tensor both
recordings read as the very same object — are read live at every replay, so an entry stores
them by name (``named_tensors``: the param store's names, then the parameters and buffers of
the modules model, guide and loss are or hold) and a later run binds the names to its own
tensors; a found tensor with no such name makes the program uncacheable. Tensors the recording
or its rewrite made (folded constants, numbers of the model's code) are stored by value.

An entry holds no code: its program is a list of nodes whose operations are named
(``torch.ops`` overloads and ``operator``'s functions), loaded with ``torch.load(weights_only=
True)`` and rebuilt into a ``torch.fx`` program, so a file in the cache can at worst describe a
wrong program — which the first replay's check against Pyro's step rejects (``svi``). Writes go
to a temporary file renamed over the entry (``os.replace``: a reader sees the old file or the
new one); an entry that cannot be read, or whose material differs from its name's, is ignored
with one line (``logging``, ``experiments.recording.cache``) and recorded anew.

Where: ``$ELBO_LAB_RECORDING_CACHE`` (a folder, or ``off``), else
``$XDG_CACHE_HOME/elbo-lab/recordings``, else ``~/.cache/elbo-lab/recordings``; a run's
``--recording-cache`` overrides both. At most ``MAX_ENTRIES`` files are kept, the least
recently used dropped first.
"""
import hashlib
import json
import logging
import operator
import os
import re
import sys
import tempfile
import types
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pyro
import torch
from torch import fx, nn

import experiments
from experiments.recording import bindings
from experiments.recording.adapter import (
    TESTED_WITH,
    handlers,
    is_operation,
    operation,
    param_constraints,
)
from experiments.recording.guard import SCALARS
from experiments.recording.guard import _global_names as global_names

log = logging.getLogger(__name__)

#: the layout of an entry; a new one changes every key
FORMAT = 2
#: the environment variable naming the cache's folder, or ``off``
ENVIRONMENT = "ELBO_LAB_RECORDING_CACHE"
#: entries kept, at most (each a few hundred kB for a VAE)
MAX_ENTRIES = 256
#: how far ``_code`` follows functions, classes, objects and globals from model, guide, loss
CODE_DEPTH = 6
#: top-level packages keyed by version, whose code ``_code`` does not walk
VERSIONED = {"torch", "pyro", "numpy", "builtins"}
_ENGINE = Path(__file__).parent
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: ``model#3``: the number of a set of parts in its process (experiments.parts.namespaces)
_NUMBERED = re.compile(r"#\d+\b")


class Uncacheable(Exception):
    """This program cannot be found again by another run (the message says why)."""


def cache_folder(setting: Optional[str] = None) -> Optional[Path]:
    """The cache's folder: ``setting`` (a folder, or ``off``: None), else the environment's
    ``ELBO_LAB_RECORDING_CACHE`` (likewise), else the user's cache folder."""
    setting = setting or os.environ.get(ENVIRONMENT)
    if setting == "off":
        return None
    if setting:
        return Path(setting).expanduser()
    home = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(home) / "elbo-lab" / "recordings"


class RecordingCache:
    """Programs in files named by the SHA-256 of their material (see the module's docstring)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, material: str) -> Path:
        return self.folder / f"{hashlib.sha256(material.encode()).hexdigest()}.pt"

    def load(self, material: str) -> Optional[dict]:
        """The entry stored for ``material``, or None (none, or one that cannot be used)."""
        path = self.path(material)
        try:
            entry = torch.load(path, weights_only=True)
            if not isinstance(entry, dict) or entry.get("material") != material:
                raise ValueError("it was stored for another program or version")
            os.utime(path)                   # recently used: kept longest
            return entry
        except FileNotFoundError:
            return None
        except Exception as error:           # a file on disk: anything may be wrong with it
            log.warning("recording cache: ignored %s (%s: %s); recording anew", path,
                        type(error).__name__, str(error).splitlines()[0] if str(error) else "")
            return None

    def store(self, material: str, entry: dict) -> None:
        """Write the entry atomically (a temporary file renamed over it); a cache that cannot
        be written is left alone (one line)."""
        path = self.path(material)
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    torch.save({**entry, "material": material}, file)
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
            self._prune()
        except OSError as error:
            log.warning("recording cache: cannot write %s (%s)", path, error)

    def forget(self, material: str) -> None:
        try:
            self.path(material).unlink()
        except OSError:
            pass

    def _prune(self) -> None:
        """Drop the least recently used entries beyond ``MAX_ENTRIES``."""
        entries = sorted(self.folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        for path in entries[:max(0, len(entries) - MAX_ENTRIES)]:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the key


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
        "params": [[name, *_layout(p), p.requires_grad, str(constraints.get(name))]
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


def _layout(t: torch.Tensor) -> list:
    return [list(t.shape), list(t.stride()), str(t.dtype), str(t.device)]


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
            [[name, *_layout(t)] for name, t in module.named_parameters(remove_duplicate=False)],
            [[name, *_layout(t)] for name, t in module.named_buffers(remove_duplicate=False)]]


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


# ---------------------------------------------------------------------------------------------
# the entry: a program as plain data


def pack(program: fx.GraphModule, found: List[torch.Tensor], names: Dict[str, torch.Tensor],
         **facts) -> dict:
    """The program as plain data: its nodes, the constants it made (by value) and those it
    found (``found``: read live at every replay) by their ``names``, and ``facts`` (lists of
    numbers and flags) — all but the tensors as one JSON text, which loads fast. Raises
    ``Uncacheable`` for a found tensor with no name, or an operation that is not a named
    overload."""
    name_of = {id(t): name for name, t in reversed(list(names.items()))}
    constants, bound = {}, {}
    for node in program.graph.nodes:
        if node.op != "get_attr":
            continue
        value = getattr(program, node.target)
        if any(value is t for t in found):
            if id(value) not in name_of:
                raise Uncacheable(f"the program reads a tensor of shape {tuple(value.shape)} "
                                  "that is no parameter or buffer of model, guide or loss: "
                                  "another run cannot find it")
            bound[node.target] = [name_of[id(value)], *_layout(value)]
        else:
            constants[node.target] = value
    plan = {"nodes": [_node_record(node) for node in program.graph.nodes], "bound": bound,
            "facts": facts}
    return {"plan": json.dumps(plan), "constants": constants}


def unpack(entry: dict, names: Dict[str, torch.Tensor]) -> Optional[Tuple[fx.GraphModule, dict]]:
    """The program an entry holds, its found tensors bound by name to this run's, and its
    facts; None if a name is missing or its tensor's layout differs. Raises on an entry that
    is not well formed."""
    plan, tensors = json.loads(entry["plan"]), dict(entry["constants"])
    for attribute, (name, *layout) in plan["bound"].items():
        tensor = names.get(name)
        if tensor is None or _layout(tensor) != layout:
            return None
        tensors[attribute] = tensor
    graph, nodes = fx.Graph(), {}
    for op, name, target, args, kwargs, binding in plan["nodes"]:
        if not _NAME.match(name) or (op in ("get_attr", "placeholder") and not _NAME.match(target)):
            raise ValueError(f"a node named {name!r}")
        nodes[name] = graph.create_node(op, _target(op, target), _decode(args, nodes),
                                        _decode(kwargs, nodes), name)
        if binding is not None:
            bindings.rebind(nodes[name], binding)
    return fx.GraphModule(tensors, graph), plan["facts"]


def _node_record(node: fx.Node) -> list:
    """A node as plain data: kind, name, target, arguments, and where the binding it calls
    lives (``bindings.binding_of``: a bound node is kept as its operation, and rebound)."""
    op, target = node.op, bindings.operation(node)
    if op == "call_method" and is_operation(target):
        op = "call_function"
    if op == "call_function":
        if is_operation(target):
            target = f"op {target}"
        elif getattr(operator, getattr(target, "__name__", ""), None) is target:
            target = f"operator {target.__name__}"
        else:
            raise Uncacheable(f"the program calls {target}, not an operation of torch.ops")
    elif op not in ("placeholder", "get_attr", "output"):
        raise Uncacheable(f"the program has a node of kind {op}")
    return [op, node.name, target, _encode(node.args), _encode(node.kwargs),
            bindings.binding_of(node)]


def _target(op: str, target: str):
    if op != "call_function":
        return target
    kind, name = target.split(" ")
    if kind == "operator":
        return getattr(operator, name)
    return operation(name)


#: torch's values an argument may hold, by their name in ``torch``
_TORCH_VALUES = (torch.dtype, torch.layout, torch.memory_format)


def _encode(value):
    """An argument as plain data: ``[kind, payload]``."""
    if isinstance(value, fx.Node):
        return ["node", value.name]
    if isinstance(value, (list, tuple)):
        return ["tuple" if isinstance(value, tuple) else "list", [_encode(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[k, _encode(v)] for k, v in value.items()]]
    if isinstance(value, torch.device):
        return ["device", str(value)]
    if isinstance(value, _TORCH_VALUES):
        return ["torch", str(value).removeprefix("torch.")]
    if isinstance(value, SCALARS) and not isinstance(value, complex):
        return ["value", value]
    raise Uncacheable(f"the program holds an argument of type {type(value).__name__}")


def _decode(data, nodes: Dict[str, fx.Node]):
    kind, payload = data
    if kind == "node":
        return nodes[payload]
    if kind in ("tuple", "list"):
        values = [_decode(v, nodes) for v in payload]
        return tuple(values) if kind == "tuple" else values
    if kind == "dict":
        return {k: _decode(v, nodes) for k, v in payload}
    if kind == "device":
        return torch.device(payload)
    if kind == "torch":
        value = getattr(torch, payload)
        if not isinstance(value, _TORCH_VALUES):
            raise ValueError(f"torch.{payload} is no dtype, layout or memory format")
        return value
    if kind == "value" and isinstance(payload, SCALARS):
        return payload
    raise ValueError(f"an argument of kind {kind!r}")
