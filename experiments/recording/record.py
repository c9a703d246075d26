"""One call of a function of tensors, recorded as a program of PyTorch (ATen) operations.

``make_fx`` runs the function on real tensors and writes down every operation that reaches
PyTorch's dispatcher, autograd's backward pass included, with the tensors it was given as the
program's inputs: what Python did to decide on those operations (Pyro's handlers, traces,
distribution objects) is not in the program. Random operations are recorded as operations, so a
replay draws from the global generator exactly the numbers the function would have drawn.

A recording stands for later calls only if the function would have run the same operations on
other values. Three things make that false, and all are refused here (``NotRecordable``):

- Python reading any tensor's value (``.item()``, ``if tensor:``, ``float(tensor)``,
  ``int``, ``.tolist()``, ``.numpy()``, ``numpy.asarray(tensor)``), whether the tensor is
  computed from the inputs or draws or found elsewhere (a buffer, a tensor a closure holds,
  updated in place between calls): refused as it happens, naming the file and line;
- an operation whose output shape depends on values (``nonzero``, indexing by a boolean mask
  computed from the inputs): found in the program (PyTorch tags them ``dynamic_output_shape``;
  a mask made of constants, such as a model's buffer, picks the same elements every time);
- draws from Python's ``random`` or NumPy's global generator, which a replay would not repeat.

What a recording cannot see — other Python state that changes between calls (a counter) — is
the caller's to watch (``guard``) and compare (``svi.RecordedSVI`` records twice).
"""
import os
import random
import traceback
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
from torch import fx
from torch.fx.experimental.proxy_tensor import make_fx
from torch.overrides import TorchFunctionMode

from experiments.recording.adapter import fake_metadata, is_operation, reads_traced_value


class NotRecordable(Exception):
    """The function's operations may depend on the values it sees; the message says where."""


def record(fn: Callable[..., Sequence[torch.Tensor]],
           inputs: Sequence[torch.Tensor]) -> Tuple[fx.GraphModule, List[torch.Tensor]]:
    """``fn(*inputs)`` computed once, and recorded: (the program, the outputs of this call).

    The program takes the inputs positionally and returns the outputs as a list; ``inputs`` may
    be tensors ``fn`` reaches by other routes too (a model's parameters): every use of those
    very tensor objects becomes a use of the program's input."""
    outputs: List[torch.Tensor] = []

    def recorded(*args):
        outputs[:] = fn(*args)
        return list(outputs)

    python_draws = _python_generators()
    try:
        with _RefuseValueReads(), fake_metadata():
            program = make_fx(recorded, tracing_mode="real")(*inputs)
    except RuntimeError as error:
        if reads_traced_value(error):
            raise NotRecordable(f"a tensor's value is read in Python (.item(), if tensor:, "
                                f"float(tensor)) at {_reader(error)}") from None
        raise
    if _python_generators() != python_draws:
        raise NotRecordable("the model or guide draws from Python's random or NumPy's global "
                            "generator, which a replay would not repeat")
    for node in program.graph.nodes:
        if _dynamic_shape(node):
            raise NotRecordable(f"{node.target} gives an output whose shape depends on the "
                                "values of its input (e.g. indexing with a boolean mask)")
    return program, [o.detach() for o in outputs]


class _RefuseValueReads(TorchFunctionMode):
    """Refuses every read of a tensor's values into Python, of recorded and found tensors
    alike: a replay would keep the value this recording read."""

    READS = {torch.Tensor.tolist: ".tolist()", torch.Tensor.numpy: ".numpy()",
             torch.Tensor.__array__: "numpy.asarray(tensor)", torch.Tensor.item: ".item()",
             torch.Tensor.__float__: "float(tensor)", torch.Tensor.__int__: "int(tensor)",
             torch.Tensor.__bool__: "if tensor:", torch.Tensor.__index__: "a tensor as an index",
             torch.Tensor.__complex__: "complex(tensor)"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS:
            raise NotRecordable(f"a tensor's value is read in Python ({self.READS[func]}) at "
                                f"{_place(traceback.extract_stack())}")
        return func(*args, **(kwargs or {}))


def _python_generators() -> tuple:
    """The states of Python's and NumPy's global generators, comparable with ``==``."""
    _, keys, position, *gauss = np.random.get_state()
    return random.getstate(), keys.tobytes(), position, *gauss


def _reader(error: BaseException) -> str:
    """file:line (function) of the innermost frame outside PyTorch where ``error`` arose."""
    return _place(traceback.extract_tb(error.__traceback__))


def _place(frames) -> str:
    frames = [f for f in frames if f"{os.sep}torch{os.sep}" not in f.filename
              and f.filename != __file__]
    if not frames:
        return "an unknown place"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})"


def _dynamic_shape(node: fx.Node) -> bool:
    """Whether the node's output shape depends on values: an operation PyTorch tags so, but
    ``index`` only with a boolean index (integer indices give the index's shape)."""
    if node.op != "call_function" or not is_operation(node.target):
        return False
    if torch.Tag.dynamic_output_shape not in node.target.tags:
        return False
    if node.target is torch.ops.aten.index.Tensor:
        return any(isinstance(i, fx.Node) and i.meta["val"].dtype in (torch.bool, torch.uint8)
                   and _reads_inputs(i) for i in node.args[1] if i is not None)
    return True


def _reads_inputs(node: fx.Node) -> bool:
    """Whether the node's value depends on the program's inputs or draws (a boolean mask made
    of constants alone, e.g. a model's buffer, picks the same elements at every call)."""
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.op == "placeholder" or (
                is_operation(current.target)
                and torch.Tag.nondeterministic_seeded in current.target.tags):
            return True
        todo.extend(current.all_input_nodes)
    return False
