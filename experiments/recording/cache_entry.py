"""A recorded program as plain data: the file ``cache`` keeps for a signature.

Tensors a program *found* rather than made — a BatchNorm's running statistics, any tensor both
recordings read as the very same object — are read live at every replay, so an entry stores
them by name (``cache_key.named_tensors``: the param store's names, then the parameters and
buffers of the modules model, guide and loss are or hold) and a later run binds the names to its
own tensors; a found tensor with no such name makes the program uncacheable. Tensors the recording
or its rewrite made (folded constants, numbers of the model's code) are stored by value.

An entry holds no code: its program is a list of nodes whose operations are named
(``torch.ops`` overloads and ``operator``'s functions), loaded with ``torch.load(weights_only=
True)`` and rebuilt into a ``torch.fx`` program, so a file in the cache can at worst describe a
wrong program — which the first replay's check against Pyro's step rejects (``svi``).
"""
import json
import operator
import re
from typing import Dict, List, Optional, Tuple

import torch
from torch import fx

from experiments.recording import bindings
from experiments.recording.adapter import is_operation, operation
from experiments.recording.cache import Uncacheable
from experiments.recording.guard import SCALARS

#: the layout of an entry; a new one changes every key
FORMAT = 2
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def layout(t: torch.Tensor) -> list:
    """A tensor's shape, strides, dtype and device, as plain data."""
    return [list(t.shape), list(t.stride()), str(t.dtype), str(t.device)]


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
            bound[node.target] = [name_of[id(value)], *layout(value)]
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
    for attribute, (name, *stored) in plan["bound"].items():
        tensor = names.get(name)
        if tensor is None or layout(tensor) != stored:
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
