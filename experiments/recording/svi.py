"""``RecordedSVI``: ``pyro.infer.SVI`` whose steps replay a recording of Pyro's step.

A step of ``SVI`` computes the estimator's loss L(θ) for a minibatch and its gradient, and lets
the optimizer step. ``RecordedSVI`` computes both as one recorded program (``record``),

    (L, ∂L/∂θ_1, …, ∂L/∂θ_P) = program(θ_1, …, θ_P, tensor arguments of the step),

made functional (``functional``: PyTorch's functionalization) and simplified (``simplify``), run
without autograd, then steps the optimizer as ``SVI`` does.
The program runs exactly the operations of Pyro's step, random draws included, so the loss,
gradients and random stream are the ones Pyro's step would give, and a run resumes exactly.

A run's steps:

- the first is Pyro's (it creates the parameters), and so is the first after anything a replay
  depends on changed (below); Pyro's validation, when on, checks these steps (recordings are
  made with it off: it reads values);
- each *signature* — the shapes, dtypes and devices of the step's tensor arguments, its other
  arguments, and the Pyro handlers around the step with their scales (β) — is recorded at its
  first two steps, both real steps; from the third on, the recording is replayed if the two
  recordings are the same program (operations, shapes and constants), which a model that
  changes its structure from step to step fails;
- before every replay, a ``guard.Watch`` checks what the programs depend on beyond their inputs
  (the param store's tensors, modules' flags, parameters and buffers, the Python values model,
  guide and loss reach: a β, ``num_particles``, a rebound tensor); if any changed, the
  recordings are dropped and the steps start again (Pyro's step, then two recordings); a value
  that changes at every step (no replay in between) sends every later step to Pyro;
- at the ``CHECK_FIRST``-th replay and every ``CHECK_EVERY``-th after, the replay is checked
  against Pyro's computation of the same step at the same random state: a difference (Python
  state no guard saw) sends this and every later step to Pyro;
- a recording that is refused (``record.NotRecordable``), two that differ, a loss a recording
  cannot stand for (no ``differentiable_loss``; a class overriding ``loss_and_grads``),
  arguments that cannot be compared (unhashable) or that differ at almost every step (more than
  ``MAX_PENDING`` signatures recorded once and not seen again), and versions of PyTorch or Pyro
  the recording was not tested with (``adapter``), send every later step to Pyro's
  ``SVI.step``, and ``on_fallback`` hears why, once. A refused recording is undone — its random
  draws (torch's, Python's, NumPy's), the parameters it created, the buffers its modules
  updated — so the step Pyro takes instead is the one Pyro would have taken;
- a parameter that first appears after the first step is refused for that step only: Pyro's
  step creates it, and every signature is recorded anew (twice), with it among the inputs.

At most ``MAX_REPLAYS`` programs are kept, the least recently replayed dropped first (a
``--kl-warmup`` records each epoch's β once and never again).

Across runs (``cache``): once a signature's two recordings agree, its program is stored on disk,
keyed by what it depends on (``cache_key.material``); a later run, at a signature's first step,
loads the stored program instead of recording it, and replays it only if that very step,
computed by Pyro from the same random state and buffers, gives bit for bit the same gradients,
buffers and random state, and the same loss to float rounding (``_first_replay``); if not, the
entry is deleted and the signature is recorded as above. A loaded program is then watched and
checked as a recorded one.
"""
import logging
import random
from collections import OrderedDict
from typing import Callable, Dict, List, Optional

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.infer.util import zero_grads

from experiments.estimators.surrogate import DifferentiableLossMixin
from experiments.recording.adapter import handlers, untested_versions, unvalidated
from experiments.recording.cache import RecordingCache, Uncacheable, cache_folder
from experiments.recording.cache_entry import pack, unpack
from experiments.recording.cache_key import code_digest, material, named_tensors
from experiments.recording.guard import Watch, modules_run, restore_buffers, snapshot
from experiments.recording.program import Program, agree
from experiments.recording.record import NotRecordable, record

#: signatures recorded once and waiting for their second recording, at most
MAX_PENDING = 16
#: replayed programs kept, at most
MAX_REPLAYS = 16
#: restarts (recordings dropped because what they depend on changed), at most
MAX_RESTARTS = 64
#: replays checked against Pyro's computation of the step: the CHECK_FIRST-th, every CHECK_EVERY-th
CHECK_FIRST, CHECK_EVERY = 16, 1024

