"""A recorded program without mutation: PyTorch's functionalization, applied to the recording.

A recording holds in-place operations: the random fills Pyro's draws make (``empty`` then
``normal_``), autograd's in-place formulas, ``t[:, 0] = s``, BatchNorm's updates of its running
statistics. ``functional`` rewrites the program with ``torch.func.functionalize`` (under
``make_fx``): every in-place operation becomes its out-of-place version (``normal_`` →
``normal_functional``, a write through a view → ``select_scatter``), so nothing in the program
writes to memory another operation reads, and passes that move, merge or drop operations need
no alias analysis. Views stay views (``remove="mutations"``): copying them would change the
layouts the matrix products see, and their rounding.

What the step writes outside the program — a tensor it found (a model's buffer) or one of its
inputs — is written at the end, by one ``copy_`` each (functionalization's epilogue), so a
replay leaves the same values there as the recorded step. Found tensors are lifted to inputs
for the rewrite (functionalization writes back only into inputs) and are constants again
after it, the very tensor objects the recording found.

The rewrite runs the program once, on copies of its inputs and with the random state restored
after, so nothing a step owns is touched; a program without in-place operations is kept as it is.
"""
from typing import List, Sequence

import torch
from torch import fx
from torch.fx.experimental.proxy_tensor import make_fx

from experiments.recording.adapter import fake_metadata, mutates


def functional(program: fx.GraphModule, inputs: Sequence[torch.Tensor]) -> fx.GraphModule:
    """The program, computing the same values with no in-place operation but the epilogue's
    writes into its inputs and found tensors (see the module's docstring)."""
    if not any(node.op == "call_function" and mutates(node.target)
               for node in program.graph.nodes):
        return program
    names = list(dict.fromkeys(node.target for node in program.graph.nodes
                               if node.op == "get_attr"))
    found = [getattr(program, name) for name in names]
    copies = [_copy(t) for t in [*inputs, *found]]
    with torch.random.fork_rng(), fake_metadata():
        rewritten = make_fx(torch.func.functionalize(_lifted(program), remove="mutations"))(
            *copies)
    _lower(rewritten, names, found)
    return rewritten


def _lifted(program: fx.GraphModule) -> fx.GraphModule:
    """The program taking its found tensors as inputs, after its own, in the order found."""
    graph, values, found = fx.Graph(), {}, {}
    for node in program.graph.nodes:
        if node.op == "placeholder":
            values[node] = graph.node_copy(node, values.__getitem__)
    for node in program.graph.nodes:
        if node.op == "get_attr":
            if node.target not in found:
                found[node.target] = graph.placeholder(f"found_{node.target}")
            values[node] = found[node.target]
    for node in program.graph.nodes:
        if node.op not in ("placeholder", "get_attr"):
            values[node] = graph.node_copy(node, values.__getitem__)
    return fx.GraphModule(torch.nn.Module(), graph)


def _lower(program: fx.GraphModule, names: List[str], found: List[torch.Tensor]) -> None:
    """Turn the inputs standing for found tensors into constants again: those very tensors."""
    placeholders = [node for node in program.graph.nodes if node.op == "placeholder"]
    first = next(node for node in program.graph.nodes if node.op != "placeholder")
    for node, name, tensor in zip(placeholders[len(placeholders) - len(names):], names, found):
        program.register_buffer(name, tensor, persistent=False)
        with program.graph.inserting_before(first):
            constant = program.graph.get_attr(name)
        constant.meta = dict(node.meta)
        node.replace_all_uses_with(constant)
        program.graph.erase_node(node)
    program.recompile()


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of the tensor with its layout (strides), not tracking gradients."""
    return tensor.detach().clone(memory_format=torch.preserve_format)
