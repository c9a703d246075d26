"""Dropping what a recorded program computes for nothing, without changing what it computes.

A recording of a Pyro step holds every operation Pyro's Python happened to run: aliases, a
transpose of a transpose, an ``expand`` to the shape a tensor already has, ``x + 0``,
``x / 1``, densities of N(0, I) whose ``log σ`` is ``log 1``, the loss and its surrogate computed
twice over, tensors of ones made afresh each step. ``simplify`` rewrites a *functional* program
(``functional.functional``: no operation writes to memory another reads, but the epilogue's
``copy_`` into found tensors and inputs), in order:

1. identities: ``alias(x)``, ``t(t(x))``, an ``expand``/``view``/``permute``/``transpose`` to
   x's own shape and strides, ``x − 0``, ``x · 1``, ``x / 1``, ``x ** 1`` (same shape and
   dtype) become ``x`` (not ``x + 0`` nor ``x − (−0)``, which turn −0.0 into +0.0);
2. constants: an operation that reads of its input only the shape, dtype and device
   (``ones_like``, ``new_zeros``, …, fixed in a recording) is computed once, and so is one whose
   inputs are all such results, if it is on the allow-list (``allowed``): tagged by PyTorch as
   elementwise or a reduction, a view, or a factory of fixed values (``FACTORIES``) — never a
   random operation, even one missing its tag; the program keeps them as buffers. Tensors the
   recording found rather than made (a model's buffers, tensors its Python holds) are never
   folded: they may change between steps. An ``x − c``, ``x · c`` or ``x / c`` whose folded
   constant c holds only +0s (for −) or 1s (for · and /) and leaves x's shape and dtype is
   ``x`` (the log-density
   of N(0, I): ``(z − 0) / 1``, ``− log 1``);
3. duplicates: an operation on the allow-list repeated on the same arguments is computed once
   (arguments compared as ``0``, ``0.0`` and ``False`` differ: ``x * 2`` and ``x * 2.0`` give
   other dtypes for an integer x, which ``torch.fx``'s ``CSEPass`` merges);
4. dead code: what no output needs is dropped (the epilogue's writes stay);
5. in place: an elementwise operation whose input is a fresh tensor that nothing else reads
   (not even a view) writes its result into that tensor (``sigmoid(l) − x`` as
   ``sigmoid(l).sub_(x)``), as autograd's own formulas do outside a recording, where a recording
   sees the out-of-place versions (PyTorch takes those whenever a dispatch mode is active): one
   allocation, and one pass over fresh memory, less per operation — K × B × D values for a
   likelihood's backward. (``torch.fx.passes.reinplace`` does this for programs without
   constants; it cannot propagate the real tensors a recording keeps as constants.)

Every random operation stays, in its place, so a replay draws the numbers the recorded step
drew. Each rewrite gives the same values: the program's outputs are unchanged to the bit
(``tests/test_recording.py``).
"""
import torch
from torch import fx

from experiments.recording.adapter import aliases, is_operation, mutates

aten = torch.ops.aten

#: operations whose output depends only on the shape, dtype and device of their tensor input
SHAPE_ONLY = {aten.new_zeros.default, aten.new_ones.default, aten.new_full.default,
              aten.zeros_like.default, aten.ones_like.default, aten.full_like.default}
#: operations of no tensor input that make the same tensor every time
FACTORIES = {aten.full.default, aten.zeros.default, aten.ones.default,
             aten.scalar_tensor.default, aten.arange.default, aten.arange.start,
             aten.arange.start_step, aten.tril_indices.default, aten.triu_indices.default}
#: x op scalar = x
NEUTRAL = {aten.sub.Tensor: 0, aten.mul.Tensor: 1, aten.mul.Scalar: 1,
           aten.div.Tensor: 1, aten.div.Scalar: 1, aten.pow.Tensor_Scalar: 1}
#: out-of-place elementwise operations and their in-place versions (step 5)
IN_PLACE = {aten.add.Tensor: aten.add_.Tensor, aten.sub.Tensor: aten.sub_.Tensor,
            aten.mul.Tensor: aten.mul_.Tensor, aten.div.Tensor: aten.div_.Tensor,
            aten.mul.Scalar: aten.mul_.Scalar, aten.neg.default: aten.neg_.default,
            aten.sigmoid.default: aten.sigmoid_.default, aten.exp.default: aten.exp_.default,
            aten.log.default: aten.log_.default, aten.relu.default: aten.relu_.default,
            aten.pow.Tensor_Scalar: aten.pow_.Scalar}
