"""The threads a run uses: the policy as a function of the cores, their load and the user's
setting; the option and the environment that override it; the one line a run logs."""
import pytest
import torch

from experiments import train
from experiments.common import threads
from experiments.common.threads import choose_threads
from experiments.comparison.jobs import threads_per_job
from experiments.training.end_to_end import run


@pytest.mark.parametrize("cores, default, busy, expected", [
    (2, 2, 0.0, 2),          # alone: torch's default
    (2, 2, 0.2, 2),          # a background process's flicker leaves both cores free
    (2, 2, 0.3, 1),          # most of one core taken
    (2, 2, 1.0, 1),
    (2, 2, 2.0, 1),          # two CPU-bound processes beside it: one thread, never zero
    (16, 8, 4.0, 8),         # torch's default (physical cores) is the ceiling
    (16, 8, 10.0, 6),
    (16, 8, 15.9, 1),
    (1, 1, 0.0, 1),
])
def test_auto_takes_one_thread_per_core_left_free_within_torchs_default(cores, default, busy,
                                                                        expected):
    choice = choose_threads(None, None, default, cores, busy)
    assert choice.threads == expected and choice.automatic


def test_the_users_setting_wins_over_the_load():
    """--threads N first, then OMP_NUM_THREADS / torch.set_num_threads, then the load."""
    assert choose_threads(3, 1, 2, 2, 2.0).threads == 3
    assert choose_threads(None, 2, 2, 2, 2.0).threads == 2
    assert not choose_threads(None, 2, 2, 2, 2.0).automatic
    unreadable = choose_threads(None, None, 2, 2, None)
    assert unreadable.threads == 2 and not unreadable.automatic


def test_a_resumed_run_keeps_the_count_it_trained_with_unless_the_user_sets_one():
    """--threads N, then OMP_NUM_THREADS / torch.set_num_threads, then the resumed run's own
    count, then the load: the resumed run repeats the uninterrupted one bit for bit."""
    assert choose_threads(None, None, 2, 2, 0.0, resumed=1).threads == 1      # not the free 2
    assert not choose_threads(None, None, 2, 2, 0.0, resumed=1).automatic
    assert choose_threads(None, 2, 2, 2, 0.0, resumed=1).threads == 2
    assert choose_threads(3, 2, 2, 2, 0.0, resumed=1).threads == 3


def test_a_line_is_logged_only_where_auto_chose_other_than_torchs_default():
    line = choose_threads(None, None, 2, 2, 1.9).announcement()
    assert "threads: 1 instead of torch's 2" in line and "1.9 of 2 cores busy" in line
    assert "--threads N" in line
    assert choose_threads(None, None, 2, 2, 0.0).announcement() is None
    assert choose_threads(1, None, 2, 2, 0.0).announcement() is None      # the user's own


def test_the_environment_and_torch_set_num_threads_count_as_the_users_setting(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        torch.set_num_threads(threads.TORCH_DEFAULT)
        assert threads.preset_threads() is None
        monkeypatch.setenv("OMP_NUM_THREADS", str(threads.TORCH_DEFAULT))
        assert threads.preset_threads() == threads.TORCH_DEFAULT
        monkeypatch.delenv("OMP_NUM_THREADS")
        torch.set_num_threads(threads.TORCH_DEFAULT + 1)
        assert threads.preset_threads() == threads.TORCH_DEFAULT + 1
    finally:
        torch.set_num_threads(before)


def test_the_cores_busy_time_is_read_from_proc_stat_per_usable_core(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9 0 0\n"
                    "cpu0 10 1 4 100 5 0 0 0 0 0\n"
                    "cpu1 20 0 0 50 0 2 3 0 0 0\n"
                    "cpu2 99 0 0 1 0 0 0 0 0 0\n"
                    "intr 1 2 3\n")
    times = threads._core_times(stat, (0, 1))
    assert times == {0: (15, 120), 1: (25, 75)}      # busy = all − idle − iowait


@pytest.mark.skipif(not threads.Path("/proc/stat").exists(), reason="Linux only")
def test_busy_cores_lies_between_none_and_allusable_cores():
    busy = threads.busy_cores(seconds=0.05)
    assert busy is not None and 0.0 <= busy <= len(threads.usable_cores())


@pytest.mark.parametrize("argv, expected", [([], None), (["--threads", "auto"], None),
                                            (["--threads", "3"], 3)])
def test_threads_is_an_option_of_every_run(argv, expected):
    assert train.parser().parse_args(argv).threads == expected


def test_a_comparison_shares_the_threads_of_one_run_between_its_jobs(monkeypatch):
    monkeypatch.setattr("experiments.comparison.jobs.decide",
                        lambda requested: choose_threads(requested, None, 4, 4, 0.0))
    assert [threads_per_job(jobs) for jobs in (1, 2, 3, 8)] == [4, 2, 1, 1]
    assert threads_per_job(2, requested=3) == 3              # --threads N: each run's own


@pytest.mark.slow
def test_a_run_logs_its_automatic_choice_records_it_and_gives_torchs_threads_back(
        quick_config, monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "preset_threads", lambda: None)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1.9)
    monkeypatch.setattr(threads, "TORCH_DEFAULT", 2)
    monkeypatch.setattr(threads, "usable_cores", lambda: (0, 1))
    result = run(quick_config(epochs=1, progress=True))
    lines = [line for line in capsys.readouterr().err.splitlines() if "threads" in line]
    assert lines == ["threads: 1 instead of torch's 2, as other processes keep 1.9 of 2 cores "
                     "busy (--threads N to choose)"]
    assert result.summary["threads"] == 1
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_a_resume_under_auto_trains_with_the_count_its_checkpoint_recorded(
        quick_config, monkeypatch, tmp_path):
    """Interrupted under load (auto chose 1), resumed on free cores (auto would choose 2): the
    resumed epochs keep 1, which the checkpoint recorded, so they round as the first did."""
    monkeypatch.setattr(threads, "preset_threads", lambda: None)
    monkeypatch.setattr(threads, "TORCH_DEFAULT", 2)
    monkeypatch.setattr(threads, "usable_cores", lambda: (0, 1))
    monkeypatch.setattr(threads, "busy_cores", lambda: 1.9)
    folder = tmp_path / "run"
    first = run(quick_config(epochs=1, out=str(folder)))
    assert first.summary["threads"] == 1
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["threads"] == 1
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    resumed = run(quick_config(epochs=2, out=str(folder)), resume=folder)
    assert resumed.summary["threads"] == 1
