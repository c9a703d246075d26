"""A replayed program calling its operations the way eager code does: through PyTorch's
generated Python bindings, where one reaches the very same operation with the same arguments.

A recorded program calls each ATen operation as ``torch.ops.aten.add_.Tensor(x, y)``, the
boxed route: every argument converted to a generic value and back. Eager code calls
``x.add_(y)``, a binding generated for the operation that parses its arguments straight into
the kernel's: 2.6–2.8 µs a call on a 1-element tensor against 3.4–4.5 µs through
``torch.ops`` (one thread of a Xeon). A replayed training step is about a hundred calls, most
on tensors of a few thousand elements or fewer, where that difference is a good part of the
call, more so when a step's large tensors have pushed Python's objects out of the caches.

``bound`` gives each node the binding of the operation's name (``torch.addmm``,
``torch._C._nn.softplus``, or a method: ``x.add_(y)``) where calling it with the node's arguments
dispatches exactly one operation, the node's, with the same arguments: checked once per node
by calling both on meta tensors of the node's shapes (nothing is computed, nothing drawn) under
a dispatch mode that records what each call reaches. A Python number reaches the operation as
the same number either way; an overload that no binding reaches (``mul.Scalar``: the binding
wraps the number and reaches ``mul.Tensor``) and a random operation keep ``torch.ops``. The same
operation runs on the same arguments, so every value is the same to the bit. Each rebound node
keeps its operation in ``node.meta["operation"]`` (``operation``). A method is called as one
(``torch.fx``'s ``call_method``), and only where ``torch.Tensor`` does not override the C method
in Python; a function only where the name the program's code gives it is that function
(``torch.split`` is a Python wrapper, not ``torch._C._VariableFunctions.split``).
"""
import functools
from typing import Callable, Optional

import torch
from torch import fx
from torch.utils._python_dispatch import TorchDispatchMode

from experiments.recording.adapter import is_operation

#: where the generated bindings live, searched in this order
NAMESPACES = (torch._C._VariableFunctions, torch._C._nn, torch._C.TensorBase)


def bound(program: fx.GraphModule) -> fx.GraphModule:
    """The program, each operation that has an equivalent binding calling it (in place)."""
    for node in list(program.graph.nodes):
        if node.op == "call_function" and is_operation(node.target) \
                and torch.Tag.nondeterministic_seeded not in node.target.tags:
            binding = _binding(node)
            if binding is not None:
                _bind(node, binding)
    program.recompile()
    return program


def operation(node: fx.Node):
    """The operation a node of a ``bound`` program calls: its ATen overload, or its target."""
    return node.meta.get("operation", node.target)


def binding_of(node: fx.Node) -> Optional[int]:
    """Where the binding a node of a ``bound`` program calls lives: its index in
    ``NAMESPACES`` (a method: ``TensorBase``'s), or None for a node ``bound`` left alone. With
    the node's operation this names the binding, for a program kept on disk (``cache``)."""
    if "operation" not in node.meta:
        return None
    if node.op == "call_method":
        return NAMESPACES.index(torch._C.TensorBase)
    return next(i for i, space in enumerate(NAMESPACES)
                if getattr(space, node.target.__name__, None) is node.target)


def rebind(node: fx.Node, where: int) -> None:
    """Give a node calling its operation through ``torch.ops`` the binding ``bound`` chose for
    it in the run that kept the program (``binding_of``): the same operation's binding in the
    same torch (a kept program's key holds torch's version and the step's shapes), so the same
    check would choose it again; the first replay of a kept program is checked against Pyro's
    step all the same."""
    name = node.target._schema.name.split("::")[-1]
    binding = getattr(NAMESPACES[where], name)
    if not _named(binding):
        raise ValueError(f"{name} of {NAMESPACES[where].__name__} is not what its name finds")
    _bind(node, binding)


def _bind(node: fx.Node, binding: Callable) -> None:
    """The node calls ``binding`` (a method as one) instead of its operation."""
    node.meta["operation"] = node.target
    method = binding is getattr(torch._C.TensorBase, binding.__name__, None)
    node.op, node.target = ("call_method", binding.__name__) if method else (node.op, binding)


def _binding(node: fx.Node) -> Optional[Callable]:
    """The first binding of the node's operation's name that reaches the same call."""
    name = node.target._schema.name.split("::")[-1]
    candidates = [getattr(space, name) for space in NAMESPACES if hasattr(space, name)]
    candidates = [c for c in candidates if _named(c)]
    if not candidates:
        return None
    blanks = {}
    for arg in node.all_input_nodes:
        value = arg.meta.get("val")
        if not isinstance(value, torch.Tensor):
            return None
        blanks[arg] = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype,
                                          device="meta")
    args = fx.node.map_arg(node.args, blanks.__getitem__)
    kwargs = fx.node.map_arg(node.kwargs, blanks.__getitem__)
    expected = _reached(node.target, args, kwargs)
    return next((c for c in candidates if expected is not None
                 and _same(_reached(c, args, kwargs), expected)), None)


def _named(binding: Callable) -> bool:
    """Whether the binding is what its name in a program's code (a method of ``torch.Tensor``,
    or ``module.name``) finds."""
    name = binding.__name__
    if binding is getattr(torch._C.TensorBase, name, None):
        return getattr(torch.Tensor, name) is binding
    module = functools.reduce(getattr, binding.__module__.split(".")[1:], torch)
    return binding.__module__.split(".")[0] == "torch" and getattr(module, name, None) is binding


class _Reached(TorchDispatchMode):
    """Records every operation dispatched within, with its arguments, and runs it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def _reached(fn: Callable, args, kwargs) -> Optional[list]:
    """What calling ``fn`` dispatches, or None if the call fails (no meta kernel, a binding
    that takes other arguments)."""
    try:
        with _Reached() as mode:
            fn(*args, **kwargs)
    except Exception:                  # any failure: keep torch.ops
        return None
    return mode.calls


def _same(a, b) -> bool:
    """The same operations on the same tensors (the very objects) and the same values, of
    the same types (``2`` is not ``2.0``)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a is b
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
