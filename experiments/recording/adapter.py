"""Every use of PyTorch's and Pyro's private machinery by the recording (and by the optimizer
step a replay is followed by, ``experiments.training.optim.fused_adam_step``), in one place.

The recording uses what no public API gives: a way to run operations unrecorded inside
``make_fx``, a cheaper way for it to note each value's layout, a way to skip the value checks
of distributions made while validation was on, an operation's schema (does it write, does its
output alias an input), Pyro's handler stack, the param store's dictionary of unconstrained
tensors, the text of the error ``make_fx`` raises when Python reads a traced value, and fused
Adam's kernel with the hooks ``Optimizer.step`` would run around it. Each is
checked against the versions it was tested with (``TESTED_WITH``); under any other version
``RecordedSVI`` steps through Pyro's
``SVI.step`` from the start, with one line saying so (``untested_versions``).
"""
from contextlib import contextmanager
from typing import Dict, Optional

import pyro
import torch
from pyro.poutine.runtime import _PYRO_STACK
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.experimental import proxy_tensor
from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

#: the releases this module was tested with
TESTED_WITH = {"torch": "2.14.1", "pyro-ppl": "1.9.2"}


def untested_versions() -> Optional[str]:
    """Why the recording cannot be trusted here (a version it was not tested with), or None."""
    found = {"torch": torch.__version__.split("+")[0], "pyro-ppl": pyro.__version__}
    others = [f"{name} {found[name]}" for name, version in TESTED_WITH.items()
              if found[name] != version]
    if not others:
        return None
    tested = ", ".join(f"{name} {version}" for name, version in TESTED_WITH.items())
    return f"recording is tested with {tested}, not {', '.join(others)}"


def untraced():
    """A context in which operations run without being recorded (snapshots of buffers)."""
    return disable_proxy_modes_tracing()


@contextmanager
def fake_metadata():
    """``make_fx`` noting each real tensor's shape, strides, dtype and device (``meta["val"]``)
    as a fake tensor of one fake mode per recording, made as the mode makes its own (a tensor on
    the ``meta`` device, wrapped), not by a new mode per value: the same description, at 40% of
    the recording's time for a VAE's step."""
    mode, extract = FakeTensorMode(allow_fallback_kernels=True), proxy_tensor.extract_val

    def layout(value, include_real=False):
        if not isinstance(value, torch.Tensor) or proxy_tensor.is_fake(value) \
                or value.is_sparse:
            return extract(value, include_real)
        meta = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype,
                                   device="meta")
        return FakeTensor(mode, meta, value.device)

    proxy_tensor.extract_val = layout
    try:
        yield
    finally:
        proxy_tensor.extract_val = extract


@contextmanager
def unvalidated():
    """Pyro's and ``torch.distributions``' validation off, for distributions made before (with
    validation on: a prior built with a model) too. The checks read values; Pyro's steps run
    them."""
    check = torch.distributions.Distribution._validate_sample
    torch.distributions.Distribution._validate_sample = lambda self, value: None
    try:
        with pyro.validation_enabled(False):
            yield
    finally:
        torch.distributions.Distribution._validate_sample = check


def reads_traced_value(error: RuntimeError) -> bool:
    """Whether ``make_fx`` raised ``error`` because Python read a traced tensor's value."""
    return "_local_scalar_dense" in str(error) or "data-dependent" in str(error)


def is_operation(target) -> bool:
    """Whether a graph node's target is an ATen operation (with a schema and tags)."""
    return isinstance(target, torch._ops.OpOverload)


def mutates(target) -> bool:
    """Whether the operation writes into one of its inputs."""
    return is_operation(target) and target._schema.is_mutable


def aliases(target) -> bool:
    """Whether the operation's output may share memory with an input (a view, or the input an
    in-place operation returns)."""
    returns = target._schema.returns
    return len(returns) != 1 or returns[0].alias_info is not None


def handlers() -> tuple:
    """Pyro's handlers around the current call, outermost first."""
    return tuple(_PYRO_STACK)


def store_params() -> Dict[str, torch.Tensor]:
    """The param store's unconstrained tensors by name (the very objects optimizers step)."""
    return pyro.get_param_store()._params


def param_constraints() -> Dict[str, object]:
    """The param store's constraints by name."""
    return pyro.get_param_store()._constraints


def operation(name: str) -> torch._ops.OpOverload:
    """The operation ``str(op)`` names (``aten.mm.default``), looked up in ``torch.ops``; raises
    ``ValueError`` for a name that is none."""
    namespace, packet, overload = name.split(".")
    try:
        op = getattr(getattr(getattr(torch.ops, namespace), packet), overload)
    except (AttributeError, RuntimeError) as error:
        raise ValueError(f"no operation {name}") from error
    if not is_operation(op):
        raise ValueError(f"{name} is no operation")
    return op


def step_hooked(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` would run hooks around its update: the optimizer's own, or
    those registered for every optimizer."""
    return bool(optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
                or _global_optimizer_pre_hooks or _global_optimizer_post_hooks)


def fused_adam(params, grads, exp_avgs, exp_avg_sqs, steps, lr: float, beta1: float,
               beta2: float, weight_decay: float, eps: float) -> None:
    """The kernel ``torch.optim.Adam(fused=True)`` updates a device's parameters of one dtype
    with (no AMSGrad, not maximizing, no gradient scaler), the step counts already raised."""
    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=lr,
                       beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps,
                       maximize=False, grad_scale=None, found_inf=None)
