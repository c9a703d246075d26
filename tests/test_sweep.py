"""A comparison on a scheduler: ``--plan-only`` writes one command line per run, the lines run
anywhere, and ``--collect`` reports the finished run folders as a local ``--jobs`` run does,
listing the runs that have not finished."""
import csv
import json
import shlex

import pytest
import torch

from experiments import compare

ARGV = ["--elbos", "trace,iwae", "--num-particles", "1,3", "--seeds", "1", "--epochs", "2",
        "--num-train", "96", "--num-test", "24", "--hidden-dims", "16", "--grad-draws", "4",
        "--iwae-samples", "10", "--batch-size", "32", "--jobs", "2"]
TIMING = {"seconds_per_step"}           # wall time: the one column two runs cannot share


def rows(folder):
    with open(folder / "comparison.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def run_line(line: str) -> int:
    """A line of commands.txt, run in this process."""
    argv = shlex.split(line)
    assert argv[1:3] == ["-m", "experiments.compare"]
    return compare.main(argv[3:])


@pytest.mark.slow
def test_plan_only_then_the_lines_then_collect_give_the_comparison_of_jobs(tmp_path, capsys):
    local, planned = tmp_path / "local", tmp_path / "planned"
    assert compare.main(ARGV + ["--out", str(local)]) == 0
    assert compare.main(ARGV + ["--plan-only", "--out", str(planned)]) == 0
    assert not (planned / "runs").exists()                        # nothing trained yet
    lines = (planned / "commands.txt").read_text().splitlines()
    assert len(lines) == 3                                        # trace, iwae K=1, iwae K=3
    threads = json.loads((planned / "plan.json").read_text())["jobs"][0]["threads"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)      # as the local workers trained: the same rounding
    try:
        for line in lines[:-1]:
            assert run_line(line) == 0
        capsys.readouterr()
        assert compare.main(["--collect", str(planned)]) == 1     # one run has not finished
        captured = capsys.readouterr()
        missing = [line for line in captured.err.splitlines() if line.startswith("missing:")]
        assert missing == [f"missing: iwae K=3 seed 0: not started (job 2, "
                           f"{planned.resolve() / 'runs' / 'iwae-K3-seed0'})"]
        assert "Not included: 1 planned run(s)" in (planned / "comparison.md").read_text()
        assert [r["label"] for r in rows(planned)] == ["trace", "iwae K=1"]
        assert run_line(lines[-1]) == 0
    finally:
        torch.set_num_threads(before)
    assert compare.main(["--collect", str(planned)]) == 0
    assert rows(planned) == rows(local) and len(rows(local)) == 3
    for name in ("curves.png", "gradient_variance.png", "snr_vs_k.png", "snr_sweep.csv"):
        assert (planned / name).stat().st_size > 0


def test_collect_and_run_job_refuse_what_they_cannot_read_in_one_line(tmp_path, capsys):
    assert compare.main(["--collect", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --collect {tmp_path / 'plan.json'}: no comparison plan there")
    assert "\n" not in err
    assert compare.main(ARGV + ["--plan-only", "--out", str(tmp_path / "cmp")]) == 0
    capsys.readouterr()
    plan = tmp_path.resolve() / "cmp" / "plan.json"
    assert compare.main(["--run-job", str(plan), "--job", "3"]) == 2
    assert capsys.readouterr().err == f"error: --job 3: the plan {plan} has jobs 0 to 2\n"
    assert compare.main(["--collect", str(tmp_path / "cmp")]) == 2      # nothing ran yet
    assert "none of its 3 runs has finished" in capsys.readouterr().err
