"""``RecordedSVI`` as a drop-in for ``pyro.infer.SVI``, tried as a user would.

Each test writes a model, a guide and a training loop the way a Pyro user does (``pyro.module``
networks with BatchNorm and dropout, ``pyro.param``, Python state changed between epochs), trains
them from the same seed with ``pyro.infer.SVI`` and with ``RecordedSVI``, and checks the
contract: the same losses, parameters, module buffers and random streams (torch's and Python's)
as Pyro's steps — with or without replays — and either no fallback line or exactly one naming
the cause. Never an exception Pyro's ``SVI`` does not raise.
"""
import itertools
import random
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, RenyiELBO, Trace_ELBO, TraceGraph_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoNormal
from pyro.nn import PyroModule, PyroSample
from torch import nn

from experiments.estimators.surrogate import TensorTrace_ELBO
from experiments.recording import adapter
from experiments.recording.svi import CHECK_FIRST, RecordedSVI

N, D, H, Z = 40, 6, 8, 2
X = torch.rand(N, D, generator=torch.Generator().manual_seed(0)).bernoulli()
#: one epoch: minibatches of 8, 8, 8, 8, 4, 4 points (two shapes, each recorded twice, then
#: replayed): after the first step or a change, every epoch replays at least once
EPOCH = [torch.arange(N)[i:j] for i, j in zip([0, 8, 16, 24, 32, 36], [8, 16, 24, 32, 36, 40])]
EPOCHS = 5


class VAE:
    """A user's VAE: networks registered with ``pyro.module``, β read from an attribute."""

    def __init__(self, beta=1.0):
        self.encoder = nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H), nn.ReLU(),
                                     nn.Dropout(0.2), nn.Linear(H, 2 * Z))
        self.decoder = nn.Sequential(nn.Linear(Z, H), nn.ReLU(), nn.Linear(H, D))
        self.beta = beta

    def model(self, x, index):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", N, subsample=index):
            with poutine.scale(scale=self.beta):
                z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x, index):
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", N, subsample=index):
            with poutine.scale(scale=self.beta):
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


class Outcome:
    """What a training run leaves behind, to compare."""

    def __init__(self, losses, vae, svi, said):
        store = pyro.get_param_store()
        self.losses = losses
        self.params = {name: store._params[name].detach().clone() for name in store.keys()}
        modules = [] if vae is None else [vae.encoder, vae.decoder]
        self.buffers = [b.clone() for m in modules for b in m.buffers()]
        self.rng, self.python_rng = torch.get_rng_state(), random.getstate()
        self.svi, self.said = svi, said


def train(svi_class, loop, setup=VAE, loss=TensorTrace_ELBO, optim=None):
    """``loop(svi, vae)`` from seed 0 with a fresh store: its Outcome. ``setup`` gives a VAE or
    (model, guide, the VAE whose networks they use, or None); ``optim`` makes the optimizer."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    random.seed(0)
    vae = setup()
    said = []
    options = {"on_fallback": said.append} if svi_class is RecordedSVI else {}
    model, guide, vae = (vae.model, vae.guide, vae) if isinstance(vae, VAE) else vae
    svi = svi_class(model, guide, optim() if optim else pyro.optim.Adam({"lr": 0.01}),
                    loss() if isinstance(loss, type) else loss, **options)
    with pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # e.g. pyro.module on a frozen layer
        losses = loop(svi, vae)
    return Outcome(losses, vae, svi, said)


def epochs(between=lambda epoch, svi, vae: None, step=None):
    """A loop over EPOCHS epochs calling ``between`` before each: the per-step losses."""
    def loop(svi, vae):
        losses = []
        for epoch in range(EPOCHS):
            between(epoch, svi, vae)
            for index in EPOCH:
                losses.append(svi.step(X[index], index) if step is None
                              else step(svi, X[index], index))
        return losses
    return loop


def assert_drop_in(loop, reason=None, replays=True, **train_options):
    """Pyro's numbers; no line (and replays, if ``replays``) or one line containing ``reason``."""
    pyros = train(SVI, loop, **train_options)
    recorded = train(RecordedSVI, loop, **train_options)
    # to float32 rounding, as the parameters below: a step's sums may round in another order
    # (a replay's fresh buffers), which 20–40 steps of Adam carry to ~1e-6 of the loss; the
    # silent differences this file is about were 1 to 311 nats, a relative 1e-2 and more
    assert recorded.losses == pytest.approx(pyros.losses, rel=1e-5, abs=1e-5)
    assert recorded.params.keys() == pyros.params.keys()
    for name, value in pyros.params.items():
        torch.testing.assert_close(recorded.params[name], value, rtol=1e-5, atol=1e-6,
                                   msg=name)
    for got, expected in zip(recorded.buffers, pyros.buffers):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(recorded.rng, pyros.rng)
    assert recorded.python_rng == pyros.python_rng
    if reason is None:
        assert recorded.said == []
        assert recorded.svi.replayed > 0 or not replays
    else:
        assert len(recorded.said) == 1 and reason in recorded.said[0], recorded.said
    return recorded


