"""What a newcomer tripped on (issue 24): each refused or handled in one line before anything is
written, or warned where the run is legal but almost surely a mistake."""
from pathlib import Path

import pytest
import torch

from experiments import compare, gaps, train
from experiments.comparison.jobs import plan
from experiments.config.config import Config

QUICK = ["--epochs", "1", "--num-train", "200", "--num-test", "50", "--hidden-dims", "32",
         "--iwae-samples", "20", "--no-progress"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("argv, expected", [
    (["--elbos", "trace,trace"], "error: --elbos names trace twice; name each estimator once"),
    (["--elbos", "iwae,iwae/normal"], "error: --elbos names iwae/normal twice"),
    (["--num-particles", "5,5"], "--num-particles: expected each number once, got '5,5'"),
    (["--snr-sweep", "1,10,1"], "--snr-sweep: expected each number once"),
])
def test_a_comparison_naming_a_run_twice_is_refused_before_anything_is_written(
        argv, expected, capsys, tmp_path):
    out = tmp_path / "cmp"
    assert compare.main(argv + ["--epochs", "1", "--out", str(out)]) == 2
    assert expected in error_line(capsys)
    assert not out.exists()


def test_every_estimator_trained_with_k_particles_is_labeled_with_k(tmp_path):
    config = Config(epochs=1).validate()
    jobs = plan(config, [("trace", "normal"), ("stl", "normal"), ("iwae", "normal")], [5], 1,
                tmp_path, grad_draws=2, jobs=1)
    assert [job.label for job in jobs] == ["trace K=5", "stl K=5", "iwae K=5"]
    assert all(job.config["num_particles"] == 5 for job in jobs)
    one = plan(config, [("trace", "normal"), ("iwae", "normal")], [1, 5], 1, tmp_path, 2, 1)
    assert [job.label for job in one] == ["trace", "iwae K=1", "iwae K=5"]


@pytest.mark.parametrize("command, argv, flag", [
    (train, ["--hidden-dims", "abc"], "--hidden-dims"),
    (train, ["--epochs", "x"], "--epochs"),
    (train, ["--no-such-option"], "--no-such-option"),
    (compare, ["--seeds", "three"], "--seeds"),
    (gaps, [], "--run"),
])
def test_an_unreadable_option_is_one_error_line_not_the_usage_block(command, argv, flag, capsys):
    assert command.main(argv) == 2
    line = error_line(capsys)
    assert flag in line and "--help" in line


def test_gaps_takes_no_progress_as_every_command_does():
    assert gaps.parser().parse_args(["--run", "r", "--no-progress"]).progress is False
    assert gaps.parser().parse_args(["--run", "r"]).progress is True


RUN_FILES = ("config.json", "metrics.csv", "summary.json", "checkpoint.pt")


@pytest.mark.parametrize("lr, says", [
    ("1e30", "the loss is nan"),                             # NaN at once
    ("1e3", "the train ELBO fell to "),                      # finite, but −10¹⁶ nats per point
])
def test_a_run_diverging_in_its_first_epoch_says_nothing_was_kept_and_its_folder_takes_a_rerun(
        lr, says, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "3", "--lr", lr, "--out", str(out)]) == 2
    line = error_line(capsys)
    assert says in line and "training diverged at epoch 1" in line
    assert f"nothing was kept, so {out} can be used again" in line
    assert f"a --lr below {float(lr):g} (the default is 0.001)" in line
    assert "--likelihood bernoulli" not in line              # what the run already uses
    assert not [name for name in RUN_FILES if (out / name).exists()]
    assert train.main(QUICK + ["--out", str(out)]) == 0     # the same folder, a sane --lr


