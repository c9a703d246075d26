"""``RecordedSVI``: ``pyro.infer.SVI`` whose steps replay a recording of Pyro's step.

A step of ``SVI`` computes the estimator's loss L(θ) for a minibatch and its gradient, and lets
the optimizer step. ``RecordedSVI`` computes both as one recorded program (``record``),

    (L, ∂L/∂θ_1, …, ∂L/∂θ_P) = program(θ_1, …, θ_P, tensor arguments of the step),

simplified (``simplify``) and run without autograd, then steps the optimizer as ``SVI`` does.
The program runs exactly the operations of Pyro's step, random draws included, so the loss,
gradients and random stream are the ones Pyro's step would give, and a run resumes exactly.

A run's steps:

- the first is Pyro's (it creates the parameters); with Pyro's validation on
  (``--pyro-validation``), which checks values at every step, every step is Pyro's;
- each *signature* — the shapes, dtypes and devices of the step's tensor arguments, its other
  arguments, and the Pyro handlers around the step with their scales (β) — is recorded at its
  first two steps, both real steps; from the third on, the recording is replayed if the two
  recordings are the same program (operations, shapes and constants), which a model that
  changes its structure from step to step (Python state, Python's ``random``) fails;
- a recording that is refused (``record.NotRecordable``), two that differ, arguments that
  cannot be compared (unhashable) or that differ at almost every step (more than
  ``MAX_PENDING`` signatures recorded once and not seen again), send every later step to Pyro's
  ``SVI.step``, and ``on_fallback`` hears why, once. A refused recording is undone as far as
  PyTorch and Pyro go — its random draws, the parameters it created — so the step Pyro takes
  instead is the one Pyro would have taken (Python state a model changes is its own);
- a parameter that first appears after the first step is refused for that step only: Pyro's
  step creates it, and every signature is recorded anew (twice), with it among the inputs.

At most ``MAX_REPLAYS`` programs are kept, the least recently replayed dropped first (a
``--kl-warmup`` records each epoch's β once and never again).

The estimator must give its loss as one tensor (``differentiable_loss``, with the
``recordable`` trait); ``experiments.training.loop.stepper`` picks this class or plain ``SVI``.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.infer.util import is_validation_enabled, zero_grads
from pyro.poutine.runtime import _PYRO_STACK
from torch import fx

from experiments.recording.record import NotRecordable, record
from experiments.recording.simplify import simplify

#: signatures recorded once and waiting for their second recording, at most
MAX_PENDING = 16
#: replayed programs kept, at most
MAX_REPLAYS = 16


class NewParameters(NotRecordable):
    """The step used a parameter no earlier step used (created now, or first used now)."""


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

    def same_as(self, other: "Program") -> bool:
        """The same operations on the same shapes with the same constants."""
        return (self.program.code == other.program.code and self.stepped == other.stepped
                and self.graded == other.graded
                and all(a is b for a, b in zip(self.params, other.params))
                and len(self.params) == len(other.params)
                and _same_constants(self.program, other.program))


class RecordedSVI(SVI):
    """``SVI`` replaying recorded steps (see the module's docstring).

    :param on_fallback: called with a one-line reason when the steps turn to Pyro's for good.
    """

    def __init__(self, model, guide, optim, loss, on_fallback: Optional[Callable] = None):
        super().__init__(model, guide, optim, loss)
        self.elbo = loss
        self.on_fallback = on_fallback or (lambda reason: None)
        self.fallback: Optional[str] = None        # why the steps are Pyro's, once they are
        self.params: List[torch.Tensor] = []       # every parameter a step has used so far
        self.programs: Dict[tuple, Program] = {}   # signature → its first recording
        self.replays: Dict[tuple, Program] = OrderedDict()   # signature → its program
        self.replayed = 0                          # steps replayed so far

    def step(self, *args, **kwargs) -> float:
        if self.fallback is not None or not self.params or is_validation_enabled():
            return self._pyro_step(*args, **kwargs)
        try:
            key = _signature(args, kwargs)
        except TypeError as error:                                  # unhashable
            return self._fall_back(f"an argument of the step cannot be compared between "
                                   f"steps ({error})", args, kwargs)
        replay = self.replays.get(key)
        if replay is not None:
            self.replays.move_to_end(key)
            self.replayed += 1
            return self._apply(replay, _run(replay, args, kwargs))
        if key not in self.programs and len(self.programs) >= MAX_PENDING:
            return self._fall_back(f"the step's arguments differ at almost every step ("
                                   f"{len(self.programs)} shapes or values recorded once and "
                                   "not seen again)", args, kwargs)
        generators, names = _generator_states(), set(pyro.get_param_store().keys())
        try:
            program, outputs = self._record(args, kwargs)
        except NotRecordable as refusal:         # undo it: its draws, the parameters it made
            store = pyro.get_param_store()
            for name in set(store.keys()) - names:
                del store[name]
            _restore(generators)
            if isinstance(refusal, NewParameters):
                return self._pyro_step(*args, **kwargs)
            return self._fall_back(str(refusal), args, kwargs)
        loss = self._apply(program, outputs)
        first = self.programs.pop(key, None)
        if first is None:
            self.programs[key] = program
        elif first.same_as(program):
            self.replays[key] = program
            if len(self.replays) > MAX_REPLAYS:
                self.replays.popitem(last=False)
        else:
            self.fallback = ("the model or guide ran different operations at two steps with "
                             "the same input shapes")
            self.on_fallback(self.fallback)
        return loss

    def _pyro_step(self, *args, **kwargs) -> float:
        with poutine.trace(param_only=True) as capture:
            loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        params = _unconstrained(capture.trace)
        new = [p for p in params if not any(p is q for q in self.params)]
        if new and self.params:           # the model grew: every recording is made anew
            self.programs.clear()
            self.replays.clear()
        self.params += new
        self.optim(set(params))
        zero_grads(params)
        return float(loss)

    def _fall_back(self, reason: str, args, kwargs) -> float:
        self.fallback = reason
        self.on_fallback(reason)
        return self._pyro_step(*args, **kwargs)

    def _record(self, args, kwargs):
        """Record this step (computing it): (the program, its outputs at this step)."""
        params, tensors = list(self.params), _tensors(args, kwargs)
        stepped: List[int] = []
        graded: List[int] = []

        def step(*inputs):
            step_args, step_kwargs = _with(args, kwargs, inputs[len(params):])
            with poutine.trace(param_only=True) as capture:
                loss = self.elbo.differentiable_loss(self.model, self.guide, *step_args,
                                                     **step_kwargs)
            used = _unconstrained(capture.trace)
            unknown = [p for p in used if not any(p is q for q in params)]
            if unknown:
                raise NewParameters(f"{pyro.get_param_store().param_name(unknown[0])} first "
                                    "appeared after the first step")
            stepped[:] = [i for i, p in enumerate(params) if any(p is u for u in used)]
            grads = torch.autograd.grad(loss, [params[i] for i in stepped], allow_unused=True)
            graded[:] = [i for i, g in zip(stepped, grads) if g is not None]
            return [loss.detach(), *(g for g in grads if g is not None)]

        program, outputs = record(step, [*params, *tensors])
        return Program(simplify(program), params, stepped, graded), outputs

    def _apply(self, program: Program, outputs: List[torch.Tensor]) -> float:
        """Hand the gradients to the optimizer, step, and return the loss."""
        stepped = [program.params[i] for i in program.stepped]
        for i, grad in zip(program.graded, outputs[1:]):
            param = program.params[i]
            param.grad = grad if param.grad is None else param.grad + grad
        self.optim(set(stepped))
        zero_grads(stepped)
        return outputs[0].item()


def _generator_states() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _restore(states: tuple) -> None:
    cpu, cuda = states
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _run(program: Program, args, kwargs) -> List[torch.Tensor]:
    with torch.no_grad():
        return program.program(*program.params, *_tensors(args, kwargs))


def _unconstrained(trace) -> List[torch.Tensor]:
    return [site["value"].unconstrained() for site in trace.nodes.values()]


def _tensors(args: tuple, kwargs: dict) -> List[torch.Tensor]:
    """The step's tensor arguments, positional first, then keywords by name."""
    return [a for a in args if torch.is_tensor(a)] + \
        [kwargs[k] for k in sorted(kwargs) if torch.is_tensor(kwargs[k])]


def _with(args: tuple, kwargs: dict, tensors) -> tuple:
    """(args, kwargs) with their tensors replaced, in ``_tensors``'s order, by ``tensors``."""
    tensors = iter(tensors)
    args = [next(tensors) if torch.is_tensor(a) else a for a in args]
    kwargs = {k: next(tensors) if torch.is_tensor(kwargs[k]) else kwargs[k]
              for k in sorted(kwargs)}
    return args, kwargs


def _signature(args: tuple, kwargs: dict) -> tuple:
    """What a recording is valid for: tensor layouts, other arguments, handlers and scales."""
    def spec(a):
        return (tuple(a.shape), a.dtype, a.device) if torch.is_tensor(a) else (type(a), a)

    handlers = tuple((type(m), getattr(m, "scale", None)) for m in _PYRO_STACK)
    return (tuple(map(spec, args)), tuple((k, spec(kwargs[k])) for k in sorted(kwargs)),
            handlers)


def _same_constants(a: fx.GraphModule, b: fx.GraphModule) -> bool:
    """Whether the programs' constants agree: a tensor both recordings found (the same object,
    read live at every replay, e.g. a model's buffer) by identity, one each recording made
    (from Python numbers, say a temperature) by value."""
    names = [n.target for n in a.graph.nodes if n.op == "get_attr"]
    return all(getattr(a, name) is getattr(b, name) or
               torch.equal(getattr(a, name), getattr(b, name)) for name in names)