log = logging.getLogger("experiments.recording.cache")


class NewParameters(NotRecordable):
    """The step used a parameter no earlier step used (created now, or first used now)."""


class RecordedSVI(SVI):
    """``SVI`` replaying recorded steps (see the module's docstring).

    :param on_fallback: called with a one-line reason when the steps turn to Pyro's for good.
    :param cache: the folder of recordings kept between runs, or ``off``; by default
        ``$ELBO_LAB_RECORDING_CACHE``, else the user's cache folder (``cache.cache_folder``).
    """

    def __init__(self, model, guide, optim, loss, on_fallback: Optional[Callable] = None,
                 cache: Optional[str] = None):
        super().__init__(model, guide, optim, loss)
        folder = cache_folder(cache)
        self.cache = RecordingCache(folder) if folder is not None else None
        self.materials: Dict[tuple, str] = {}      # signature → its cache key's material
        self.code: Optional[str] = None            # digest of the code model, guide, loss reach
        self.recordings = 0                        # steps recorded so far
        self.loaded = 0                            # programs loaded from the cache and used
        self.elbo = loss
        self.on_fallback = on_fallback or (lambda reason: None)
        self.fallback: Optional[str] = None        # why the steps are Pyro's, once they are
        self.refusal = untested_versions() or unrecordable_loss(loss)   # said at step 2
        self.params: List[torch.Tensor] = []       # every parameter a step has used so far
        self.programs: Dict[tuple, Program] = {}   # signature → its first recording
        self.replays: Dict[tuple, Program] = OrderedDict()   # signature → its program
        self.watch: Optional[Watch] = None         # what the recordings depend on
        self.replayed = 0                          # steps replayed so far
        self.steps = 0                             # steps taken so far
        self.watched_from = 0                      # the step the watch was made at
        self.restarts: List[tuple] = []            # (step, what changed) at each restart

    def step(self, *args, **kwargs) -> float:
        self.steps += 1
        if self.fallback is not None or not self.params:
            return self._pyro_step(*args, **kwargs)
        if self.refusal is not None:
            return self._fall_back(self.refusal, args, kwargs)
        changed = self.watch.changed() if self.watch is not None else None
        if changed is not None:
            return self._restart(changed, args, kwargs)
        try:
            key = _signature(args, kwargs)
            replay = self.replays.get(key)
        except TypeError as error:                                  # unhashable
            return self._fall_back(f"an argument of the step cannot be compared between "
                                   f"steps ({error})", args, kwargs)
        if replay is not None:
            self.replays.move_to_end(key)
            return self._replay(replay, args, kwargs)
        if key not in self.programs and len(self.programs) >= MAX_PENDING:
            return self._fall_back(f"the step's arguments differ at almost every step ("
                                   f"{len(self.programs)} shapes or values recorded once and "
                                   "not seen again)", args, kwargs)
        loaded = self._load(key) if key not in self.programs else None
        if loaded is not None:
            return self._first_replay(key, loaded, args, kwargs)
        return self._record_step(key, args, kwargs)

    def _record_step(self, key, args, kwargs) -> float:
        """Record this step, compare it with the signature's first recording, and apply it."""
        generators, names = _generator_states(), set(pyro.get_param_store().keys())
        self._watching()
        with modules_run() as modules:
            try:
                program, outputs = self._record(args, kwargs)
                refusal = None
            except NotRecordable as error:
                refusal = error
        if refusal is not None:              # undo it: draws, new parameters, buffers
            _undo(generators, names, modules)
            if isinstance(refusal, NewParameters):
                return self._pyro_step(*args, **kwargs)
            return self._fall_back(str(refusal), args, kwargs)
        for module in modules:
            self.watch.add_module(module)
        loss = self._apply(program, outputs)
        first = self.programs.pop(key, None)
        if first is None:
            self.programs[key] = program
        elif first.same_as(program):
            replay = program.replayable([*program.params, *_tensors(args, kwargs)])
            self._store(key, _found(first, program), replay)
            self._keep(key, replay)
        else:
            self._fall_back_after("the model or guide ran different operations at two steps "
                                  "with the same input shapes")
        return loss

    def _keep(self, key, program: Program) -> None:
        """Replay ``program`` for the signature from now on; at most ``MAX_REPLAYS`` kept."""
        self.replays[key] = program
        if len(self.replays) > MAX_REPLAYS:
            dropped, _ = self.replays.popitem(last=False)
            self.materials.pop(dropped, None)

    def _watching(self) -> Watch:
        """The watch of what the recordings depend on, made at the first recording (or load)."""
        if self.watch is None:
            self.watched_from = self.steps
            self.watch = Watch(self._roots(), self._named_params())
        return self.watch

    def _roots(self) -> dict:
        return {"the model": self.model, "the guide": self.guide, "the loss": self.elbo}

    def _named_params(self) -> Dict[str, torch.Tensor]:
        store = pyro.get_param_store()
        return {store.param_name(p): p for p in self.params}

    def _load(self, key) -> Optional[Program]:
        """The signature's program from the cache, or None (none, or not cacheable)."""
        if self.cache is None:
            return None
        watch = self._watching()
        if self.code is None:
            self.code = code_digest(self._roots())
        try:
            self.materials[key] = material(
                self._roots(), key, self._named_params(),
                [*zip(watch.whats, watch.values), *((w, v) for _, v, w in watch.cells)],
                self.code)
        except Uncacheable as why:
            log.debug("recording cache: not kept, %s", why)
            return None
        entry = self.cache.load(self.materials[key])
        if entry is None:
            return None
        try:
            unpacked = unpack(entry, named_tensors(self._roots()))
            if unpacked is None:
                return None
            program, facts = unpacked
            return Program(program, list(self.params), facts["stepped"], facts["graded"],
                           facts["owned"])
        except Exception as error:          # a file on disk: anything may be wrong with it
            log.warning("recording cache: ignored %s (%s: %s); recording anew",
                        self.cache.path(self.materials[key]), type(error).__name__, error)
            return None

    def _store(self, key, found: List[torch.Tensor], program: Program) -> None:
        """Keep the signature's replayable program in the cache (if it can be found again)."""
        if self.cache is None or key not in self.materials:
            return
        try:
            entry = pack(program.program, found, named_tensors(self._roots()),
                         stepped=program.stepped, graded=program.graded, owned=program.owned)
        except Uncacheable as why:
            log.debug("recording cache: not kept, %s", why)
            return
        self.cache.store(self.materials[key], entry)

    def _first_replay(self, key, program: Program, args, kwargs) -> float:
        """The replay of a program loaded from the cache, if Pyro's computation of this step
        from the same random state and buffers gives bit for bit its gradients, buffers and
        random state, and its loss to float rounding (``_same_step``); else the entry is
        deleted and the signature recorded anew."""
        generators, names = _generator_states(), set(pyro.get_param_store().keys())
        with modules_run() as modules:
            try:
                with unvalidated():
                    computed, stepped, graded = self._differentiate(program.params, args, kwargs)
            except NotRecordable:                                 # a new parameter appeared
                computed = None
        pyros, pyros_generators = snapshot(modules), _generator_states()
        _restore(generators)
        restore_buffers(modules)
        try:
            replayed = _run(program, args, kwargs)
        except Exception:                  # a program from disk that does not run here
            replayed = None
        if computed is None or replayed is None or (stepped, graded) != (
                program.stepped, program.graded) or not _same_step(replayed, computed) \
                or not _same_state(pyros, pyros_generators):
            _undo(generators, names, modules)
            log.warning("recording cache: a stored program differs from Pyro's step "
                        "(deleted); recording anew")
            self.cache.forget(self.materials[key])
            return self._record_step(key, args, kwargs)
        for module in modules:
            self.watch.add_module(module)
        self._keep(key, program)
        self.loaded += 1
        self.replayed += 1
        return self._apply(program, replayed)

    def _replay(self, program: Program, args, kwargs) -> float:
        """Replay the program; at the checked replays, against Pyro's computation."""
        self.replayed += 1
        if self.replayed == CHECK_FIRST or self.replayed % CHECK_EVERY == 0:
            return self._checked_replay(program, args, kwargs)
        return self._apply(program, _run(program, args, kwargs))

    def _checked_replay(self, program: Program, args, kwargs) -> float:
        """The replay, if Pyro's computation of the step from the same random state and
        buffers agrees (loss and gradients, to float rounding); else Pyro's step, and every
        later one."""
        generators, names = _generator_states(), set(pyro.get_param_store().keys())
        before = snapshot(self.watch.modules)
        replayed = _run(program, args, kwargs)
        after = snapshot(self.watch.modules)
        _restore(generators)
        restore_buffers(before)
        try:
            with unvalidated():
                computed = self._differentiate(program.params, args, kwargs)[0]
        except NotRecordable:                                     # a new parameter appeared
            computed = None
        if computed is None or not agree(replayed, computed):
            _undo(generators, names, before)
            pyros = "none" if computed is None else f"{float(computed[0]):.6g}"
            return self._fall_back(f"a replayed step differs from Pyro's computation of it "
                                   f"(loss {float(replayed[0]):.6g} against {pyros}): Python "
                                   "state the model reads changed where no guard looks",
                                   args, kwargs)
        restore_buffers(after)
        return self._apply(program, replayed)

    def _restart(self, changed: str, args, kwargs) -> float:
        """Drop every recording (what they depend on changed) and take Pyro's step. A value
        that changed right after the recording twice running changes at every step, and more
        than ``MAX_RESTARTS`` restarts cost more recordings than replays save: Pyro's steps
        for good."""
        every_step = self.steps == self.watched_from + 1
        if every_step and self.restarts and self.restarts[-1] == (self.steps - 2, changed):
            return self._fall_back(f"{changed} changes at every step (a replay would keep "
                                   "the value its recording saw)", args, kwargs)
        if len(self.restarts) >= MAX_RESTARTS:
            return self._fall_back(f"what the recordings depend on changed {MAX_RESTARTS} "
                                   f"times, last {changed}: recording anew each time costs "
                                   "more than replays save", args, kwargs)
        self.restarts.append((self.steps, changed))
        self.programs.clear()
        self.replays.clear()
        self.materials.clear()
        self.params, self.watch, self.code = [], None, None
        return self._pyro_step(*args, **kwargs)

    def _pyro_step(self, *args, **kwargs) -> float:
        with poutine.trace(param_only=True) as capture:
            loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        params = _unconstrained(capture.trace)
        new = [p for p in params if not any(p is q for q in self.params)]
        if new and self.params:           # the model grew: every recording is made anew
            self.programs.clear()
            self.replays.clear()
            self.materials.clear()
            self.watch = None
        self.params += new
        self.optim(set(params))
        zero_grads(params)
        return float(loss)

    def _fall_back(self, reason: str, args, kwargs) -> float:
        self._fall_back_after(reason)
        return self._pyro_step(*args, **kwargs)

    def _fall_back_after(self, reason: str) -> None:
        self.fallback = reason
        self.on_fallback(reason)

    def _record(self, args, kwargs):
        """Record this step (computing it): (the program, its outputs at this step)."""
        params, found = list(self.params), {}

        def step(*inputs):
            outputs, found["stepped"], found["graded"] = self._differentiate(
                params, *_with(args, kwargs, inputs[len(params):]))
            return outputs

        self.recordings += 1
        with unvalidated():
            program, outputs = record(step, [*params, *_tensors(args, kwargs)])
        return Program(program, params, found["stepped"], found["graded"]), outputs

    def _differentiate(self, params, args, kwargs):
        """The step's loss and its gradients: ([loss, ∂L/∂θ for each graded θ], the
        positions of the parameters the step uses, of those with a gradient)."""
        with poutine.trace(param_only=True) as capture:
            loss = self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
        used = _unconstrained(capture.trace)
        unknown = [p for p in used if not any(p is q for q in params)]
        if unknown:
            raise NewParameters(f"{pyro.get_param_store().param_name(unknown[0])} first "
                                "appeared after the first step")
        stepped = [i for i, p in enumerate(params) if any(p is u for u in used)]
        wanted = [i for i in stepped if params[i].requires_grad]
        grads = torch.autograd.grad(loss, [params[i] for i in wanted], allow_unused=True) \
            if wanted and loss.requires_grad else [None] * len(wanted)
        graded = [i for i, g in zip(wanted, grads) if g is not None]
        return [loss.detach(), *(g for g in grads if g is not None)], stepped, graded

    def _apply(self, program: Program, outputs: List[torch.Tensor]) -> float:
        """Hand the gradients to the optimizer, step, and return the loss. A gradient a replay
        does not compute afresh (a constant, an input, one shared by two parameters) is copied:
        optimizers may write into it (clipping); so is every gradient of a recording (which may
        be an expanded tensor, one memory for many elements, that autograd would copy)."""
        stepped = [program.params[i] for i in program.stepped]
        owned = program.owned or [False] * len(program.graded)
        for i, grad, fresh in zip(program.graded, outputs[1:], owned):
            param = program.params[i]
            grad = grad if fresh else grad.clone()
            param.grad = grad if param.grad is None else param.grad + grad
        self.optim(set(stepped))
        zero_grads(stepped)
        return outputs[0].item()