def test_an_untouched_vae_replays_pyros_numbers():
    assert_drop_in(epochs())


# --- Python values the model reads, changed between epochs ------------------------------------

@pytest.mark.slow
def test_a_python_float_beta_in_poutine_scale_changed_per_epoch():
    def anneal(epoch, svi, vae):
        vae.beta = 0.2 * (epoch + 1)
    assert_drop_in(epochs(anneal))


@pytest.mark.slow
def test_a_global_float_multiplying_a_factor_changed_per_epoch():
    def setup():
        vae = VAE()

        def model(x, index):
            vae.model(x, index)
            pyro.factor("penalty", -FACTOR_WEIGHT * pyro.param("a", torch.ones(())) ** 2)
        return model, vae.guide, vae

    def anneal(epoch, svi, vae):
        global FACTOR_WEIGHT
        FACTOR_WEIGHT = 1.0 + epoch
    assert_drop_in(epochs(anneal), setup=setup)
    anneal(0, None, None)


FACTOR_WEIGHT = 1.0
PENALTY = {"weight": 1.0}


@pytest.mark.slow
def test_a_float_in_a_dict_the_model_reads_changed_per_epoch():
    def setup():
        vae = VAE()

        def model(x, index):
            vae.model(x, index)
            pyro.factor("penalty", -PENALTY["weight"] * pyro.param("a", torch.ones(())) ** 2)
        return model, vae.guide, vae

    def anneal(epoch, svi, vae):
        PENALTY["weight"] = 1.0 + epoch
    try:
        assert_drop_in(epochs(anneal), setup=setup)
    finally:
        PENALTY["weight"] = 1.0


@pytest.mark.slow
def test_a_prior_scale_tensor_rebound_to_a_new_object_every_epoch():
    prior = torch.ones(())

    def setup():
        vae = VAE()

        def model(x, index):
            pyro.module("decoder", vae.decoder)
            with pyro.plate("data", N, subsample=index):
                z = pyro.sample("z", dist.Normal(0.0, prior).expand([Z]).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=vae.decoder(z)).to_event(1), obs=x)
        return model, vae.guide, vae

    def loop(svi, vae):
        nonlocal prior
        losses = []
        for epoch in range(EPOCHS):
            prior = torch.tensor(1.0 + 0.5 * epoch)         # a new object, as users write it
            losses += [svi.step(X[i], i) for i in EPOCH]
        return losses
    assert_drop_in(loop, setup=setup)


def test_a_tensor_updated_in_place_but_read_with_float():
    scale = torch.ones(())

    def setup():
        vae = VAE()

        def model(x, index):
            pyro.module("decoder", vae.decoder)
            with pyro.plate("data", N, subsample=index):
                z = pyro.sample("z", dist.Normal(0.0, float(scale)).expand([Z]).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=vae.decoder(z)).to_event(1), obs=x)
        return model, vae.guide, vae

    def anneal(epoch, svi, vae):
        scale.fill_(1.0 + 0.5 * epoch)
    assert_drop_in(epochs(anneal), "a tensor's value is read in Python", setup=setup)
    scale.fill_(1.0)


def test_a_tensor_made_each_step_from_python_state_no_guard_sees():
    """An iterator's position is beyond what the watch compares: the two recordings hold
    different constants, and the steps turn to Pyro's."""
    def setup():
        vae = VAE()
        scales = itertools.count(1.0, 0.25)            # a new prior scale at every call

        def model(x, index):
            prior = torch.tensor(next(scales))
            pyro.module("decoder", vae.decoder)
            with pyro.plate("data", N, subsample=index):
                z = pyro.sample("z", dist.Normal(0.0, prior).expand([Z]).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=vae.decoder(z)).to_event(1), obs=x)
        return model, vae.guide, vae
    assert_drop_in(epochs(), "different operations", setup=setup)


