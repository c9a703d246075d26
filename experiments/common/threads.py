"""How many intra-op threads a run uses: torch's default where the cores are free, fewer where
other processes keep them busy.

PyTorch's CPU kernels split their work over ``torch.get_num_threads()`` threads (by default one
per core) that meet at a barrier after every operation; a training step is a few hundred short
operations. When other processes keep the cores busy, the thread the barrier waits for is often
not running, and its partner spins: on 2 cores with two CPU-bound processes beside it, a run with
2 threads took 8–15 times as long per epoch as with 1 (docs/guide/performance.md). So ``--threads
auto`` (the default) measures how busy the cores are for a moment at the start of a run and uses
one thread per core left free, never more than torch's default:

    threads = min(default, max(1, ⌊cores − busy + SLACK⌋))

``busy`` the cores' worth of time other processes used over ``SAMPLE_SECONDS``, read from
``/proc/stat`` for the cores this process may run on. A run keeps its count to the end (the
count changes the rounding of sums, so a run's numbers then depend on no later load), and its
summary.json records it: ``--threads N`` repeats a run bit for bit. An explicit setting wins:
``--threads N``, else ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, else a ``torch.set_num_threads``
made before the run.
"""
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import torch

#: how long the cores are watched at the start of a run
SAMPLE_SECONDS = 0.15
#: a core counts as free while other processes use less than (1 − SLACK) of it
SLACK = 0.25
#: what torch chose before anything changed it: one thread per core, or OMP_NUM_THREADS
TORCH_DEFAULT = torch.get_num_threads()
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Choice:
    """The threads a run uses, and why (one clause, for the log line)."""

    threads: int
    reason: str
    default: int                     # torch's own count
    automatic: bool = False          # chosen by ``auto`` from the load, not set by the user

    def announcement(self) -> Optional[str]:
        """The line a run logs where ``auto`` chose other than torch's default."""
        if not self.automatic or self.threads == self.default:
            return None
        return (f"threads: {self.threads} instead of torch's {self.default}, as {self.reason} "
                "(--threads N to choose)")


def choose_threads(requested: Optional[int], preset: Optional[int], default: int, cores: int,
                   busy: Optional[float], resumed: Optional[int] = None) -> Choice:
    """The thread count of a run.

    :param requested: ``--threads N`` (None: ``auto``).
    :param preset: the count the user set outside the run (``OMP_NUM_THREADS``,
        ``torch.set_num_threads``), or None.
    :param resumed: the count a resumed run trained with (its checkpoint's), kept under
        ``auto`` so that the resumed run repeats the uninterrupted one bit for bit.
    :param default: torch's own count (one thread per physical core, or OMP_NUM_THREADS).
    :param cores: the cores this process may run on.
    :param busy: cores' worth of time other processes use now (None: not measurable here).
    """
    if requested is not None:
        return Choice(requested, f"--threads {requested}", default)
    if preset is not None:
        return Choice(preset, "set before the run (OMP_NUM_THREADS or torch.set_num_threads)",
                      default)
    if resumed is not None:
        return Choice(resumed, "the count the resumed run trained with", default)
    if busy is None:
        return Choice(default, "torch's default (the cores' load cannot be read here)", default)
    free = int(cores - busy + SLACK)
    threads = min(default, max(1, free))
    return Choice(threads, f"other processes keep {busy:.1f} of {cores} cores busy",
                  default, automatic=True)


def preset_threads() -> Optional[int]:
    """The count the user set before the run: an environment variable torch reads, or a
    ``torch.set_num_threads`` that changed torch's default; None if neither."""
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return torch.get_num_threads()
    current = torch.get_num_threads()
    return current if current != TORCH_DEFAULT else None


def busy_cores(seconds: float = SAMPLE_SECONDS, stat: Path = Path("/proc/stat")) -> Optional[float]:
    """Cores' worth of time used by processes other than this one over the next ``seconds``,
    on the cores this process may run on (None where ``/proc/stat`` cannot be read)."""
    cores = usable_cores()
    try:
        before, own, start = _core_times(stat, cores), time.process_time(), time.monotonic()
        time.sleep(seconds)
        after, own = _core_times(stat, cores), time.process_time() - own
    except (OSError, ValueError):
        return None
    busy = sum(after[c][0] - before[c][0] for c in after)
    total = sum(after[c][1] - before[c][1] for c in after)
    if total <= 0:
        return None
    others = busy / total * len(after) - own / (time.monotonic() - start)
    return min(float(len(after)), max(0.0, others))


def usable_cores() -> Tuple[int, ...]:
    """The cores this process may run on (its affinity: ``taskset``, a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def _core_times(stat: Path, cores: Tuple[int, ...]) -> Dict[int, Tuple[int, int]]:
    """(busy, total) clock ticks of each of ``cores`` since boot, from ``/proc/stat``'s
    ``cpuN user nice system idle iowait irq softirq steal …`` lines."""
    wanted, times = {f"cpu{c}" for c in cores}, {}
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name in wanted:
            ticks = [int(f) for f in fields[:8]]
            idle = ticks[3] + ticks[4]                  # idle + iowait
            times[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    if not times:
        raise ValueError("no cpu lines")
    return times


def decide(requested: Optional[int], resumed: Optional[int] = None) -> Choice:
    """The threads of a run starting now (``choose_threads`` with what this machine says);
    the cores are watched only when the choice depends on them."""
    preset = preset_threads()
    busy = busy_cores() if requested is None and preset is None and resumed is None else None
    return choose_threads(requested, preset, TORCH_DEFAULT, len(usable_cores()), busy, resumed)


@contextlib.contextmanager
def threads_of_run(requested: Optional[int], resumed: Optional[int] = None) -> Iterator[Choice]:
    """torch's threads set to the run's choice (``decide``) meanwhile, then as they were."""
    before = torch.get_num_threads()
    choice = decide(requested, resumed)
    torch.set_num_threads(choice.threads)
    try:
        yield choice
    finally:
        torch.set_num_threads(before)
