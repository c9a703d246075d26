"""The recorded step (experiments/recording): Pyro's loss, gradients and random draws, replayed.

Every comparison here runs Pyro's own ``SVI`` and ``RecordedSVI`` side by side from the same
seed, on minibatches of B < N points whose last one is smaller (two signatures), and checks
what a user would see differ: the loss of every step, the gradient handed to the optimizer at
every step, the random stream after, and the trained parameters.
"""
import copy
import itertools
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from torch.utils._python_dispatch import TorchDispatchMode

from experiments.estimators import ELBOS
from experiments.parts.build import build
from experiments.parts.namespaces import local_name
from experiments.recording.adapter import mutates
from experiments.recording.bindings import bound, operation
from experiments.recording.functional import functional
from experiments.recording.record import NotRecordable, record
from experiments.recording.simplify import IN_PLACE, simplify
from experiments.recording.svi import MAX_PENDING, RecordedSVI
from experiments.training.end_to_end import run
from experiments.training.optim import JointOptim

N, DATA_DIM = 40, 12
X = torch.rand(N, DATA_DIM).bernoulli()
#: a pass over X in minibatches of 16, 16 and 8: two signatures, each recorded twice, replayed
BATCHES = [torch.arange(N)[i:i + 16] for i in range(0, N, 16)] * 4


class Watched(JointOptim):
    """The run's Adam, keeping every step's gradients by parameter name."""

    def __init__(self):
        super().__init__(torch.optim.Adam, {"lr": 0.01})
        self.grads = []

    def __call__(self, params, *args, **kwargs):
        store = pyro.get_param_store()
        self.grads.append({local_name(store.param_name(p)): p.grad.clone() for p in params
                           if p.grad is not None})
        super().__call__(params, *args, **kwargs)


def train(svi_class, model="vae", guide="normal", elbo="trace", batches=BATCHES, **options):
    """Steps of ``svi_class`` over ``batches`` of X: (losses, gradients, RNG state, svi)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    parts = build(model, guide, elbo, data_dim=DATA_DIM, num_data=N,
                  **{"latent_dim": 3, "hidden_dims": (16,), **options})
    optim = Watched()
    svi = svi_class(parts.model, parts.guide, optim, parts.elbo)
    with pyro.validation_enabled(False):
        losses = [svi.step(X[index], index, num_data=N) for index in batches]
    return losses, optim.grads, torch.get_rng_state(), svi


def assert_same_training(eager, recorded):
    (losses, grads, rng, _), (r_losses, r_grads, r_rng, svi) = eager, recorded
    assert svi.fallback is None and len(svi.replays) == 2          # both signatures replayed
    assert r_losses == pytest.approx(losses, rel=1e-6)
    assert torch.equal(rng, r_rng)                                 # the same draws, no more
    assert len(r_grads) == len(grads)
    for step, (g, r) in enumerate(zip(grads, r_grads)):
        assert g.keys() == r.keys(), step
        for name in g:
            torch.testing.assert_close(r[name], g[name], rtol=1e-5, atol=1e-5,
                                       msg=f"step {step}, {name}")


RECORDABLE = [name for name, estimator in ELBOS.items() if estimator.recordable]


@pytest.mark.slow
@pytest.mark.parametrize("elbo", RECORDABLE)
def test_every_recordable_estimator_replays_pyros_losses_gradients_and_draws(elbo):
    options = {"num_particles": 4, "vectorize_particles": True} \
        if ELBOS[elbo].vectorized or ELBOS[elbo].k_sample else {}
    assert_same_training(train(SVI, elbo=elbo, **options),
                         train(RecordedSVI, elbo=elbo, **options))


@pytest.mark.slow
@pytest.mark.parametrize("model, guide, elbo, options", [
    ("vae", "flow", "trace", {}),                                  # transforms with caches
    ("hvae", "chain", "dreg", {"num_particles": 3, "vectorize_particles": True,
                               "latent_dims": (3, 2)}),
    ("discrete-vae", "relaxed", "trace", {}),
    ("vae", "local", "trace", {}),                                 # parameters indexed by x
    ("vae", "normal", "trace", {"num_particles": 3}),              # particles one by one
    ("cvae", "normal", "trace", {"image_shape": (1, 3, 4)}),       # a constant boolean mask
    ("ppca", "mvn", "iwae", {"num_particles": 3, "vectorize_particles": True}),
    ("lvm", "chain", "stl", {"latent_dim": 2}),
])
def test_other_models_and_guides_replay_pyros_training(model, guide, elbo, options):
    assert_same_training(train(SVI, model, guide, elbo, **options),
                         train(RecordedSVI, model, guide, elbo, **options))


@pytest.mark.slow
def test_replays_leave_pyros_parameters_and_adam_state_bit_for_bit():
    """The program returns gradients and the optimizer steps outside it, as in Pyro's step:
    after replays (both signatures), every parameter and Adam's moments and step counts are
    Pyro's to the bit."""
    eager, recorded = train(SVI)[3], train(RecordedSVI)[3]
    assert recorded.replayed > 0 and recorded.fallback is None
    (a, b) = (svi.optim.optimizer for svi in (eager, recorded))
    for p, q in zip(a.param_groups[0]["params"], b.param_groups[0]["params"], strict=True):
        assert torch.equal(p, q)
        assert a.state[p].keys() == b.state[q].keys()
        for key, value in a.state[p].items():
            assert torch.equal(value, b.state[q][key]), key


