"""What a newcomer tripped on (issue 24): each refused or handled in one line before anything is
written, or warned where the run is legal but almost surely a mistake."""
from pathlib import Path

import pytest

from experiments import compare, gaps, train
from experiments.comparison.jobs import plan
from experiments.training.config import Config

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
