"""The optimizer of every run: one fused Adam over all parameters, behind Pyro's optimizer API.

``pyro.optim.Adam`` keeps one ``torch.optim.Adam`` per parameter tensor and steps them one by
one, and PyTorch's default Adam makes six passes over every tensor (one per line of the update
below); on the 784-400-20 VAE, changing that saves a fifth to a quarter of a training step
(``benchmarks/RESULTS.md``). ``JointOptim`` keeps the ``pyro.optim.PyroOptim`` interface that
``pyro.infer.SVI`` needs (parameters join as they first appear; the state is saved per
parameter name, in the format ``pyro.optim`` uses, and restored by the name without its
namespace, ``experiments.parts.namespaces``, so checkpoints of either kind resume), but steps
one optimizer over all of them; ``adam(lr)``, what runs train with, makes it
``torch.optim.Adam(fused=True)``: one kernel per tensor computing

    m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
    θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε).

After each step the gradients are released (``zero_grad(set_to_none=True)``), so the next
backward pass writes them afresh instead of adding into tensors of zeros that ``SVI.step``
would otherwise allocate and fill every step.

``torch.optim.Adam.step`` spends about half a millisecond a step in Python around its two
kernels (profiling scopes, hooks, option checks, grouping the tensors by device and dtype):
0.5 of 1.35 ms after a replayed step of the 784-400-20 VAE. Once every parameter has its state,
``fused_adam_step`` calls the same two kernels on the same tensors directly (the values are
the same to the bit), wherever torch's step would do no more than that.
"""
from typing import Dict, Iterable, List, Optional

import pyro
import torch
from pyro.optim import PyroOptim
from torch import nn

from experiments.parts.namespaces import local_name, local_names
from experiments.recording.adapter import fused_adam, step_hooked, untested_versions