def test_a_replayed_step_runs_fewer_operations_than_pyros_step():
    """The reason for recording: the program holds the arithmetic, not Pyro's bookkeeping
    (operations counted as PyTorch's profiler counts them, nested ones included)."""
    *_, svi = train(RecordedSVI)
    program = next(iter(svi.replays.values()))

    def operations(step) -> int:
        with torch.profiler.profile() as profile, pyro.validation_enabled(False):
            step()
        return sum(e.count for e in profile.key_averages() if e.key.startswith("aten::"))

    x, index = X[:16], torch.arange(16)
    pyro_svi = SVI(svi.model, svi.guide, Watched(), svi.elbo)
    with torch.no_grad():
        replayed = operations(lambda: program.program(*program.params, x, index))
    pyros = operations(lambda: pyro_svi.step(x, index, num_data=N))
    assert replayed < 0.75 * pyros


def test_the_default_step_replays_without_batched_matrix_products():
    """The Bernoulli likelihood's Σ_j x_j l_j of a minibatch against its own logits shares no
    operand: as ``einsum``'s B matrix products of 1 × D by D × 1 (and B more backward) it took
    0.8 of a 7 ms step at B = 128 (docs/design/speed.md); the replay computes it elementwise."""
    *_, svi = train(RecordedSVI)
    for program in svi.replays.values():
        targets = {operation(n) for n in program.program.graph.nodes
                   if n.op in ("call_function", "call_method")}
        assert torch.ops.aten.bmm.default not in targets



class _Dispatched(TorchDispatchMode):
    """The operations dispatched within, in order."""

    def __init__(self):
        super().__init__()
        self.operations = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.operations.append(func)
        return func(*args, **(kwargs or {}))


def _step_with_scalars(w, x):
    """A loss with numbers beside tensors (1e-6, 2, 2.0) and its gradient: autograd's formulas
    call ``mul.Scalar``, which no Python binding reaches."""
    loss = ((x @ w).sigmoid() * 2.0 + 1e-6).pow(2).sum(-1).mean()
    noise = torch.randn(3)
    return [loss, *torch.autograd.grad(loss, w), noise]


