"""Faults injected on purpose: interrupts, a failing checkpoint write, two runs on one folder,
and likelihoods that underflow a naive implementation. Nothing already written may be lost."""
import json
import os
import signal
import subprocess
import sys
import time

import pyro
import pytest
import torch

from experiments import train
from experiments.common.errors import UserError
from experiments.config.config import Config
from experiments.evaluation.likelihood import iwae_log_likelihood
from experiments.parts.build import build
from experiments.recording.svi import RecordedSVI as SVI  # what trains by default
from experiments.training import folder as runs
from experiments.training.end_to_end import run

QUICK = ["--num-train", "200", "--num-test", "50", "--hidden-dims", "32", "--iwae-samples",
         "20", "--no-progress", "--batch-size", "50"]


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint_marks_the_summary_and_resumes(tmp_path, capsys,
                                                                        monkeypatch):
    out = tmp_path / "run"
    real_step, calls = SVI.step, {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4 + 2:                       # epoch 2, step 2 (4 steps per epoch)
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SVI, "step", interrupted)
    assert train.main(QUICK + ["--epochs", "3", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"stopped: interrupted after 1 finished epoch(s); continue with --resume "
                   f"{out} --epochs 3")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["completed_epochs"] == 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / ".lock").exists()
    monkeypatch.setattr(SVI, "step", real_step)
    assert train.main(["--resume", str(out), "--epochs", "3", "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_sigterm_stops_a_real_run_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train", *QUICK, "--epochs",
                             "500", "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped: interrupted after" in err and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["completed_epochs"] >= 1
    kept = torch.load(out / "checkpoint.pt", weights_only=True)
    assert kept["epoch"] == summary["completed_epochs"]


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one_intact(tmp_path,
                                                                          monkeypatch):
    parts = build("vae", "normal", "trace", data_dim=4, latent_dim=2, hidden_dims=(8,))
    optim = pyro.optim.Adam({"lr": 1e-3})
    path = tmp_path / "checkpoint.pt"
    save = dict(config=Config(), model=parts.model, guide=parts.guide, optim=optim, metrics=[])
    runs.save_checkpoint(path, epoch=1, **save)
    before = path.read_bytes()

    def torn_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_write)
    with pytest.raises(OSError, match="disk full"):
        runs.save_checkpoint(path, epoch=2, **save)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]   # no temp file


def test_two_runs_on_one_folder_are_refused_and_a_stale_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(str(os.getppid()))          # a live process holds it
    with pytest.raises(UserError, match="being written by another run"):
        with runs.exclusive(folder):
            pass
    (folder / ".lock").write_text("999999999")                # no such process
    with runs.exclusive(folder):
        assert (folder / ".lock").read_text() == str(os.getpid())
    assert not (folder / ".lock").exists()


def test_log_space_evaluation_survives_likelihoods_that_underflow():
    """With D = 3000 random bits, log w ≈ −2000 per point: exp(log w) underflows to 0 in
    float32 (below about e^−103), so a naive mean of weights would give log 0 = −∞."""
    parts = build("vae", "normal", "trace", data_dim=3000, latent_dim=2, hidden_dims=(8,))
    x = torch.rand(4, 3000).bernoulli()
    estimate, _ = iwae_log_likelihood(parts.model, parts.guide, x, 50)
    assert estimate < -1000 and torch.isfinite(torch.tensor(estimate))
    gmm = build("gmm", "enum", "enum", data_dim=1, components=3).model
    far = torch.tensor([[1e3], [-1e3]])                       # log p(x) ~ −10⁶
    exact = gmm.exact_log_likelihood(far)
    assert torch.isfinite(exact).all() and (exact < -1e4).all()


@pytest.mark.slow
def test_resume_with_a_changed_setting_needs_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--epochs", "2", "--lr", "0.01"]) == 2
    assert "pass --force to continue with the change" in capsys.readouterr().err
    assert train.main(["--resume", str(out), "--epochs", "2", "--lr", "0.01", "--force",
                       "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["lr"] == 0.01
    capsys.readouterr()
    # a change the checkpoint cannot fit is still refused, in one line
    assert train.main(["--resume", str(out), "--epochs", "3", "--latent-dim", "5", "--force",
                       "--no-progress"]) == 2
    assert "checkpoint does not fit this model and guide" in capsys.readouterr().err


@pytest.mark.slow
def test_two_runs_in_different_folders_at_once_do_not_interfere(tmp_path):
    """Two processes training at the same time give exactly the numbers of one alone."""
    def start(name):
        return subprocess.Popen([sys.executable, "-m", "experiments.train", *QUICK, "--epochs",
                                 "2", "--out", str(tmp_path / name)], stderr=subprocess.PIPE)

    first, second = start("a"), start("b")
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    alone = run(Config(num_train=200, num_test=50, hidden_dims=(32,), iwae_samples=20,
                       progress=False, batch_size=50, epochs=2,
                       out=str(tmp_path / "alone")))
    for name in ("a", "b"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["test_elbo"] == pytest.approx(alone.summary["test_elbo"], abs=1e-5)
        assert summary["test_iwae"] == pytest.approx(alone.summary["test_iwae"], abs=1e-5)


@pytest.mark.slow
def test_ctrl_c_before_the_first_epoch_leaves_nothing_so_the_same_command_starts_again(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_step = SVI.step

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SVI, "step", interrupted)
    argv = QUICK + ["--epochs", "2", "--out", str(out)]
    assert train.main(argv) == 130
    assert capsys.readouterr().err.strip() == ("stopped: interrupted before the first epoch "
                                               "finished, so nothing was kept: run the same "
                                               "command again")
    assert not [p.name for p in out.iterdir()]
    monkeypatch.setattr(SVI, "step", real_step)
    assert train.main(argv) == 0                          # no --force, no --resume needed


@pytest.mark.slow
def test_force_removes_the_old_run_before_the_new_one_starts(tmp_path, capsys, monkeypatch):
    """Else a new run stopped before its first epoch would leave the old checkpoint beside the
    new config, and the message would offer to resume the old run."""
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    monkeypatch.setattr(SVI, "step", lambda self, *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out), "--force"]) == 130
    assert "nothing was kept" in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists() and not (out / "config.json").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        result = run(Config(num_train=200, num_test=50, hidden_dims=(8,), iwae_samples=10,
                            progress=False, epochs=1, out=str(tmp_path / "run")))
    finally:
        os.umask(previous)
    for name in ("config.json", "metrics.csv", "summary.json", "checkpoint.pt", "elbo.png"):
        assert (result.run_dir / name).stat().st_mode & 0o777 == mode, name


@pytest.mark.slow
def test_ctrl_c_while_the_command_starts_is_one_line_and_exit_130(tmp_path):
    """Interrupted while importing torch and Pyro (the first seconds), the command says so in
    one line instead of a traceback from inside an import."""
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train", *QUICK, "--out",
                             str(tmp_path / "run")], stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped: interrupted"), err


def test_ctrl_c_before_training_begins_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("experiments.training.end_to_end.prepare_data", interrupted)
    assert train.main(QUICK + ["--out", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err.strip() == "stopped: interrupted"
    assert not (tmp_path / "run").exists()