class JointOptim(PyroOptim):
    """One ``torch.optim`` optimizer over every parameter ``SVI`` hands it.

    :param optim_constructor: a ``torch.optim.Optimizer`` class, e.g. ``torch.optim.Adam``.
    :param optim_args: its keyword arguments, e.g. ``{"lr": 1e-3, "fused": True}``.
    """

    def __init__(self, optim_constructor, optim_args: dict):
        super().__init__(optim_constructor, optim_args)
        self.optimizer = None
        self._names: Dict[nn.Parameter, str] = {}        # every parameter joined so far
        #: a list to collect ‖g‖₂ of each step's gradient into (``--tensorboard``), or None
        self.grad_norms: Optional[List[torch.Tensor]] = None

    def __call__(self, params: Iterable[torch.Tensor], *args, **kwargs) -> None:
        params = list(params)
        if self.grad_norms is not None:
            grads = [p.grad for p in params if p.grad is not None]
            if grads:                                    # a 0-d tensor: no sync per step
                norms = torch.stack([torch.linalg.vector_norm(g) for g in grads])
                self.grad_norms.append(torch.linalg.vector_norm(norms))
        new = [p for p in params if p not in self._names]
        if new:
            store = pyro.get_param_store()
            self.join({store.param_name(p): p for p in new})
        if args or kwargs or not fused_adam_step(self.optimizer):
            self.optimizer.step(*args, **kwargs)
        self.optimizer.zero_grad(set_to_none=True)

    def join(self, named: Dict[str, torch.Tensor]) -> None:
        """Add parameters under the given names (with or without their namespace), restoring
        any state saved under the name: as ``SVI`` first hands them (named by Pyro's store),
        or named by the caller (``experiments.training.distributed``)."""
        new = [named[name] for name in sorted(named)]    # a fixed order, whatever the set's
        self._names.update((p, name) for name, p in named.items())
        if self.optimizer is None:
            self.optimizer = self.pt_optim_constructor(new, **self.pt_optim_args)
        else:
            self.optimizer.add_param_group({"params": new})
        saved = {p: self._state_waiting_to_be_consumed.pop(local_name(self._names[p]), None)
                 for p in new}
        saved = {p: s["state"][0] for p, s in saved.items() if s and s["state"]}
        if saved:
            self._restore(saved)

    def _restore(self, saved: Dict[torch.Tensor, dict]) -> None:
        """Load per-parameter states through ``load_state_dict``, which casts and moves them as
        the optimizer needs (a fused Adam keeps its step count on the parameter's device)."""
        state = self.optimizer.state_dict()
        position = {p: i for i, p in enumerate(self._ordered())}
        for p, param_state in saved.items():
            state["state"][position[p]] = param_state
        self.optimizer.load_state_dict(state)

    def _ordered(self) -> List[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def set_state(self, state_dict: Dict[str, dict]) -> None:
        """Restore a state of ``get_state`` (or of ``pyro.optim``) as each parameter joins,
        matched by its name without a namespace: parts built apart have different ones."""
        super().set_state(local_names(state_dict))

    def get_state(self) -> Dict[str, dict]:
        """{parameter name: a one-parameter optimizer state dict}, as ``pyro.optim`` saves it."""
        if self.optimizer is None:
            return dict(self._state_waiting_to_be_consumed)
        whole = self.optimizer.state_dict()
        groups = [{k: v for k, v in g.items() if k != "params"} for g in whole["param_groups"]]
        group_of = {i: groups[g] for g, group in enumerate(whole["param_groups"])
                    for i in group["params"]}
        return {self._names[p]: {"state": {0: whole["state"][i]} if i in whole["state"] else {},
                                 "param_groups": [{**group_of[i], "params": [0]}]}
                for i, p in enumerate(self._ordered())}


#: the options of a parameter group whose step ``fused_adam_step`` takes
FUSED_ONLY = {"fused": True, "amsgrad": False, "maximize": False, "capturable": False,
              "differentiable": False, "decoupled_weight_decay": False}


def fused_adam_step(optimizer: torch.optim.Optimizer) -> bool:
    """``optimizer.step()`` as ``torch.optim.Adam(fused=True)`` takes it — the step counts
    of the parameters with a gradient raised by one, then ``torch._fused_adam_`` on them, per
    device and dtype — without its Python around the two kernels; False, with nothing done,
    where torch's step would do more: hooks, a wrapped ``step`` (an LR scheduler's), a gradient
    scaler, other options or tensor-valued ones, a parameter without its state yet, or
    versions of torch the private kernel call was not tested with (``adapter``)."""
    if type(optimizer) is not torch.optim.Adam or "step" in vars(optimizer) \
            or step_hooked(optimizer) or untested_versions() is not None \
            or getattr(optimizer, "grad_scale", None) is not None \
            or getattr(optimizer, "found_inf", None) is not None:
        return False
    calls = []
    for group in optimizer.param_groups:
        numbers = (group["lr"], *group["betas"], group["eps"], group["weight_decay"])
        if any(group[k] != v for k, v in FUSED_ONLY.items()) \
                or not all(type(n) is float for n in numbers[:4]):
            return False
        tensors: Dict[tuple, List[list]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = optimizer.state.get(p)
            if not state or p.grad.is_sparse or p.is_complex():
                return False
            lists = tensors.setdefault((p.device, p.dtype), [[], [], [], [], []])
            for kept, value in zip(lists, (p, p.grad, state["exp_avg"], state["exp_avg_sq"],
                                           state["step"])):
                kept.append(value)
        calls += [(lists, numbers) for lists in tensors.values()]
    for (params, grads, exp_avgs, exp_avg_sqs, steps), (lr, beta1, beta2, eps, decay) in calls:
        torch._foreach_add_(steps, 1)
        fused_adam(params, grads, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, decay, eps)
    return True


def adam(lr: float) -> JointOptim:
    """The optimizer ``experiments.train`` trains with: Adam at learning rate ``lr``, fused.

    A torch optimizer's first ``step`` imports ``torch._dynamo`` (3–8 s, once per process);
    importing it here, before any epoch's clock starts, keeps that out of the first epoch's
    time and out of the wall-time axis of ``experiments.compare``."""
    import torch._dynamo

    return JointOptim(torch.optim.Adam, {"lr": lr, "fused": True})