@pytest.mark.slow
def test_a_float_in_a_list_the_model_reads_changed_per_epoch():
    betas = [1.0]

    def setup():
        vae = VAE()

        def model(x, index):
            with poutine.scale(scale=betas[0]):
                vae.model(x, index)
        return model, vae.guide, vae

    def anneal(epoch, svi, vae):
        betas[0] = 1.0 if epoch < 2 else 0.5
    assert_drop_in(epochs(anneal), setup=setup)


def test_a_value_no_watch_reaches_changed_later_is_caught_by_the_sampled_check():
    """A NumPy array's item is beyond the watch: the replays keep the recorded β until the
    sampled check (the 16th replay, epoch 4 here) compares with Pyro's computation and falls
    back."""
    betas = np.ones(1)

    def setup():
        vae = VAE()

        def model(x, index):
            with poutine.scale(scale=float(betas[0])):
                vae.model(x, index)
        return model, vae.guide, vae

    def anneal(epoch, svi, vae):
        betas[0] = 1.0 if epoch < 2 else 0.5
    recorded = train(RecordedSVI, epochs(anneal), setup=setup)
    assert len(recorded.said) == 1, recorded.said
    assert "differs from Pyro's computation" in recorded.said[0]
    assert recorded.svi.replayed == CHECK_FIRST


# --- module state -----------------------------------------------------------------------------

@pytest.mark.slow
def test_module_eval_mid_training_stops_dropout_and_batchnorm_updates():
    def evaluate_from_epoch_2(epoch, svi, vae):
        vae.encoder.train(epoch < 2)
    assert_drop_in(epochs(evaluate_from_epoch_2))


@pytest.mark.slow
def test_freezing_the_encoder_with_requires_grad_false():
    def freeze_at_epoch_2(epoch, svi, vae):
        if epoch == 2:
            vae.encoder.requires_grad_(False)
    assert_drop_in(epochs(freeze_at_epoch_2))


@pytest.mark.slow
def test_a_layer_swapped_for_a_new_linear():
    def swap_at_epoch_2(epoch, svi, vae):
        if epoch == 2:
            vae.decoder[2] = nn.Linear(H, D)
    assert_drop_in(epochs(swap_at_epoch_2))


@pytest.mark.slow
def test_buffers_rebound_to_new_tensors():
    def reset_stats(epoch, svi, vae):
        if epoch == 2:
            vae.encoder[1].running_mean = torch.zeros(H)
    assert_drop_in(epochs(reset_stats))


# --- parameters replaced rather than written --------------------------------------------------

def test_param_store_set_state_restores_an_earlier_state():
    saved = {}

    def checkpoint(epoch, svi, vae):
        if epoch == 1:
            saved["state"] = pyro.get_param_store().get_state()
        if epoch == 3:
            pyro.get_param_store().set_state(saved["state"])
    assert_drop_in(epochs(checkpoint))


@pytest.mark.slow
def test_a_restart_with_clear_param_store_and_new_networks_reusing_the_svi():
    def restart(epoch, svi, vae):
        if epoch == 2:
            pyro.clear_param_store()
            fresh = VAE()
            vae.encoder, vae.decoder = fresh.encoder, fresh.decoder
    assert_drop_in(epochs(restart))


@pytest.mark.slow
def test_a_parameter_assigned_through_the_store():
    def overwrite(epoch, svi, vae):
        if epoch == 2:
            store = pyro.get_param_store()
            store["decoder$$$2.bias"] = torch.zeros(D)
    assert_drop_in(epochs(overwrite))


@pytest.mark.slow
def test_a_parameter_first_created_later_by_python_state():
    def setup():
        vae = VAE()
        vae.extra = False

        def model(x, index):
            vae.model(x, index)
            if vae.extra:
                pyro.factor("shrink", -pyro.param("b", torch.ones(())) ** 2)
        return model, vae.guide, vae

    def switch_on(epoch, svi, vae):
        vae.extra = epoch >= 2
    outcome = assert_drop_in(epochs(switch_on), setup=setup)
    assert "b" in outcome.params