@pytest.mark.parametrize("recorded", ["default step", "scalars"])
def test_bound_programs_dispatch_the_same_operations_and_give_the_same_bits(recorded):
    """``bindings.bound``: run on real tensors, the rebound program dispatches the operations
    of the program it was, one for one, with the same draws and values to the bit; an overload
    no binding reaches (``mul.Scalar``) and the random draws keep ``torch.ops``."""
    if recorded == "default step":
        *_, svi = train(RecordedSVI)
        program = next(iter(svi.replays.values())).program
        inputs = [*next(iter(svi.replays.values())).params, X[:16], torch.arange(16)]
        original = copy.deepcopy(program)
        for node in original.graph.nodes:
            if "operation" in node.meta:
                node.op, node.target = "call_function", operation(node)
        original.recompile()
    else:
        inputs = [torch.randn(4, 3, requires_grad=True), torch.randn(5, 4)]
        original = replayable(_step_with_scalars, inputs)
        program = bound(copy.deepcopy(original))
    runs = []
    for candidate in (original, program):
        torch.manual_seed(0)
        with torch.no_grad(), _Dispatched() as dispatched:
            runs.append((candidate(*inputs), dispatched.operations))
    (expected, expected_operations), (got, operations) = runs
    assert operations == expected_operations
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    calls = [n for n in program.graph.nodes if n.op in ("call_function", "call_method")]
    rebound = [n for n in calls if "operation" in n.meta]
    assert len(rebound) > 0.75 * len(calls)
    lines = {line.split(" = ")[0].strip(): line.split(" = ", 1)[1] for line in
             program.code.splitlines() if " = " in line}
    for node in rebound:                 # the code calls the very binding that was checked
        if node.op == "call_function":
            callee = lines[node.name].split("(")[0]
            assert eval(callee, program.forward.__globals__) is node.target, callee
    kept = {n.target for n in calls if n not in rebound}
    assert torch.ops.aten.mul.Scalar in kept
    assert any(torch.Tag.nondeterministic_seeded in t.tags for t in kept if hasattr(t, "tags"))


def test_the_watch_checks_each_module_and_each_parameters_flag_once():
    """Four recordings (two signatures) ran every module four times, and each parameter has
    two names (the param store's, its module's): the check before every replay reads each
    once, and still sees a flag change under either name."""
    *_, svi = train(RecordedSVI)
    watch = svi.watch
    assert len(watch.modules) == len({id(m) for m in watch.modules}) > 0
    flagged = [p for _, p in watch.flags]
    assert len(flagged) == len({id(p) for p in flagged}) == len(svi.params)
    svi.model.decoder[0].weight.requires_grad_(False)
    assert watch.changed().startswith("requires_grad of")

class Growing(pyro.nn.PyroModule):
    """A model whose structure changes through Python state no guard can see (an iterator's
    position), a schedule of its own: from its fourth call on (the second recording of the
    first signature) it draws an extra latent."""

    def __init__(self):
        super().__init__()
        self.calls = itertools.count(1)
        self.loc = pyro.nn.PyroParam(torch.zeros(DATA_DIM))

    def forward(self, x, index=None, num_data=None):
        with pyro.plate("data", num_data, subsample=index):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            if next(self.calls) >= 4:
                z = z + pyro.sample("w", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(self.loc + z.unsqueeze(-1), 1.0).to_event(1), obs=x)


def _toy_guide(x, index=None, num_data=None):
    with pyro.plate("data", num_data, subsample=index):
        for name in ("z", "w"):
            pyro.sample(name, dist.Normal(pyro.param(f"{name}_loc", torch.zeros(N))[index], 1.0))


def test_a_model_that_changes_structure_between_steps_falls_back_with_one_line():
    """Two recordings of one signature differ: every later step is Pyro's, said once, and
    the run is the one Pyro's steps give."""
    def steps(svi_class, **kwargs):
        pyro.clear_param_store()
        pyro.set_rng_seed(2)
        svi = svi_class(Growing(), _toy_guide, Watched(), ELBOS["trace"](), **kwargs)
        with pyro.validation_enabled(False):
            return [svi.step(X[i], i, num_data=N) for i in BATCHES], svi

    said = []
    recorded, svi = steps(RecordedSVI, on_fallback=said.append)
    eager, _ = steps(SVI)
    assert said == [svi.fallback] and "different operations" in said[0]
    assert not svi.replays
    assert recorded == pytest.approx(eager, rel=1e-6)