@pytest.mark.slow
def test_a_run_diverging_later_keeps_its_checkpoint_and_resumes_with_a_smaller_lr(
        tmp_path, capsys, monkeypatch):
    from experiments.recording.svi import RecordedSVI
    real_step, calls = RecordedSVI.step, {"n": 0}

    def step_that_diverges(self, *args, **kwargs):
        calls["n"] += 1
        return float("inf") if calls["n"] == 4 + 2 else real_step(self, *args, **kwargs)

    monkeypatch.setattr(RecordedSVI, "step", step_that_diverges)
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "3", "--batch-size", "50", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert line.startswith("error: training diverged at epoch 2, step 2: the loss is inf; "
                           f"the checkpoint of epoch 1 is kept (continue it with --resume {out} "
                           "--force and a smaller --lr); try a --lr below 0.001 or a larger "
                           "--batch-size")
    monkeypatch.setattr(RecordedSVI, "step", real_step)
    assert train.main(["--resume", str(out), "--epochs", "3", "--lr", "0.0005", "--force",
                       "--no-progress"]) == 0


def test_the_divergence_criterion_is_a_fall_of_a_thousand_times_the_starting_bound():
    from experiments.training.divergence import DivergenceWatch, TrainingDiverged
    n = 200
    watch = DivergenceWatch(n)
    watch.check(45.0 * n, epoch=1, step=1)                  # ELBO₁ = −45 nats per point
    watch.check((45.0 + 1000 * 45.0 - 1) * n, 1, 2)         # just inside: a bad step, kept on
    with pytest.raises(TrainingDiverged, match="epoch 3, step 7: the train ELBO fell to -4.5e"):
        watch.check((45.0 + 1000 * 45.0 + 1) * n, 3, 7)
    small = DivergenceWatch(n)                              # a bound near 0 may fall 1000 nats
    small.check(-0.1 * n, 1, 1)
    small.check(999.0 * n, 1, 2)
    with pytest.raises(TrainingDiverged):
        small.check(1000.5 * n, 1, 3)


def test_divergence_advice_names_only_what_the_run_does_not_do_already():
    from experiments.training.divergence import advice
    assert advice(Config(lr=1e-4)) == "try a --lr below 0.0001 or a larger --batch-size"
    assert "--likelihood bernoulli" in advice(Config(likelihood="gaussian"))
    assert "--likelihood" not in advice(Config(model="lvm", likelihood="gaussian"))


def _refuse_writes_under(folder: Path, monkeypatch):
    """Writing into ``folder`` fails as in a read-only folder, also for root (who may write
    anywhere a mode forbids): creating a file there raises EACCES, and access() says no."""
    import os
    import tempfile
    real_open, real_mkstemp, real_access = os.open, tempfile.mkstemp, os.access

    def under(path) -> bool:
        return Path(path).resolve().parent == folder.resolve() or Path(path) == folder

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", lambda path, *a, **k: refused(path) if under(path)
                        else real_open(path, *a, **k))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: refused(dir)
                        if under(Path(dir) / "x") else real_mkstemp(*a, dir=dir, **k))
    monkeypatch.setattr(os, "access", lambda path, mode: not under(path)
                        and real_access(path, mode))


def test_an_existing_read_only_folder_as_out_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "read-only"
    out.mkdir()
    _refuse_writes_under(out, monkeypatch)
    assert train.main(QUICK + ["--out", str(out)]) == 2
    assert error_line(capsys) == f"error: --out {out} is not writable; choose another --out"


def test_the_lock_of_a_folder_that_refuses_writes_is_one_line(tmp_path, monkeypatch):
    from experiments.common.errors import UserError
    from experiments.training.folder import exclusive
    out = tmp_path / "read-only"
    out.mkdir()
    _refuse_writes_under(out, monkeypatch)
    with pytest.raises(UserError, match="cannot write into .*: Permission denied; choose"):
        with exclusive(out):
            pass


@pytest.mark.parametrize("where, says", [
    ("a-file", "--out {out} is a file, not a folder"),
    ("a-file/sub", "cannot create the folder {out} (--out): Not a directory; choose another --out"),
])
def test_compare_out_at_a_file_or_under_one_is_one_line(where, says, tmp_path, capsys):
    (tmp_path / "a-file").write_text("mine\n")
    out = tmp_path / where
    assert compare.main(["--elbos", "trace", "--seeds", "1", "--epochs", "1", "--out",
                         str(out)]) == 2
    assert error_line(capsys) == "error: " + says.format(out=out)
    assert (tmp_path / "a-file").read_text() == "mine\n"