# --- the loss object --------------------------------------------------------------------------

class PenalizedELBO(TensorTrace_ELBO):
    """A user's ELBO that adds a penalty in ``loss_and_grads``, as Pyro's own ELBOs do."""

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        penalty = 0.1 * sum((p ** 2).sum() for p in pyro.get_param_store().values())
        (loss + penalty).backward()
        return loss.item() + penalty.item()


def test_an_elbo_subclass_overriding_loss_and_grads_steps_through_it():
    assert_drop_in(epochs(), "overrides loss_and_grads", loss=PenalizedELBO)


@pytest.mark.slow
def test_num_particles_changed_on_the_loss_object():
    def more_particles(epoch, svi, vae):
        svi.loss.__self__.num_particles = 1 + epoch // 2
    assert_drop_in(epochs(more_particles))


@pytest.mark.slow
def test_vectorize_particles_changed_on_the_loss_object():
    def vectorize(epoch, svi, vae):
        elbo = svi.loss.__self__                    # SVI keeps the ELBO's bound methods
        elbo.vectorize_particles = epoch >= 2
    assert_drop_in(epochs(vectorize), loss=TensorTrace_ELBO(num_particles=2,
                                                            max_plate_nesting=2))


def test_pyros_own_trace_elbo_falls_back_naming_its_read():
    assert_drop_in(epochs(), "read in Python", loss=Trace_ELBO)


@pytest.mark.parametrize("loss", [TraceGraph_ELBO, RenyiELBO])
def test_a_loss_without_differentiable_loss_steps_as_pyro(loss):
    assert_drop_in(epochs(), "has no differentiable_loss", loss=loss)


def test_a_loss_callable_pyros_custom_loss_pattern():
    def simple_elbo(model, guide, *args, **kwargs):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs)
        return -(model_trace.log_prob_sum() - guide_trace.log_prob_sum())
    assert_drop_in(epochs(), "has no differentiable_loss", loss=simple_elbo)


# --- Python's random, arguments, optimizers ---------------------------------------------------

def test_augmentation_by_pythons_random_in_the_model():
    def setup():
        vae = VAE()

        def model(x, index):
            if random.random() < 0.5:                    # flip the image: an augmentation
                x = x.flip(-1)
            vae.model(x, index)
        return model, vae.guide, vae
    assert_drop_in(epochs(), "Python's random", setup=setup)


def test_augmentation_by_pythons_random_in_the_loop_is_just_data():
    def step(svi, x, index):
        return svi.step(x.flip(-1) if random.random() < 0.5 else x, index)
    assert_drop_in(epochs(step=step))


class ReadsAfterBatchNorm(VAE):
    def guide(self, x, index):
        super().guide(x, index)
        if self.encoder(x).sum() > 1e9:                  # a value read after BatchNorm ran
            raise AssertionError("not reached")


def test_a_refused_recording_after_batchnorm_ran_undoes_the_buffers():
    outcome = assert_drop_in(epochs(), "read in Python", setup=ReadsAfterBatchNorm)
    assert outcome.svi.replayed == 0


def test_dict_and_list_arguments_to_step():
    def step(svi, x, index):
        return svi.step({"x": x}, [index])

    def setup():
        vae = VAE()
        return (lambda data, idx: vae.model(data["x"], idx[0]),
                lambda data, idx: vae.guide(data["x"], idx[0]), vae)
    assert_drop_in(epochs(step=step), "cannot be compared", setup=setup)


def _linear_in_a():
    """A parameter whose gradient is constant (the loss is linear in it)."""
    vae = VAE()

    def model(x, index):
        vae.model(x, index)
        pyro.factor("linear", 3.0 * pyro.param("a", torch.ones(4)).sum())
    return model, vae.guide, vae


class HalvedSGD(pyro.optim.PyroOptim):
    """SGD on gradients halved in place first, which then lets them go (as torch's
    ``zero_grad(set_to_none=True)`` does): an optimizer that writes into ``p.grad``. Its rate
    keeps plain SGD on the VAE finite over the test's steps (at 0.01 it reached NaN in some
    orders of the suite: then Pyro's and the replay's NaNs compare unequal)."""

    def __init__(self):
        super().__init__(torch.optim.SGD, {"lr": 0.001})

    def __call__(self, params, *args, **kwargs):
        params = list(params)
        for p in params:
            if p.grad is not None:
                p.grad.mul_(0.5)
        super().__call__(params, *args, **kwargs)
        for p in params:
            p.grad = None


