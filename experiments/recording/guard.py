"""What a replay depends on beyond its inputs, watched between steps.

A replay runs the recorded operations on the parameters it was recorded with and on the step's
tensor arguments; no Python runs. Whatever the model's Python decided from other state is fixed
in the program, so a ``Watch`` keeps that state as it was when the recordings were made, and
``changed`` names the first part of it that is no longer so (checked before every replay, by
identity and by value — no tensor is read):

- the param store still holds, under each name, the very tensor the programs take, and each
  still requires its gradient (``set_state``, ``store[name] = …``, ``clear_param_store``,
  ``requires_grad_(False)`` change that);
- every ``nn.Module`` that ran during a recording keeps its ``training`` flag and its own
  parameters, buffers and submodules (``eval()``, a layer swapped for a new one, a buffer
  rebound);
- the Python values the model, guide and loss can reach directly — attributes of the objects
  they are or are bound to, the variables their closures hold, the globals their code names,
  and, up to ``MAX_DEPTH`` steps further, the attributes and items of the objects, dicts, lists
  and tuples found there (a list's first ``MAX_ITEMS`` items): numbers, strings and flags by
  value, tensors and modules by identity (a β the loop anneals, ``num_particles`` set on the
  loss, a prior scale rebound to a new tensor, ``betas[0] = 0.5``).

``modules_run`` finds the modules a recording ran and keeps a copy of their buffers from before
they ran, so that a refused recording can be undone (BatchNorm's running statistics).
"""
import functools
import operator
import types
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from experiments.recording.adapter import store_params, untraced

#: values compared by value; tensors and modules by identity
SCALARS = (int, float, bool, str, complex, type(None))
#: how many steps from the model, guide or loss the watch follows attributes and items
MAX_DEPTH = 3
#: values watched at most (the rest is left to the run-time check)
MAX_WATCHED = 2000
#: items watched of each list (a longer list's others are left to the run-time check)
MAX_ITEMS = 64
_MISSING = object()