def unrecordable_loss(loss) -> Optional[str]:
    """Why a recording of ``loss.differentiable_loss`` cannot stand for Pyro's step with
    ``loss.loss_and_grads``, or None: it has none, or ``loss_and_grads`` may compute
    something else (a class of the user's or of a library that overrides it)."""
    name = type(loss).__name__ if not callable(loss) or hasattr(loss, "loss_and_grads") \
        else getattr(loss, "__name__", type(loss).__name__)
    if not callable(getattr(loss, "differentiable_loss", None)):
        return f"the loss {name} has no differentiable_loss (one tensor to record)"
    steps, differentiates = _owner(loss, "loss_and_grads"), _owner(loss, "differentiable_loss")
    if "loss_and_grads" in vars(loss) or not (
            steps is DifferentiableLossMixin
            or steps is differentiates and steps.__module__.startswith("pyro.")):
        return (f"the loss {name} overrides loss_and_grads, which a replay of its "
                "differentiable_loss would bypass")
    return None


def _owner(obj, method: str) -> type:
    """The class in ``obj``'s MRO that defines ``method``."""
    return next(c for c in type(obj).__mro__ if method in vars(c))


def _undo(generators: tuple, names: set, modules: dict) -> None:
    """Undo a step that is not taken: its draws, the parameters it made, its buffers' updates."""
    store = pyro.get_param_store()
    for name in set(store.keys()) - names:
        del store[name]
    _restore(generators)
    restore_buffers(modules)