class ReadsValues(pyro.nn.PyroModule):
    """Data-dependent Python: a branch on a tensor's value, or a boolean mask."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.loc = pyro.nn.PyroParam(torch.zeros(DATA_DIM))

    def forward(self, x, index=None, num_data=None):
        with pyro.plate("data", num_data, subsample=index):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
        if self.how == "branch" and z.mean() > 10:
            z = z * 2
        if self.how == "mask":
            keep = z > 0
            pyro.factor("positive", dist.Normal(0.0, 1.0).log_prob(z[keep]).sum())
        with pyro.plate("data2", num_data, subsample=index):
            pyro.sample("x", dist.Normal(self.loc + z.unsqueeze(-1), 1.0).to_event(1), obs=x)


@pytest.mark.parametrize("how, reason", [
    ("branch", "a tensor's value is read in Python (if tensor:) at test_recording.py:"),
    ("mask", "depends on the values of its input"),
])
def test_a_model_that_reads_values_is_refused_and_steps_as_pyro_would(how, reason):
    def steps(svi_class, **kwargs):
        pyro.clear_param_store()
        pyro.set_rng_seed(2)

        def guide(x, index=None, num_data=None):
            with pyro.plate("data", num_data, subsample=index):
                pyro.sample("z", dist.Normal(pyro.param("z_loc", torch.zeros(N))[index], 1.0))

        svi = svi_class(ReadsValues(how), guide, Watched(), ELBOS["trace"](), **kwargs)
        with pyro.validation_enabled(False):
            return [svi.step(X[i], i, num_data=N) for i in BATCHES[:4]], torch.get_rng_state()

    said = []
    recorded, rng = steps(RecordedSVI, on_fallback=said.append)
    eager, eager_rng = steps(SVI)
    assert len(said) == 1 and reason in said[0], said
    assert recorded == pytest.approx(eager, rel=1e-6)
    assert torch.equal(rng, eager_rng)            # the refused recording's draws were undone


def replayable(fn, inputs):
    """``fn`` recorded on ``inputs`` and rewritten as ``RecordedSVI`` rewrites what it replays."""
    return simplify(functional(record(fn, inputs)[0], inputs))


def test_simplify_keeps_values_and_draws_and_drops_what_computes_nothing():
    def fn(w, x):
        y = (x @ w.t().t() + 0.0) / 1                     # identities
        noise = torch.randn(3)                           # drawn, never used: must stay
        ones = torch.ones_like(x)                        # folded: depends on x's shape only
        a, b = (y * 2).sum(), (y * 2).sum()              # duplicates
        del noise
        return [a + b + ones.sum(), torch.rand(())]

    w, x = torch.randn(4, 4), torch.randn(5, 4)
    program, _ = record(fn, [w, x])
    before = sum(n.op == "call_function" for n in program.graph.nodes)
    torch.manual_seed(0)
    expected = program(w, x)
    simplified = simplify(functional(program, [w, x]))
    torch.manual_seed(0)
    got = simplified(w, x)
    targets = [n.target for n in simplified.graph.nodes if n.op == "call_function"]
    assert all(torch.equal(e, g) for e, g in zip(expected, got))     # to the bit, same draws
    assert len(targets) < before
    assert torch.ops.aten.randn.default in targets                    # the unused draw stays
    assert torch.ops.aten.ones_like.default not in targets
    assert targets.count(torch.ops.aten.mul.Tensor) + targets.count(torch.ops.aten.mul_.Tensor) == 1
    assert torch.ops.aten.t.default not in targets


def test_simplify_keeps_x_plus_zero_which_turns_minus_zero_into_plus_zero():
    x = torch.tensor([-0.0, 2.0])
    program = replayable(lambda x: [1.0 / (x + 0.0)], [x])
    assert program(x)[0].tolist() == [float("inf"), 0.5]          # 1 / (−0 + 0) = 1 / +0



def test_simplify_keeps_x_minus_minus_zero_which_turns_minus_zero_into_plus_zero():
    x = torch.tensor([-0.0, 2.0])
    for minus_zero in (-0.0, torch.full((2,), -0.0)):
        program = replayable(lambda x, c=minus_zero: [1.0 / (x - c)], [x])
        assert program(x)[0].tolist() == [float("inf"), 0.5]      # 1 / (−0 − −0) = 1 / +0


def test_simplify_drops_neutral_constants_it_made_and_identity_permutes_never_a_found_tensor():
    """``(z − 0) / 1 · 1`` with constants the program makes (a standard normal's loc, scale)
    is z, and ``z.permute(0, 1)`` too; a row minus zeros of the whole shape broadcasts (kept),
    a tensor of zeros found outside is read at every call (it may change), and the values stay
    those of the eager call, to the bit."""
    found = torch.zeros(3, 2)

    def fn(z):
        loc, scale = torch.zeros_like(z), torch.ones_like(z)
        standard = ((z - loc) / scale * scale).permute(0, 1)
        return [standard.exp(), (z[0] - loc).exp(), (z - found).exp()]

    z = torch.randn(3, 2)
    program = replayable(fn, [z])
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    aten = torch.ops.aten
    assert aten.div.Tensor not in targets and aten.mul.Tensor not in targets
    assert aten.permute.default not in targets
    assert targets.count(aten.sub.Tensor) == 2         # z[0] − loc and z − found stay
    found.fill_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(program(z), fn(z), strict=True))

@torch.library.custom_op("elbo_lab_test::untagged_noise", mutates_args=())
def _untagged_noise(x: torch.Tensor) -> torch.Tensor:
    """A random operation PyTorch does not know is random (no ``nondeterministic_seeded``)."""
    return x * torch.randn(x.shape)


def test_simplify_folds_only_allowed_operations_never_an_untagged_random_one():
    program = replayable(lambda x: [_untagged_noise(torch.ones_like(x))], [torch.zeros(5)])
    first, second = program(torch.zeros(5))[0], program(torch.zeros(5))[0]
    assert not torch.equal(first, second)                  # drawn anew at every call


def test_record_refuses_reading_values():
    with pytest.raises(NotRecordable, match="read in Python"):
        record(lambda x: [x * 2] if x.sum() > 0 else [x], [torch.ones(3)])


def test_the_default_path_uses_no_deprecated_pytorch_api():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        *_, svi = train(RecordedSVI)
    assert svi.replays
    assert not [w for w in caught if "deprecat" in str(w.message).lower()], caught


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, {"kl_warmup": 2}])
def test_a_run_replays_resumes_exactly_and_equals_an_eager_run(quick_config, tmp_path, options):
    """The default path against ``--eager``, and interrupted against straight: the same
    numbers. With a warm-up β changes every epoch, and each β is recorded apart."""
    def metrics(name, epochs, **more):
        config = quick_config(out=str(tmp_path / name), epochs=epochs, pyro_validation=False,
                              batch_size=64, **options, **more)
        return run(config, **({"resume": tmp_path / name} if epochs == 4 and
                              name == "resumed" else {}))

    keys = ("train_elbo", "test_elbo")
    straight = metrics("straight", 4)
    metrics("resumed", 2)
    resumed = metrics("resumed", 4)
    eager = metrics("eager", 4, eager=True)
    numbers = [r[k] for r in straight.metrics for k in keys]
    assert [r[k] for r in resumed.metrics for k in keys] == numbers
    assert [r[k] for r in eager.metrics for k in keys] == pytest.approx(numbers, rel=1e-5)


def _two_zeros(x):
    a, b = torch.zeros(3), torch.zeros(3)          # two equal constants, filled differently
    a[0] = x.sum()
    b[1] = x.prod()
    return [a + b]


def _accumulate(x):
    a = torch.zeros(3)
    a[0] += x.sum()                                # a write through a view of a constant
    return [a * 1.0]


def _own_in_place(x):
    y = torch.exp(x)
    v = y[:1]                                      # a view of y, read after y is written
    y.mul_(2)
    return [y + 1, v * 3]


def _merged_views(x, w):
    a = x.reshape(4, 2) @ w
    b = x @ w                                      # the same product, seen through a view
    return [b + 1.0, a * 1.5]


@pytest.mark.parametrize("fn, inputs", [
    (_two_zeros, [torch.tensor([2.0, 3.0])]),
    (_accumulate, [torch.tensor([2.0, 3.0])]),
    (_own_in_place, [torch.tensor([0.0, 1.0])]),
    (_merged_views, [torch.arange(8.0).reshape(2, 2, 2), torch.ones(2, 2)]),
])
def test_simplify_respects_writes_through_views(fn, inputs):
    """In-place writes reach memory through views: what they write to is never folded, merged,
    bypassed or written into again (each case here gave other numbers before it was fixed)."""
    program = replayable(fn, inputs)
    for _ in range(2):                             # twice: a constant written must not stay
        for got, expected in zip(program(*[t.clone() for t in inputs]),
                                 fn(*[t.clone() for t in inputs])):
            torch.testing.assert_close(got, expected)


def _normalized_noise(norm: torch.nn.BatchNorm1d):
    def fn(x):
        noise = torch.empty(4, 3).normal_()        # a random fill
        shift = torch.zeros(4, 3)
        shift[:, 0] = x[:, 0]                      # a write through a view
        return [(norm(x) * noise + shift).sum(0)]
    return fn


def test_a_replayed_program_writes_only_fresh_memory_and_what_the_step_writes():
    """Functionalized: no operation writes memory another reads, but the in-place rewrites of
    fresh results and the epilogue's ``copy_`` into what the step itself writes (BatchNorm's
    running statistics), which land, bit for bit, as the eager step's do."""
    x, norm = torch.randn(4, 3), torch.nn.BatchNorm1d(3)
    eager_norm = copy.deepcopy(norm)
    torch.manual_seed(0)
    program = replayable(_normalized_noise(norm), [x])
    torch.manual_seed(0)
    _normalized_noise(eager_norm)(x)                       # the recorded call, eagerly
    for node in program.graph.nodes:
        if node.op == "call_function" and mutates(node.target):
            assert node.target in IN_PLACE.values() or (
                node.target is torch.ops.aten.copy_.default
                and node.args[0].op in ("get_attr", "placeholder")), node.format_node()
    for seed in (1, 2):
        torch.manual_seed(seed)
        got = program(x)[0]
        torch.manual_seed(seed)
        assert torch.equal(got, _normalized_noise(eager_norm)(x)[0])
        for name, buffer in norm.named_buffers():
            assert torch.equal(buffer, getattr(eager_norm, name)), name


