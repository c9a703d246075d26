"""A recorded training step: its program, the parameters it takes, and how two compare.

``Program`` holds what ``svi.RecordedSVI`` records at a step — the program of ATen
operations (loss, then the gradients of the parameters it differentiates), the parameters in
the order the program takes them, which the step used and which got a gradient — and says when
two recordings are the same program (``same_as``) and which gradients a replay may hand to an
optimizer as they are (``owned``: the program's own fresh memory, which an optimizer may write
into, e.g. to clip).
"""
import operator
from dataclasses import dataclass, replace
from typing import List, Optional

import torch
from torch import fx

from experiments.recording.adapter import is_operation
from experiments.recording.bindings import bound
from experiments.recording.functional import functional
from experiments.recording.simplify import aliasing, simplify


@dataclass
class Program:
    """A recorded step: the program, the parameters it takes (in order), the positions among
    them of those the step uses (handed to the optimizer, as ``SVI`` does) and of those it
    returns a gradient for (a parameter read without a gradient, e.g. under ``no_grad``, gets
    none, and the optimizer skips it)."""

    program: fx.GraphModule
    params: List[torch.Tensor]
    stepped: List[int]
    graded: List[int]
    #: for each gradient of a replayable program, whether the program computes it afresh at
    #: every replay (not a constant, an input, a view of one, or a tensor it returns twice)
    owned: Optional[List[bool]] = None

    def replayable(self, inputs: List[torch.Tensor]) -> "Program":
        """The program a replay runs: functional, simplified, with ``owned`` set, calling its
        operations through Python's bindings (``bindings``). ``inputs``: the program's inputs
        at a step (the parameters first), copied, not written."""
        program = simplify(functional(self.program, inputs))
        owned = _fresh_outputs(program)[1:]
        return replace(self, program=bound(program), owned=owned)

    def same_as(self, other: "Program") -> bool:
        """The same operations on the same shapes with the same constants."""
        return (self.program.code == other.program.code and self.stepped == other.stepped
                and self.graded == other.graded
                and all(a is b for a, b in zip(self.params, other.params))
                and len(self.params) == len(other.params)
                and _same_constants(self.program, other.program))


def _fresh_outputs(program: fx.GraphModule) -> List[bool]:
    """For each output, whether its memory is computed at every replay and no other output
    shares it (not a constant, not an input, not a view of one)."""
    outputs = next(n for n in program.graph.nodes if n.op == "output").args[0]
    memories = [_memory_of(node) for node in outputs]
    return [memory.op == "call_function" and memories.count(memory) == 1
            for memory in memories]


def _memory_of(node: fx.Node) -> fx.Node:
    """The node whose output holds the memory that ``node``'s output is (a view of)."""
    while node.op == "call_function" and isinstance(node.args[0], fx.Node) and (
            node.target is operator.getitem
            or is_operation(node.target) and aliasing(node.target)):
        node = node.args[0]
    return node


def agree(replayed: List[torch.Tensor], computed: List[torch.Tensor]) -> bool:
    """The same loss and gradients, to float rounding."""
    return len(replayed) == len(computed) and all(
        a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        for a, b in zip(replayed, computed))


def _same_constants(a: fx.GraphModule, b: fx.GraphModule) -> bool:
    """Whether the programs' constants agree: a tensor both recordings found (the same object,
    read live at every replay, e.g. a model's buffer) by identity, one each recording made
    (from Python numbers, say a temperature) by value."""
    names = [n.target for n in a.graph.nodes if n.op == "get_attr"]
    return all(getattr(a, name) is getattr(b, name) or
               torch.equal(getattr(a, name), getattr(b, name)) for name in names)