def _generator_states() -> tuple:
    """Torch's (CPU and CUDA), Python's and NumPy's global random states."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda, random.getstate(), np.random.get_state()


def _restore(states: tuple) -> None:
    cpu, cuda, python, numpy = states
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(python)
    np.random.set_state(numpy)


def _found(first: Program, second: Program) -> List[torch.Tensor]:
    """The tensors both recordings read as the very same objects (found, not made)."""
    def constants(program: Program) -> list:
        return [getattr(program.program, n.target) for n in program.program.graph.nodes
                if n.op == "get_attr"]

    seconds = constants(second)
    return [t for t in constants(first) if any(t is u for u in seconds)]


def _same_step(replayed: List[torch.Tensor], computed: List[torch.Tensor]) -> bool:
    """The same gradients bit for bit, and the same loss to float rounding (a replayed loss
    may differ from Pyro's in its last bits where Pyro's l − s, loss minus surrogate, rounds
    to other than 0: the gradients do not depend on it)."""
    return len(replayed) == len(computed) and agree(replayed[:1], computed[:1]) and all(
        x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
        for x, y in zip(replayed[1:], computed[1:]))


def _same_state(buffers: Dict, generators: tuple) -> bool:
    """Whether torch's random state and the modules' buffers are now those given, bit for
    bit."""
    cpu, cuda, *_ = _generator_states()
    return torch.equal(cpu, generators[0]) and (cuda is None or all(
        torch.equal(a, b) for a, b in zip(cuda, generators[1]))) and all(
        torch.equal(buffer, saved) for pairs in buffers.values() for buffer, saved in pairs)


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

    around = tuple((type(m), getattr(m, "scale", None)) for m in handlers())
    return (tuple(map(spec, args)), tuple((k, spec(kwargs[k])) for k in sorted(kwargs)),
            around)
