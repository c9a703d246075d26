"""Runs held in one process never share parameters, and importing the library changes nothing
in the user's session (matplotlib's backend)."""
import gc
import subprocess
import sys

import pyro
import pytest
import torch

from experiments.evaluation.likelihood import mean_elbo
from experiments.parts.build import build
from experiments.training.end_to_end import run

X = torch.rand(20, 64)          # fixed data, scored by the Gaussian likelihood


def _matches_checkpoint(result) -> bool:
    saved = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)
    for part in ("model", "guide"):
        now = getattr(result.parts, part).state_dict()
        if now.keys() != saved[part].keys():
            return False
        if not all(torch.equal(now[k], saved[part][k]) for k in now):
            return False
    return True


@pytest.mark.slow
def test_two_runs_held_in_one_process_keep_their_own_parameters(quick_config, tmp_path):
    """A PyroModule adopts a value it finds in Pyro's store under its own name: before
    namespaces, scoring the first run after a second one had trained used the second's σ."""
    settings = dict(likelihood="gaussian", binarize="none")
    first = run(quick_config(**settings, out=str(tmp_path / "first")))
    before = mean_elbo(first.parts.model, first.parts.guide, X)
    second = run(quick_config(**settings, seed=1, out=str(tmp_path / "second")))
    assert mean_elbo(first.parts.model, first.parts.guide, X) == before
    mean_elbo(second.parts.model, second.parts.guide, X)
    assert _matches_checkpoint(first) and _matches_checkpoint(second)
    sigmas = [r.parts.model.likelihood.scale.item() for r in (first, second)]
    assert sigmas[0] != sigmas[1]
    # the checkpoint names the optimizer's state as before namespaces: "model.…", "guide.…"
    saved = torch.load(second.run_dir / "checkpoint.pt", weights_only=True)
    assert {name.split(".")[0] for name in saved["optim"]} == {"model", "guide"}


def test_a_parts_parameters_leave_pyro_store_with_the_parts():
    x = torch.rand(3, 5).bernoulli()
    kept = build("vae", "normal", "trace", data_dim=5, latent_dim=2, hidden_dims=(4,))
    dropped = build("vae", "normal", "trace", data_dim=5, latent_dim=2, hidden_dims=(4,))
    kept.elbo.loss(kept.model, kept.guide, x)
    dropped.elbo.loss(dropped.model, dropped.guide, x)
    names = set(pyro.get_param_store().keys())
    del dropped
    gc.collect()
    left = set(pyro.get_param_store().keys())
    assert left and left < names
    kept.elbo.loss(kept.model, kept.guide, x)           # still scores with its own parameters
    assert set(pyro.get_param_store().keys()) == left


@pytest.mark.slow
def test_importing_the_library_leaves_matplotlibs_backend_alone():
    """Only a command chooses the backend (files only); a notebook keeps its own."""
    code = ("import importlib, pathlib, matplotlib\n"
            "matplotlib.use('svg')\n"
            "root = pathlib.Path('experiments')\n"
            "for path in sorted(root.rglob('*.py')):\n"
            "    parts = path.with_suffix('').parts\n"
            "    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)\n"
            "    importlib.import_module(name)\n"
            "print(matplotlib.get_backend())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "svg"