def test_simplify_never_merges_operations_on_numbers_of_other_types():
    """``x * 2``, ``x * 2.0`` and ``x * True`` differ for an integer x (dtype): never merged
    (``torch.fx``'s ``CSEPass`` merges them)."""
    x = torch.arange(3)
    got = replayable(lambda x: [x * 2, x * 2.0, x * True], [x])(x)
    assert [t.dtype for t in got] == [torch.int64, torch.float32, torch.int64]
    assert [t.tolist() for t in got] == [[0, 2, 4], [0.0, 2.0, 4.0], [0, 1, 2]]


@pytest.mark.parametrize("read", [lambda t: t.tolist(), lambda t: t.numpy(),
                                  lambda t: np.asarray(t)])
def test_record_refuses_reads_that_bypass_the_dispatcher(read):
    def fn(x):
        return [x * 2 if read(x.detach().sum()) != 0 else x]

    with pytest.raises(NotRecordable, match="read in Python"):
        record(fn, [torch.ones(3)])


def _scaled_model(prior_scale):
    def model(x, index=None, num_data=None):
        with pyro.plate("data", num_data, subsample=index):
            z = pyro.sample("z", dist.Normal(0.0, prior_scale))        # a tensor held outside
            pyro.sample("x", dist.Normal(z.unsqueeze(-1), 1.0).to_event(1), obs=x)
    return model


