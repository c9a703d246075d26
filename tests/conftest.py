"""Per-test reset, as Pyro's own suite does: empty parameter store, fixed seed, validation on."""
import os
import shutil
import tempfile

import pyro
import pytest
import torch

from experiments.config.config import Config
from experiments.recording.cache import ENVIRONMENT


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The suite's tensors are tiny: one intra-op thread skips the thread-pool overhead that
    dominates them (and keeps two cores free for the comparison's two worker processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def reset_pyro():
    """Validation on checks every step Pyro takes; ``RecordedSVI`` records and replays under it
    all the same (recordings skip the checks), so the suite's runs take the default path."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


def pytest_configure(config):
    """Recordings kept between runs (experiments.recording.cache) never go to the user's cache:
    a folder of the session's for what runs outside a test (a module's fixture), and
    ``recording_cache`` gives each test its own."""
    config.recordings = tempfile.mkdtemp(prefix="elbo-lab-test-recordings-")
    os.environ[ENVIRONMENT] = config.recordings


def pytest_unconfigure(config):
    shutil.rmtree(config.recordings, ignore_errors=True)


@pytest.fixture(autouse=True)
def recording_cache(tmp_path_factory, monkeypatch):
    """Each test's own folder of recordings kept between runs: no test loads another's."""
    folder = tmp_path_factory.mktemp("recordings")
    monkeypatch.setenv(ENVIRONMENT, str(folder))
    return folder


@pytest.fixture
def quick_config(tmp_path):
    """A small, fast digits run writing into the test's own folder; override what a test needs."""
    def make(**overrides) -> Config:
        settings = dict(epochs=2, num_train=300, num_test=100, hidden_dims=(64,),
                        iwae_samples=50, progress=False, pyro_validation=True,
                        out=str(tmp_path / "run"))
        settings.update(overrides)
        return Config(**settings)

    return make
