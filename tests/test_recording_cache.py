"""Recordings kept between runs (``experiments.recording.cache``), tried as a user would.

A user trains a model twice — a second ``RecordedSVI`` in the same session, or a fresh process
— with the cache folder the suite gives every test (``conftest.recording_cache``). The second
run must record nothing (counted, not timed), and give ``pyro.infer.SVI``'s numbers from the
same seed bit for bit: losses, parameters, Adam's state, BatchNorm's buffers. A model whose
code or data changed under the same names must not reuse the stale program (the key misses, or
the check at its first replay catches it); a broken entry is recorded anew with one line.
"""
import argparse
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI
from torch import nn

from experiments.config.config import Config
from experiments.config.options import add_training_options, config_from_args
from experiments.estimators.surrogate import TensorTrace_ELBO
from experiments.recording.cache import ENVIRONMENT, RecordingCache, cache_folder
from experiments.recording.svi import RecordedSVI

N, D, H, Z = 40, 6, 8, 2
_DATA = torch.Generator().manual_seed(0)
X = torch.rand(N, D, generator=_DATA).bernoulli(generator=_DATA)   # the same in every process
#: minibatches of 8, 8, 8, 8, 4, 4 points: two signatures, each recorded twice in a cold run
EPOCH = [torch.arange(N)[i:j] for i, j in zip([0, 8, 16, 24, 32, 36], [8, 16, 24, 32, 36, 40])]
EPOCHS = 2
#: a prior scale the model reads from a NumPy array: a value no key or watch sees
PRIOR = np.array([1.0])
ROOT = Path(__file__).resolve().parents[1]


class VAE:
    """A user's VAE: ``pyro.module`` networks, BatchNorm and dropout in the encoder."""

    def __init__(self):
        self.encoder = nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H), nn.ReLU(),
                                     nn.Dropout(0.2), nn.Linear(H, 2 * Z))
        self.decoder = nn.Sequential(nn.Linear(Z, H), nn.Tanh(), nn.Linear(H, D))

    def model(self, x, index):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", N, subsample=index):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), float(PRIOR[0])).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x, index):
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", N, subsample=index):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


class Outcome:
    """What a run leaves: losses, parameters, Adam's state, buffers, the run's SVI."""

    def __init__(self, losses, vae, svi, optim):
        store = pyro.get_param_store()
        self.losses = losses
        self.params = {name: store._params[name].detach().clone() for name in store.keys()}
        self.adam = {name: {k: v.clone() for k, v in state.items() if torch.is_tensor(v)}
                     for name, state in optim.get_state().items()}
        self.buffers = [b.clone() for m in (vae.encoder, vae.decoder) for b in m.buffers()]
        self.svi = svi

    def assert_same_as(self, other: "Outcome") -> None:
        """Parameters, Adam's state and buffers bit for bit; losses to float32 rounding (a
        loss's last bits vary with the alignment of memory, also between Pyro's own steps in
        two processes: tests/test_recording_dropin.py)."""
        assert self.losses == pytest.approx(other.losses, rel=1e-5)
        assert self.params.keys() == other.params.keys()
        assert all(torch.equal(self.params[k], other.params[k]) for k in self.params)
        assert self.adam.keys() == other.adam.keys() and all(
            torch.equal(self.adam[k][s], other.adam[k][s])
            for k in self.adam for s in self.adam[k])
        assert all(torch.equal(a, b) for a, b in zip(self.buffers, other.buffers))