@pytest.mark.parametrize("optim", [
    lambda: pyro.optim.ClippedAdam({"lr": 0.01, "clip_norm": 0.5}),
    lambda: pyro.optim.SGD({"lr": 0.01}, clip_args={"clip_norm": 0.5}),
    lambda: pyro.optim.Adam({"lr": 0.01}, clip_args={"clip_value": 0.1}),
    HalvedSGD,
])
def test_a_constant_gradient_with_an_optimizer_writing_into_gradients(optim):
    outcome = assert_drop_in(epochs(), setup=_linear_in_a, optim=optim)
    assert "a" in outcome.params


# --- siblings: what else a user does ----------------------------------------------------------

def test_pyro_module_with_update_module_params():
    def setup():
        vae = VAE()

        def model(x, index):
            pyro.module("decoder", vae.decoder, update_module_params=True)
            vae.model(x, index)
        return model, vae.guide, vae
    assert_drop_in(epochs(), setup=setup)


def test_a_guide_with_constrained_params_and_tensor_kwargs():
    def model(x, index, weight=None):
        with pyro.plate("data", N, subsample=index):
            z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z * weight, 1.0).to_event(1), obs=x)

    def guide(x, index, weight=None):
        loc = pyro.param("loc", torch.zeros(N, D))
        scale = pyro.param("scale", torch.ones(N, D), constraint=dist.constraints.positive)
        mix = pyro.param("mix", torch.full((D,), 0.5), constraint=dist.constraints.unit_interval)
        with pyro.plate("data", N, subsample=index):
            pyro.sample("z", dist.Normal(loc[index] * mix, scale[index]).to_event(1))

    weight = torch.linspace(0.5, 1.5, D)
    assert_drop_in(epochs(step=lambda svi, x, i: svi.step(x, i, weight=weight)),
                   setup=lambda: (model, guide, None))


def test_a_pyro_lr_scheduler_stepped_per_epoch():
    def decay(epoch, svi, vae):
        if epoch:
            svi.optim.step()
    def optim():
        return pyro.optim.ExponentialLR({"optimizer": torch.optim.Adam,
                                         "optim_args": {"lr": 0.01}, "gamma": 0.5})
    assert_drop_in(epochs(decay), optim=optim)


def test_torch_manual_seed_between_steps():
    def reseed(epoch, svi, vae):
        torch.manual_seed(epoch % 2)
    assert_drop_in(epochs(reseed))


def test_plate_subsample_sizes_that_change():
    def loop(svi, vae):
        sizes = [16, 8, 16, 8, 4, 16, 12, 8, 16, 4, 16, 8]
        return [svi.step(X[:size], torch.arange(size)) for size in sizes]
    assert_drop_in(loop)


def test_double_precision_networks_and_data():
    def setup():
        vae = VAE()
        vae.encoder.double()
        vae.decoder.double()
        return vae

    def step(svi, x, index):
        return svi.step(x.double(), index)
    assert_drop_in(epochs(step=step), setup=setup)


def test_validation_on_still_replays_pyros_numbers():
    def loop(svi, vae):
        with pyro.validation_enabled(True):
            return epochs()(svi, vae)
    assert_drop_in(loop)


def test_other_torch_or_pyro_releases_step_as_pyro_with_one_line(monkeypatch):
    monkeypatch.setitem(adapter.TESTED_WITH, "torch", "0.0.1")
    assert_drop_in(epochs(), "recording is tested with torch 0.0.1")


@pytest.mark.parametrize("autoguide", [AutoNormal, AutoDiagonalNormal])
def test_an_autoguide_for_a_pyro_module_model(autoguide):
    class Regression(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = PyroModule[nn.Linear](D, 1)
            self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, D]).to_event(2))

        def forward(self, x, index):
            mean = self.linear(x).squeeze(-1)                     # (batch,)
            with pyro.plate("data", N, subsample=index):
                pyro.sample("y", dist.Normal(mean, 1.0), obs=x[:, 0])

    def setup():
        model = Regression()
        return model, autoguide(model), None
    assert_drop_in(epochs(), setup=setup)