def _lazy_guide(x, index=None, num_data=None):
    loc = pyro.param("z_loc", lambda: torch.randn(N))    # drawn when first used
    with pyro.plate("data", num_data, subsample=index):
        pyro.sample("z", dist.Normal(loc[index], 1.0))
        if index.numel() == 8:                           # a second parameter, later
            pyro.param("unused", lambda: torch.randn(2))


def test_a_tensor_changed_between_steps_and_a_late_parameter_train_as_pyro_does():
    """A prior scale the caller anneals in place is read afresh at every replay (never folded
    into a constant); a parameter drawn at random when first used, after the first step, is
    created by Pyro's step with Pyro's draws, and recording goes on."""
    def steps(svi_class):
        pyro.clear_param_store()
        pyro.set_rng_seed(3)
        scale = torch.ones(())
        svi = svi_class(_scaled_model(scale), _lazy_guide, Watched(), ELBOS["trace"]())
        losses = []
        with pyro.validation_enabled(False):
            for step, index in enumerate(BATCHES):
                losses.append(svi.step(X[index], index, num_data=N))
                scale.fill_(1.0 + 0.1 * step)
        return losses, torch.get_rng_state(), svi

    recorded, rng, svi = steps(RecordedSVI)
    eager, eager_rng, _ = steps(SVI)
    assert recorded == pytest.approx(eager, rel=1e-6)
    assert torch.equal(rng, eager_rng)
    assert svi.fallback is None and svi.replays