class Watch:
    """The state a set of recordings depends on, as it was (see the module's docstring)."""

    def __init__(self, roots: Dict[str, object], params: Dict[str, torch.Tensor]):
        self.sources: List[tuple] = []       # (dict, key): where each watched value is read
        self.values: List[object] = []       # the values, as they were
        self.whats: List[str] = []           # what each one is, for the line
        self.cells: List[tuple] = []         # (closure cell, value, what it is)
        self.names = list(params)            # the param store's names …
        self.params = list(params.values())  # … and the tensors it held
        self.flags = [(name, p) for name, p in params.items()]   # tensors, each requiring grad
        self.requires = [p.requires_grad for _, p in self.flags]
        self.modules: List[nn.Module] = []   # the modules that ran in a recording
        self._seen = set()
        for name, root in roots.items():
            self._visit(root, name, 0)

    def add_module(self, module: nn.Module) -> None:
        """Watch a module that ran: its flags, parameters, buffers and submodules (once, however
        many recordings it ran in; a parameter's ``requires_grad`` once, however many names it
        has: the param store's and its module's)."""
        if module in self.modules:
            return
        self.modules.append(module)
        name = type(module).__name__
        for key, value in vars(module).items():
            if isinstance(value, SCALARS):
                self._add(vars(module), key, f"{name}.{key}")
        for kind in ("_parameters", "_buffers", "_modules"):
            items = getattr(module, kind)
            for key, value in items.items():
                self._add(items, key, f"{name}.{key}")
                if isinstance(value, nn.Parameter) and not any(value is p for _, p in self.flags):
                    self.flags.append((f"{name}.{key}", value))
                    self.requires.append(value.requires_grad)

    def changed(self) -> Optional[str]:
        """What is no longer as it was, or None. One pass of identity tests (in C) at every
        call; a value compared equal but not identical (a float assigned anew) is kept."""
        now = [source.get(key, _MISSING) for source, key in self.sources]
        if not all(map(operator.is_, now, self.values)):
            for i, (value, then) in enumerate(zip(now, self.values)):
                if not _same(value, then):
                    return self.whats[i]
                self.values[i] = value
        for cell, value, what in self.cells:
            if not _same(_contents(cell), value):
                return what
        store = store_params()
        if not all(map(operator.is_, map(store.get, self.names), self.params)):
            name = next(n for n, p in zip(self.names, self.params) if store.get(n) is not p)
            return f"the parameter {name} in the param store"
        if [p.requires_grad for _, p in self.flags] != self.requires:
            return next(f"requires_grad of {name}" for (name, p), then
                        in zip(self.flags, self.requires) if p.requires_grad is not then)
        return None

    def _add(self, source: dict, key, what: str) -> None:
        if (id(source), key) not in self._seen:
            self._seen.add((id(source), key))
            self.sources.append((source, key))
            self.values.append(source[key])
            self.whats.append(what)

    def _visit(self, obj, where: str, depth: int) -> None:
        """Watch what ``obj`` reaches directly, and follow functions, objects and dicts."""
        if depth > MAX_DEPTH or id(obj) in self._seen or len(self.sources) > MAX_WATCHED \
                or isinstance(obj, (types.ModuleType, type, *SCALARS)) or torch.is_tensor(obj):
            return
        self._seen.add(id(obj))
        if isinstance(obj, types.MethodType):
            self._visit(obj.__self__, where, depth)
            self._visit(obj.__func__, where, depth)
        elif isinstance(obj, functools.partial):
            self._visit(obj.func, where, depth)
            for value in obj.args:
                self._visit(value, where, depth + 1)
            self._watch(obj.keywords, where, depth)
        elif isinstance(obj, types.FunctionType):
            self._watch_function(obj, depth)
        elif isinstance(obj, dict):
            self._watch(obj, where, depth)
        elif isinstance(obj, (list, tuple)):
            self._watch_items(obj, where, depth)
        elif hasattr(obj, "__dict__"):
            self._watch(vars(obj), type(obj).__name__, depth)

    def _watch_function(self, function: types.FunctionType, depth: int) -> None:
        code = function.__code__
        for name, cell in zip(code.co_freevars, function.__closure__ or ()):
            value = _contents(cell)
            what = f"the variable {name} of {function.__qualname__}"
            if _watched(value):
                self.cells.append((cell, value, what))
            self._visit(value, what, depth + 1)
        names = _global_names(code)
        self._watch({k: v for k, v in function.__globals__.items() if k in names},
                    "the global", depth, function.__globals__)

    def _watch(self, items: dict, where: str, depth: int, container=None) -> None:
        """Watch the values of ``items`` (read from ``container``, by default ``items``)."""
        for key, value in list(items.items()):
            if _watched(value):
                self._add(items if container is None else container, key,
                          f"{where}.{key}" if container is None else f"{where} {key}")
            self._visit(value, f"{where}.{key}", depth + 1)

    def _watch_items(self, items, where: str, depth: int) -> None:
        """Watch a list's first ``MAX_ITEMS`` items and follow them (a tuple's, which cannot
        be reassigned, are only followed)."""
        source = _Items(items)
        for index, value in enumerate(items[:MAX_ITEMS]):
            if isinstance(items, list) and _watched(value):
                self._add(source, index, f"{where}[{index}]")
            self._visit(value, f"{where}[{index}]", depth + 1)


class _Items:
    """A list read as ``Watch`` reads a dict: ``get(index, default)``."""

    def __init__(self, items: list):
        self.items = items

    def get(self, index: int, default):
        return self.items[index] if index < len(self.items) else default

    def __getitem__(self, index: int):
        return self.items[index]


@contextmanager
def modules_run():
    """Within: the modules that run, in order, each with copies of its buffers as they were
    before it first ran (a dict module → [(buffer, copy)])."""
    seen: Dict[nn.Module, list] = {}

    def before(module, args):
        if module not in seen:
            with untraced():
                seen.update(snapshot([module]))

    handle = register_module_forward_pre_hook(before)
    try:
        yield seen
    finally:
        handle.remove()


def snapshot(modules) -> Dict[nn.Module, list]:
    """Copies of the modules' own buffers: module → [(buffer, copy)]."""
    with torch.no_grad():
        return {m: [(b, b.clone()) for b in m.buffers(recurse=False)] for m in modules}


def restore_buffers(seen: Dict[nn.Module, list]) -> None:
    """Write back the buffers' values from before the modules ran."""
    with torch.no_grad():
        for buffers in seen.values():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def _watched(value) -> bool:
    return isinstance(value, (*SCALARS, nn.Module)) or torch.is_tensor(value)


def _same(now, then) -> bool:
    return now is then or (type(now) is type(then) and isinstance(then, SCALARS)
                           and now == then)


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:                      # a variable not yet assigned
        return _MISSING


def _global_names(code: types.CodeType) -> set:
    """The global names a function's code (and the code nested in it) may read."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names