COMMUTATIVE = {aten.add.Tensor, aten.mul.Tensor}
#: views whose schema does not say so
UNANNOTATED_VIEWS = {aten._unsafe_view.default}
VIEWS = {aten.expand.default, aten.view.default, aten._unsafe_view.default,
         aten.reshape.default, aten.permute.default, aten.transpose.int}
#: x op c = x for a tensor c all of whose elements are this (+0 for sub)
NEUTRAL_TENSORS = {aten.sub.Tensor: 0, aten.mul.Tensor: 1, aten.div.Tensor: 1}


def simplify(program: fx.GraphModule) -> fx.GraphModule:
    """The functional program, rewritten in place (steps 1–5 above), recompiled."""
    graph = program.graph
    for node in list(graph.nodes):
        same = _identity_of(node)
        if same is not None:
            node.replace_all_uses_with(same)
            graph.erase_node(node)
    _drop_neutral_constants(program, _fold_constants(program))
    _merge_duplicates(graph)
    graph.eliminate_dead_code(is_impure_node=lambda node: node.is_impure() or _random(node))
    _in_place(graph)
    program.recompile()
    return program


def _identity_of(node: fx.Node):
    """The node's input if the node computes it unchanged, else None."""
    if node.op != "call_function" or not node.args or not isinstance(node.args[0], fx.Node):
        return None
    target, source = node.target, node.args[0]
    if target in (aten.alias.default, aten.lift_fresh_copy.default):
        return source
    if target is aten.t.default and source.target is aten.t.default:
        return source.args[0]
    if target in VIEWS and _layout(source) == _layout(node):
        return source
    if target in NEUTRAL and len(node.args) == 2 and not node.kwargs \
            and _is_number(node.args[1]) and _neutral(node.args[1], NEUTRAL[target]) \
            and _layout(source) == _layout(node):
        return source
    return None


def _fold_constants(program: fx.GraphModule) -> set:
    """Compute once what depends only on shapes (step 2); keep it as an attribute. Returns
    the attributes' names."""
    graph, value = program.graph, {}
    for node in graph.nodes:
        if node.op != "call_function" or _random(node) or _mutates(node) or _empty(node) \
                or not is_operation(node.target):
            continue
        if node.target in SHAPE_ONLY:
            args = (_blank(node.args[0]), *node.args[1:])
        elif all(arg in value for arg in node.all_input_nodes) and allowed(node.target):
            args = fx.node.map_arg(node.args, value.__getitem__)
        else:
            continue
        result = node.target(*args, **fx.node.map_arg(node.kwargs, value.__getitem__))
        if isinstance(result, torch.Tensor):
            value[node] = result
    names = set()
    for number, node in enumerate(n for n in list(graph.nodes)
                                  if n.op == "call_function" and n in value):
        name = f"_constant{number}"
        program.register_buffer(name, value[node], persistent=False)
        with graph.inserting_before(node):
            constant = graph.get_attr(name)
        constant.meta = dict(node.meta)
        node.replace_all_uses_with(constant)
        graph.erase_node(node)
        names.add(name)
    return names


def _drop_neutral_constants(program: fx.GraphModule, folded: set) -> None:
    """``x − c``, ``x · c``, ``x / c`` → ``x`` where c is a folded constant (one of the
    attributes named in ``folded``, never a found tensor) all of whose elements are the
    operation's neutral number and x's layout is the result's (step 2)."""
    for node in list(program.graph.nodes):
        neutral = NEUTRAL_TENSORS.get(node.target)
        if neutral is None or len(node.args) != 2 or node.kwargs:
            continue
        source, constant = node.args
        if isinstance(source, fx.Node) and isinstance(constant, fx.Node) \
                and constant.op == "get_attr" and constant.target in folded \
                and _layout(source) == _layout(node) \
                and _neutral(getattr(program, constant.target), neutral):
            node.replace_all_uses_with(source)
            program.graph.erase_node(node)