@pytest.mark.slow
def test_arguments_that_change_at_every_step_fall_back_once_with_bounded_memory():
    said = []
    pyro.clear_param_store()
    model = _scaled_model(1.0)

    def annealed(x, index=None, num_data=None, temperature=1.0):
        model(x, index, num_data)

    def guide(x, index=None, num_data=None, temperature=1.0):
        _lazy_guide(x, index[:0].new_tensor(range(len(index))), num_data)

    svi = RecordedSVI(annealed, guide, Watched(), ELBOS["trace"](), on_fallback=said.append)
    with pyro.validation_enabled(False):
        for step in range(MAX_PENDING + 4):
            svi.step(X[:16], torch.arange(16), num_data=N, temperature=1.0 + step)
    assert len(said) == 1 and "differ at almost every step" in said[0]
    assert len(svi.programs) <= MAX_PENDING and not svi.replays


@pytest.mark.slow
def test_every_valid_recordable_combination_trains_as_pyro_and_falls_back_only_as_documented():
    """tests/recording_check.py: every (model, guide, estimator) the compatibility rules accept
    with a recordable estimator gives Pyro's losses, and replays, except where the design note
    says it falls back (a tensor's value read in Python): the ssvae's labeled rows, the
    categorical guide's one-hot sampling, Pyro's autoregressive inverse at z̄ in the flow and
    iaf guides under stl and dreg."""
    import runpy
    from pathlib import Path

    from experiments.estimators import ELBOS
    from experiments.parts.compatibility import matrix

    def documented(model: str, guide: str, elbo: str) -> bool:
        return model == "ssvae" or guide == "categorical" or (
            guide in ("flow", "iaf") and elbo in ("stl", "dreg"))

    script = Path(__file__).parent / "recording_check.py"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = list(runpy.run_path(str(script))["check"]())
    assert [row[:3] for row in rows if not row[3]] == []                  # all Pyro's losses
    fallbacks = {row[:3]: row[4] for row in rows if row[4]}
    assert all(len(said) == 1 and "read in Python" in said[0] for said in fallbacks.values())
    assert [key for key in fallbacks if not documented(*key)] == []       # the rest replay
    valid = [row for row in matrix() if row["ok"] and ELBOS[row["elbo"]].recordable]
    assert len(rows) == len(valid) and len(fallbacks) < len(rows) / 5
