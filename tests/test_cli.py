"""The command line: bad input gets one clear line and exit status 2, and nothing is lost."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import experiments
from experiments import train
from experiments.common.errors import UserError
from experiments.config.config import Config, flag_of
from experiments.data.datasets import DataShape
from experiments.parts.build import parts_for
from experiments.recording.svi import RecordedSVI

QUICK = ["--epochs", "1", "--num-train", "200", "--num-test", "50", "--hidden-dims", "32",
         "--iwae-samples", "20", "--no-progress"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("argv, expected", [
    (["--model", "vea"], "unknown model 'vea': choose one of vae"),
    (["--guide", "gaussian"], "unknown guide 'gaussian': choose one of normal, mvn"),
    (["--elbo", "iwea"], "unknown ELBO estimator 'iwea': choose one of trace, meanfield"),
    (["--jit"], "--jit is retired: every run now records its training step and replays it"),
    (["--data", "cifar10"], "unknown data set 'cifar10'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--hidden-dims", ","], "--hidden-dims must be positive widths"),
    (["--test-fraction", "1.5"], "--test-fraction must lie strictly between 0 and 1"),
    (["--components", "0"], "--components must be at least 1"),
    (["--restarts", "0"], "--restarts must be at least 1"),
    (["--init", "kmeans"], "--init kmeans applies to the gmm model only"),
    (["--model", "lvm", "--latent-dim", "3", "--data", "ring"],
     "--model lvm: the latent dimension must be 1 or 2"),
    (["--model", "gmm", "--guide", "enum", "--elbo", "enum", "--data", "gmm-1d",
      "--num-train", "2", "--components", "3"], "--components 3 needs at least as many"),
    (["--model", "ssvae", "--guide", "m2", "--labels", "201"],
     "--labels 201 is more than the 200 training examples"),
    (["--labels", "50"], "--labels applies to the models that learn from labels (ssvae); vae"),
    (["--model", "ssvae", "--guide", "m2", "--data", "ring"],
     "--model ssvae learns from labels, and ring has none"),
    (["--model", "cvae", "--visible", "4"], "--visible must be at most 3 (got 4)"),
    (["--model", "ssvae", "--guide", "m2", "--aux-weight", "-1"],
     "--aux-weight must be at least 0"),
])
def test_bad_options_are_refused_in_one_line(argv, expected, capsys, tmp_path):
    assert train.main(QUICK + argv + ["--out", str(tmp_path / "run")]) == 2
    assert expected in error_line(capsys)
    assert not (tmp_path / "run").exists()          # refused before any work


def test_values_outside_the_bernoulli_support_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "wide.npz", x=np.linspace(-1, 3, 60).reshape(20, 3))
    argv = ["--data", str(tmp_path / "wide.npz"), "--out", str(tmp_path / "run")] + QUICK
    assert train.main(argv) == 2
    line = error_line(capsys)
    assert "bernoulli likelihood needs [0.0, 1.0]" in line and "--likelihood gaussian" in line
    assert train.main(argv[:-1] + ["--likelihood", "gaussian", "--no-progress"]) == 0


def test_cuda_without_a_gpu_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.main(QUICK + ["--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "sees no CUDA GPU" in error_line(capsys)


@pytest.mark.slow
def test_an_existing_run_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--out", str(out)]) == 0
    summary_before = (out / "summary.json").read_bytes()
    capsys.readouterr()
    assert train.main(QUICK + ["--out", str(out), "--seed", "7"]) == 2
    assert "already holds a run" in error_line(capsys)
    assert (out / "summary.json").read_bytes() == summary_before
    assert train.main(QUICK + ["--out", str(out), "--seed", "7", "--force"]) == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 7


def test_resume_refuses_a_corrupt_checkpoint_and_a_changed_setting(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--out", str(out)]) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--epochs", "2", "--latent-dim", "5"]) == 2
    assert "--latent-dim 5 differs from the run's 2" in error_line(capsys)
    (out / "checkpoint.pt").write_bytes(b"\x80\x04 definitely not a checkpoint")
    assert train.main(["--resume", str(out), "--epochs", "2"]) == 2
    assert "checkpoint.pt is corrupt" in error_line(capsys)
    assert train.main(["--resume", str(tmp_path / "missing"), "--epochs", "2"]) == 2
    assert "no such run folder" in error_line(capsys)


@pytest.mark.slow
def test_resume_from_the_command_line_continues_to_the_total_epochs(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--out", str(out)]) == 0
    assert train.main(["--resume", str(out), "--epochs", "3", "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 3


def test_a_diverging_run_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_step = RecordedSVI.step                     # what trains by default
    calls = {"n": 0}

    def step_that_diverges(self, *args, **kwargs):
        calls["n"] += 1
        return float("nan") if calls["n"] == 4 + 2 else real_step(self, *args, **kwargs)

    monkeypatch.setattr(RecordedSVI, "step", step_that_diverges)
    argv = QUICK + ["--out", str(out), "--epochs", "3", "--batch-size", "50"]   # 4 steps/epoch
    assert train.main(argv) == 2
    line = error_line(capsys)
    assert "diverged at epoch 2, step 2" in line and "smaller --lr" in line
    kept = torch.load(out / "checkpoint.pt", weights_only=True)
    assert kept["epoch"] == 1


@pytest.mark.slow
def test_the_module_runs_as_a_command_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "--model", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nope': choose one of vae, ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_config_field_is_one_option_with_its_default_and_its_declared_range():
    """The parser is generated from ``Config``: each field is one flag with the field's
    default, and each range or choice a field declares is refused by ``validate`` naming it."""
    actions = {a.dest: a for a in train.parser()._actions}
    for field in dataclasses.fields(Config):
        action = actions[field.name]
        flag = "--no-progress" if field.name == "progress" else flag_of(field.name)
        assert action.option_strings == [flag] and action.default == field.default
        assert action.help
        rule = field.metadata
        wrong = {}
        if rule["at_least"] is not None:
            wrong[rule["at_least"] - 1] = f"{flag} must be at least {rule['at_least']}"
        if rule["at_most"] is not None:
            wrong[rule["at_most"] + 1] = f"{flag} must be at most {rule['at_most']}"
        if rule["positive"]:
            wrong[0.0] = f"{flag} must be positive"
        if rule["between"] is not None:
            wrong[rule["between"][1]] = f"{flag} must lie strictly between"
        if rule["choices"] is not None:
            wrong["nope"] = f"{flag} must be one of {', '.join(rule['choices'])}"
            assert action.choices == list(rule["choices"])
        for value, message in wrong.items():
            with pytest.raises(UserError, match=message):
                Config(**{field.name: value}).validate()


@pytest.mark.parametrize("model, guide", [("vae", "normal"), ("hvae", "chain"),
                                          ("discrete-vae", "relaxed"), ("gmm", "categorical"),
                                          ("lvm", "normal"), ("ppca", "normal"), ("ssvae", "m2"),
                                          ("cvae", "normal"), ("vae", "local")])
def test_the_python_api_builds_what_the_command_line_builds(model, guide):
    """``experiments.build`` fills what it is not given from ``Config``'s defaults, as the
    command line does (it once gave the vae a latent_dim of 20 where the command line gave 2)."""
    api = experiments.build(model, guide, "trace", data_dim=16, num_data=10)
    cli = parts_for(Config(model=model, guide=guide), DataShape("x", 16, 10, 5),
                    torch.device("cpu"))
    for part in ("model", "guide"):
        shapes = [{k: v.shape for k, v in getattr(p, part).state_dict().items()}
                  for p in (api, cli)]
        assert shapes[0] == shapes[1]
    if model == "vae":
        assert api.model.latent_dim == Config().latent_dim == 2


def test_resume_to_fewer_epochs_than_finished_is_refused_and_rewrites_nothing(tmp_path,
                                                                              capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "2", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--epochs", "1"]) == 2
    assert error_line(capsys) == (f"error: --resume {out}: the run has finished 2 epochs and "
                                  "--epochs is the total, so 1 would go back; give --epochs 2 "
                                  "or more (or start a new run for fewer)")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resume_takes_the_checkpoint_file_for_its_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--out", str(out)]) == 0
    assert train.main(["--resume", str(out / "checkpoint.pt"), "--epochs", "2",
                       "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
    assert not (out / "checkpoint.pt" / "summary.json").exists()
    capsys.readouterr()
    assert train.main(["--resume", str(out / "metrics.csv"), "--epochs", "3"]) == 2
    assert "metrics.csv is a file; pass the run folder that holds checkpoint.pt" in \
        error_line(capsys)


def test_the_printed_summary_says_why_the_train_elbo_may_sit_below_the_test_elbo(tmp_path,
                                                                                 capsys):
    assert train.main(QUICK + ["--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    line = next(text for text in capsys.readouterr().out.splitlines() if "train ELBO" in text)
    assert f"{summary['train_elbo']:10.3f}" in line
    assert "fresh binarizations (may sit below test: docs/guide/a-run.md)" in line