def train(make_svi, setup=VAE) -> Outcome:
    """``EPOCHS`` epochs of a fresh VAE from seed 0, with a fresh store and Adam."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae, optim = setup(), pyro.optim.Adam({"lr": 0.01})
    svi = make_svi(vae.model, vae.guide, optim, TensorTrace_ELBO())
    losses = [svi.step(X[i], i) for _ in range(EPOCHS) for i in EPOCH]
    return Outcome(losses, vae, svi, optim)


def recorded(**options):
    return lambda *parts: RecordedSVI(*parts, **options)


def pyros():
    return train(SVI)


def lines(caplog) -> list:
    return [r.getMessage() for r in caplog.records
            if r.name == "experiments.recording.cache" and r.levelno >= logging.WARNING]


def test_a_second_run_loads_every_signature_records_nothing_and_gives_pyros_numbers(
        recording_cache, caplog):
    first = train(recorded())
    assert (first.svi.recordings, first.svi.loaded) == (4, 0)
    assert len(list(recording_cache.glob("*.pt"))) == 2          # one entry per signature
    second = train(recorded())
    assert (second.svi.recordings, second.svi.loaded) == (0, 2)
    assert second.svi.fallback is None and lines(caplog) == []
    second.assert_same_as(pyros())
    first.assert_same_as(second)


def test_a_loaded_program_calls_what_the_recorded_one_calls_bindings_included():
    """The kept program is the replayed one: the same code, each operation through the same
    Python binding (``bindings``), not the boxed ``torch.ops`` route a plain reload gives."""
    first = train(recorded())
    second = train(recorded())
    assert (second.svi.recordings, second.svi.loaded) == (0, 2)
    codes = [[p.program.code for p in run.svi.replays.values()] for run in (first, second)]
    assert codes[0] == codes[1]
    assert any("call_method" == n.op for p in second.svi.replays.values()
               for n in p.program.graph.nodes)


def test_a_loaded_program_writes_into_the_new_modules_batchnorm_buffers():
    train(recorded())
    second = train(recorded())
    assert (second.svi.recordings, second.svi.loaded) == (0, 2)
    program = next(iter(second.svi.replays.values())).program
    bound = [getattr(program, n.target) for n in program.graph.nodes if n.op == "get_attr"]
    encoder = second.svi.guide.__self__.encoder
    assert any(b is encoder[1].running_mean for b in bound)
    assert encoder[1].num_batches_tracked.item() == EPOCHS * len(EPOCH)
    second.assert_same_as(pyros())


def test_the_default_folder_is_the_users_cache_and_the_environment_or_the_option_override(
        monkeypatch, tmp_path):
    monkeypatch.delenv(ENVIRONMENT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "elbo-lab" / "recordings"
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path / "env"))
    assert cache_folder() == tmp_path / "env"
    assert cache_folder(str(tmp_path / "option")) == tmp_path / "option"
    assert cache_folder("off") is None
    monkeypatch.setenv(ENVIRONMENT, "off")
    assert cache_folder() is None


@pytest.mark.parametrize("switch", ["option", "environment"])
def test_cache_off_writes_nothing(switch, recording_cache, monkeypatch):
    if switch == "environment":
        monkeypatch.setenv(ENVIRONMENT, "off")
    outcome = train(recorded(cache="off") if switch == "option" else recorded())
    assert outcome.svi.cache is None and outcome.svi.recordings == 4
    assert list(recording_cache.iterdir()) == []
    outcome.assert_same_as(pyros())


def test_the_command_lines_option_reaches_the_step(tmp_path):
    parser = argparse.ArgumentParser()
    add_training_options(parser)
    config = config_from_args(parser.parse_args(["--recording-cache", "off"]))
    assert config.recording_cache == "off" and "recording_cache" not in config.to_dict()
    from experiments.parts.build import build_parts
    from experiments.training.loop import stepper
    from experiments.training.optim import adam
    for setting, folder in (("off", None), (str(tmp_path), tmp_path)):
        config = Config(recording_cache=setting, hidden_dims=(8,))
        parts = build_parts(config, 6, 40, torch.device("cpu"))
        svi = stepper(parts, adam(0.01), config)
        assert (svi.cache.folder if svi.cache else None) == folder


def test_a_file_named_as_the_cache_folder_is_refused_in_one_line_before_any_run(
        tmp_path, capsys):
    from experiments import train
    taken = tmp_path / "a-file"
    taken.write_text("mine")
    out = tmp_path / "run"
    assert train.main(["--epochs", "1", "--recording-cache", str(taken), "--out", str(out),
                       "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --recording-cache {taken} is a file, not a folder: name a folder, "
                   "or off"]
    assert taken.read_text() == "mine" and not out.exists()


#: a user's model file, with a constant and a function to change under the same names
USER_MODEL = """
def squash(logits):
    return logits * {factor}


class VAE(Networks):
    def model(self, x, index):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", N, subsample=index):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits={call}(self.decoder(z))).to_event(1), obs=x)