def _neutral(value, neutral: int) -> bool:
    """Whether a number, or every element of a tensor, is ``neutral`` (+0, not −0, for 0)."""
    value = torch.as_tensor(value)
    return bool((value == neutral).all()) and not (neutral == 0 and value.signbit().any())


def allowed(target) -> bool:
    """On the allow-list of operations folded (step 2) and merged (step 3): a factory of fixed
    values, a view, an elementwise operation or a reduction, none writing or drawing."""
    return is_operation(target) and not mutates(target) \
        and torch.Tag.nondeterministic_seeded not in target.tags \
        and (target in FACTORIES or aliasing(target) or torch.Tag.pointwise in target.tags
             or torch.Tag.reduction in target.tags)


def _in_place(graph: fx.Graph) -> None:
    """Step 5: ``op(a, b)`` → ``op_(a, b)`` where ``a`` is the fresh output of an operation (no
    view, no constant, no input), read by this node alone, and of the result's shape,
    strides and dtype; for ``add`` and ``mul`` the arguments may swap to make that so. A result
    written in place by this step is fresh in turn."""
    outputs = {arg for node in graph.nodes if node.op == "output"
               for arg in node.all_input_nodes}
    made = set()

    def writable(arg, node: fx.Node) -> bool:
        fresh = isinstance(arg, fx.Node) and arg.op == "call_function" and (
            arg in made or is_operation(arg.target)
            and not aliasing(arg.target) and not _mutates(arg) and not _random(arg))
        return (fresh and list(arg.users) == [node] and arg not in outputs
                and _layout(arg) is not None and _layout(arg) == _layout(node))

    for node in list(graph.nodes):
        in_place = IN_PLACE.get(node.target)
        if in_place is None or node.kwargs:
            continue
        args = list(node.args)
        if not writable(args[0], node) and node.target in COMMUTATIVE \
                and writable(args[1], node):
            args[0], args[1] = args[1], args[0]
        if not writable(args[0], node):
            continue
        with graph.inserting_before(node):
            replacement = graph.call_function(in_place, tuple(args))
        replacement.meta = dict(node.meta)
        made.add(replacement)
        node.replace_all_uses_with(replacement)
        graph.erase_node(node)


def aliasing(target) -> bool:
    """Whether the operation's output may share memory with its first input (a view, or the
    input an in-place operation returns)."""
    return aliases(target) or target in UNANNOTATED_VIEWS


def _merge_duplicates(graph: fx.Graph) -> None:
    """One node for every set of nodes that apply the same allowed operation to the same
    arguments (step 3)."""
    seen = {}
    for node in list(graph.nodes):
        if node.op != "call_function" or not allowed(node.target):
            continue
        key = (node.target, _key(node.args), _key(node.kwargs))
        if key in seen:
            node.replace_all_uses_with(seen[key])
            graph.erase_node(node)
        else:
            seen[key] = node


def _key(arg):
    """A hashable key of an argument that tells 0 from 0.0 and from False."""
    if isinstance(arg, (list, tuple)):
        return (type(arg).__name__, *map(_key, arg))
    if isinstance(arg, dict):
        return tuple(sorted((k, _key(v)) for k, v in arg.items()))
    if isinstance(arg, fx.Node):
        return arg
    return type(arg).__name__, repr(arg)


def _layout(node: fx.Node):
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return None
    return tuple(value.shape), value.stride(), value.dtype


def _blank(node: fx.Node) -> torch.Tensor:
    """A tensor of the node's shape, strides, dtype and device (its values unused)."""
    value = node.meta["val"]
    return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype,
                               device=value.device)


def _is_number(arg) -> bool:
    return isinstance(arg, (int, float)) and not isinstance(arg, bool)


def _random(node: fx.Node) -> bool:
    return is_operation(node.target) and torch.Tag.nondeterministic_seeded in node.target.tags


def _mutates(node: fx.Node) -> bool:
    return node.op == "call_function" and mutates(node.target)


def _empty(node: fx.Node) -> bool:
    """Uninitialized memory: never a constant."""
    return node.target in (aten.empty.memory_format, aten.empty_strided.default,
                           aten.new_empty.default, aten.empty_like.default)