def test_compare_out_in_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "read-only"
    out.mkdir()
    _refuse_writes_under(out, monkeypatch)
    assert compare.main(["--elbos", "trace", "--seeds", "1", "--epochs", "1", "--out",
                         str(out)]) == 2
    assert error_line(capsys) == f"error: --out {out} is not writable; choose another --out"


def test_a_file_that_cannot_be_written_is_one_line_for_every_command(tmp_path, monkeypatch):
    """gaps, compare --collect and the lessons write beside what they read: a read-only
    folder there is a UserError naming the file, not an OSError from deep inside."""
    from experiments.common.errors import UserError
    from experiments.common.files import write_json
    _refuse_writes_under(tmp_path, monkeypatch)
    with pytest.raises(UserError, match=f"cannot write {tmp_path / 'gaps.json'}: Permission"):
        write_json(tmp_path / "gaps.json", {"a": 1})


@pytest.mark.slow
def test_parts_far_larger_than_the_data_are_warned_about_before_training(tmp_path, capsys):
    from experiments.parts.build import build
    from experiments.training.sizes import oversized
    x = torch.rand(1438, 64)                                  # the digits' training set
    d, h, D = 100_000, 400, 64
    count = (D * h + h + 2 * (h * d + d)) + (d * h + h + h * D + D)   # encoder, decoder
    parts = build("vae", "normal", "trace", data_dim=D, num_data=len(x), latent_dim=d)
    warning = oversized(parts.model, parts.guide, x)
    assert warning == (f"the model and guide have {count:,} parameters, 1,307 times the 92,032 "
                       "numbers of the training data (a checkpoint of about 1.4 GB with Adam's "
                       "moments): check --latent-dim and --hidden-dims")
    default = build("vae", "normal", "trace", data_dim=D, num_data=len(x))
    assert oversized(default.model, default.guide, x) is None
    assert oversized(default.model, default.guide, x[:10]) is None     # small: cheap anyway
    out = tmp_path / "run"
    argv = ["--epochs", "1", "--num-train", "50", "--num-test", "20", "--iwae-samples", "5",
            "--no-progress", "--out", str(out)]
    assert train.main(argv + ["--latent-dim", "2000"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the model and guide have 2,")
    assert train.main(argv + ["--force"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["compare", "list", "train", "gaps"])
def test_ctrl_c_while_a_command_imports_is_one_line_and_exit_130(name):
    """Interrupted while it imports (``-X importtime`` tells when it is inside its imports:
    once experiments.config.config has loaded), every command says so in one line."""
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", f"experiments.{name}"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:
        if line.rstrip().endswith("experiments.config.config"):
            break
    proc.send_signal(signal.SIGINT)
    err = [line for line in proc.stderr.read().splitlines() if not line.startswith("import time:")]
    assert proc.wait(timeout=60) == 130, err
    assert err == ["stopped: interrupted while starting, before any work"]


def test_each_estimator_names_the_bound_its_train_value_is():
    from experiments.estimators import ELBOS
    named = {"iwae": "IWAE bound", "dreg": "IWAE bound", "renyi": "Rényi bound"}
    for name, estimator in ELBOS.items():
        assert estimator.objective(1) == "ELBO", name          # K = 1: every bound is the ELBO
        assert estimator.objective(5) == named.get(name, "ELBO"), name


@pytest.mark.parametrize("argv, train_line, iwae_line", [
    (["--model", "cvae"], "  train ELBO ", "  test IWAE log p(x_h | x_v) "),
    (["--model", "hvae", "--guide", "chain", "--elbo", "iwae", "--num-particles", "3",
      "--vectorize-particles"], "  train IWAE bound ", "  test IWAE log p(x)  "),
    (["--elbo", "renyi", "--num-particles", "3", "--vectorize-particles"],
     "  train Rényi bound ", "  test IWAE log p(x) "),
    (["--elbo", "iwae", "--num-particles", "1"], "  train ELBO ", "  test IWAE log p(x) "),
])
def test_the_summary_names_what_the_model_observes_and_what_the_run_trained(
        argv, train_line, iwae_line, tmp_path, capsys):
    assert train.main(QUICK + argv + ["--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out.splitlines()
    train_row = next(line for line in out if line.startswith("  train "))
    iwae_row = next(line for line in out if line.startswith("  test IWAE "))
    assert train_row.startswith(train_line) and iwae_row.startswith(iwae_line)
    assert train_row.index(".") == iwae_row.index(".")          # the numbers aligned


def test_comparison_curves_tell_coinciding_estimators_apart_with_one_legend_for_both_panels(
        tmp_path, monkeypatch):
    from experiments.figures import comparison
    figures = []
    monkeypatch.setattr(comparison, "save_figure", lambda fig, path: figures.append(fig))
    same = [{"epoch": e, "test_elbo": -30.0 + e, "seconds": 0.1} for e in range(1, 13)]
    names = ["trace", "meanfield", "stl", "iwae K=1", "dreg K=1"]        # one curve, five times
    comparison.plot_curves([{"label": n, "steps_per_epoch": 10, "metrics": same} for n in names],
                           tmp_path / "curves.png")
    (fig,) = figures
    for ax in fig.axes:
        looks = {(line.get_linestyle(), line.get_marker()) for line in ax.get_lines()}
        assert len(looks) == len(names)                     # no two drawn alike
        assert ax.get_legend() is None
        starts = {line.get_markevery()[0] for line in ax.get_lines()}
        assert len(starts) > 1                              # markers staggered along the curve
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [f"{n} (1 seed)" for n in names]


def test_every_epoch_axis_shows_whole_epochs(tmp_path, monkeypatch):
    from experiments.figures import common, labels
    figures = []
    monkeypatch.setattr(common, "save_figure", lambda fig, path: figures.append(fig))
    monkeypatch.setattr(labels, "save_figure", lambda fig, path: figures.append(fig))
    rows = [{"epoch": e, "train_elbo": -40.0 + e, "test_elbo": -41.0 + e, "test_iwae": -40.5 + e,
             "test_exact_log_likelihood": -39.0, "test_gap": 2.0 - e / 2,
             "test_accuracy": 0.5 + e / 10, "baseline_accuracy": 0.6} for e in (1, 2, 3)]
    common.plot_training_curves(rows, tmp_path / "elbo.png")
    common.plot_bounds(rows, tmp_path / "bounds.png")
    labels.plot_accuracy(rows, tmp_path / "accuracy.png")
    for fig in figures:
        fig.canvas.draw()
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
            assert ticks and all(t == int(t) for t in ticks), ticks


@pytest.mark.slow
def test_compare_without_a_terminal_says_each_epoch_as_a_line(tmp_path, capsys):
    argv = ["--elbos", "trace", "--seeds", "1", "--epochs", "2", "--num-train", "200",
            "--num-test", "40", "--hidden-dims", "16", "--grad-draws", "4", "--iwae-samples", "5",
            "--jobs", "1", "--out", str(tmp_path / "cmp")]
    assert compare.main(argv) == 0                     # stderr is captured: no terminal
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"1 run, 1 at a time, into {tmp_path / 'cmp'}/runs/"
    assert err[1].startswith("epoch 1/2: trace seed 0, test ELBO -")
    assert err[2].startswith("epoch 2/2: trace seed 0, test ELBO -")
    assert err[3].startswith("done: trace seed 0")


def test_a_failed_download_leaves_the_data_folder_as_it_found_it(tmp_path, monkeypatch):
    import torchvision

    from experiments.common.errors import UserError
    from experiments.data.datasets import DATASETS

    def offline(self):                      # what a download cut off half way leaves
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        (Path(self.raw_folder) / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b half")
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    fresh = tmp_path / "fresh" / "data"
    with pytest.raises(UserError, match="mnist: not found in .* and could not be downloaded"):
        DATASETS["mnist"](data_dir=str(fresh))
    assert not (tmp_path / "fresh").exists()
    mine = tmp_path / "data" / "MNIST" / "raw" / "notes.txt"      # a user's own file stays
    mine.parent.mkdir(parents=True)
    mine.write_text("mine\n")
    with pytest.raises(UserError):
        DATASETS["mnist"](data_dir=str(tmp_path / "data"))
    assert sorted(p.name for p in mine.parent.iterdir()) == ["notes.txt"]