"""


class Networks(VAE):
    """The networks and the guide of ``VAE``, for the model of ``USER_MODEL``."""


def user_vae(factor: float = 0.5, call: str = "squash"):
    """``USER_MODEL`` as it reads with this constant and this function, run as a module."""
    namespace = {**globals(), "__name__": "user_model"}
    exec(USER_MODEL.format(factor=factor, call=call), namespace)
    return namespace["VAE"]


@pytest.mark.slow
@pytest.mark.parametrize("change", [dict(factor=0.25), dict(call="torch.tanh")],
                         ids=["constant", "function"])
def test_changed_code_under_the_same_names_misses_the_key(change, caplog):
    assert train(recorded(), setup=user_vae()).svi.recordings == 4
    assert train(recorded(), setup=user_vae()).svi.loaded == 2       # the same code: found
    changed = train(recorded(), setup=user_vae(**change))
    assert (changed.svi.recordings, changed.svi.loaded) == (4, 0)
    assert lines(caplog) == []                        # missed, not loaded and rejected
    changed.assert_same_as(train(SVI, setup=user_vae(**change)))


@pytest.mark.slow
def test_a_change_no_key_sees_is_caught_at_the_first_replay_and_recorded_anew(
        recording_cache, caplog):
    train(recorded())
    PRIOR[0] = 3.0                                    # read in Python: baked into the program
    try:
        stale = train(recorded())
        assert (stale.svi.recordings, stale.svi.loaded) == (4, 0)
        assert len(lines(caplog)) == 2 and all("differs from Pyro's step" in line
                                               for line in lines(caplog))
        stale.assert_same_as(pyros())
        again = train(recorded())                     # the entries now hold the new program
        assert (again.svi.recordings, again.svi.loaded) == (0, 2)
        again.assert_same_as(stale)
    finally:
        PRIOR[0] = 1.0


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a recording")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_torch(path: Path) -> None:
    entry = torch.load(path, weights_only=True)
    entry["material"] = entry["material"].replace(torch.__version__, "2.99.0")
    torch.save(entry, path)


@pytest.mark.parametrize("damage", [_garbage, pytest.param(_truncated, marks=pytest.mark.slow),
                                    pytest.param(_other_torch, marks=pytest.mark.slow)])
def test_a_damaged_entry_is_recorded_anew_with_one_line(damage, recording_cache, caplog):
    train(recorded())
    for path in recording_cache.glob("*.pt"):
        damage(path)
    outcome = train(recorded())
    assert (outcome.svi.recordings, outcome.svi.loaded) == (4, 0)
    assert len(lines(caplog)) == 2 and all("ignored" in line for line in lines(caplog))
    outcome.assert_same_as(pyros())
    assert train(recorded()).svi.loaded == 2          # written anew


#: a tensor the model reads that no module, closure or named global holds: no name to find it by
HIDDEN = {"scale": torch.tensor(1.0)}


class HiddenTensor(VAE):
    def model(self, x, index):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", N, subsample=index):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), HIDDEN["scale"]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)


@pytest.mark.slow
def test_a_program_reading_a_tensor_it_cannot_name_is_not_kept(recording_cache, caplog):
    caplog.set_level(logging.DEBUG, "experiments.recording.cache")
    first = train(recorded(), setup=HiddenTensor)
    assert list(recording_cache.glob("*.pt")) == []
    assert any("no parameter or buffer" in r.getMessage() for r in caplog.records)
    again = train(recorded(), setup=HiddenTensor)
    assert again.svi.recordings == 4
    first.assert_same_as(train(SVI, setup=HiddenTensor))


def _write_often(folder: str, times: int) -> None:
    store = RecordingCache(Path(folder))
    for i in range(times):
        store.store("material", {"values": torch.full((200_000,), float(i % 2))})


def test_concurrent_writers_leave_a_valid_entry(tmp_path, caplog):
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_often, args=(str(tmp_path), 30)) for _ in range(2)]
    for writer in writers:
        writer.start()
    store, reads = RecordingCache(tmp_path), []
    while any(w.is_alive() for w in writers):
        reads.append(store.load("material"))
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    reads.append(store.load("material"))
    assert lines(caplog) == []                        # no reader saw a partial file
    entry = reads[-1]
    assert entry["values"].shape == (200_000,) and entry["values"].unique().numel() == 1
    assert [p.name for p in tmp_path.iterdir()] == [store.path("material").name]


SCRIPT = """
import json, sys
import pyro, torch
sys.path.insert(0, {tests!r})
from test_recording_cache import SVI, recorded, train
outcome = train(SVI if sys.argv[1] == "pyro" else recorded())
svi = outcome.svi
print(json.dumps({{"recordings": getattr(svi, "recordings", None),
                  "loaded": getattr(svi, "loaded", None), "losses": outcome.losses,
                  "params": {{k: v.tolist() for k, v in outcome.params.items()}},
                  "adam": {{k: {{s: t.tolist() for s, t in v.items()}}
                           for k, v in outcome.adam.items()}}}}))
"""


@pytest.mark.slow
def test_a_fresh_process_loads_from_the_cache(recording_cache, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(ROOT / "tests"))))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(kind: str) -> dict:
        done = subprocess.run([sys.executable, str(script), kind], env=env, cwd=tmp_path,
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout.splitlines()[-1])

    cold, warm, pyro_run = run("recorded"), run("recorded"), run("pyro")
    assert (cold["recordings"], cold["loaded"]) == (4, 0)
    assert (warm["recordings"], warm["loaded"]) == (0, 2)
    for key in ("params", "adam"):
        assert warm[key] == pyro_run[key] == cold[key]
    for run in (warm, cold):                          # to rounding: Outcome.assert_same_as
        assert run["losses"] == pytest.approx(pyro_run["losses"], rel=1e-5)


def test_poutine_handlers_around_the_step_with_other_settings_miss_the_key(caplog):
    """β in ``poutine.scale`` around the step is part of the key."""
    def scaled(scale):
        def make(*parts):
            svi = RecordedSVI(*parts)
            step = svi.step
            svi.step = lambda *a, **k: poutine.scale(scale=scale)(step)(*a, **k)
            return svi
        return make

    train(scaled(0.5))
    assert train(scaled(0.5)).svi.loaded == 2
    assert train(scaled(0.25)).svi.loaded == 0
    assert lines(caplog) == []                        # missed, not loaded and rejected
