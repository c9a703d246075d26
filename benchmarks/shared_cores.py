"""Target 7: training on cores that other processes keep busy (a laptop with a browser, a shared
server, ``compare --jobs``).

One CPU-bound process per usable core (``python -c 'while True: pass'``) runs beside the
benchmark while the default run (the recorded step, ``vae``/``normal``/``trace``) trains with
each thread count from 1 to torch's default, the counts taking turns of a few steps in random
order. ``--threads auto``, a run's default (``experiments.common.threads``), watches the cores
for a moment at the start and chooses a count; its row is the count it chose under this load,
compared round by round with the best count, and "alone" says what it chose before the busy
processes started (on a quiet machine: torch's default, today's speed).
"""
import contextlib
import subprocess
import sys
import time
from typing import Iterator, List

import torch

from benchmarks.report import Section, Target, paragraphs, table
from benchmarks.timing import alternate, format_ratio
from benchmarks.training import lab_trainer
from experiments.common import threads
from experiments.config.config import Config
from experiments.data.datasets import Dataset
from experiments.training.optim import adam

GOAL = 1.5                  # the default's time over the best count's, under load
STEPS_PER_TURN = 4
BUSY = "while True: pass"


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[List[subprocess.Popen]]:
    """``count`` CPU-bound Python processes meanwhile (given a moment to start)."""
    started = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    try:
        time.sleep(0.5)
        yield started
    finally:
        for process in started:
            process.kill()
            process.wait()


def automatic_choice() -> threads.Choice:
    """What ``--threads auto`` chooses now, whatever the user set for this process."""
    return threads.choose_threads(None, None, threads.TORCH_DEFAULT,
                                  len(threads.usable_cores()), threads.busy_cores())


def benchmark(config: Config, data: Dataset, rounds: int) -> Section:
    cores = len(threads.usable_cores())
    alone = automatic_choice()
    counts = range(1, threads.TORCH_DEFAULT + 1)
    names = {count: f"{count} thread{'s' if count > 1 else ''}" for count in counts}
    before = torch.get_num_threads()
    with busy_processes(cores):
        loaded = automatic_choice()
        trainers = {count: lab_trainer(config, data, adam(config.lr))[0] for count in counts}

        def turn(count: int) -> None:
            torch.set_num_threads(count)
            trainers[count](STEPS_PER_TURN)

        try:
            timings = alternate({names[c]: (lambda c=c: turn(c)) for c in counts}, rounds,
                                seed=config.seed + 2)
        finally:
            torch.set_num_threads(before)
    steps_per_epoch = -(-len(data.x_train) // config.batch_size)
    best = min(names.values(), key=timings.median)
    chosen = names[loaded.threads]
    ratio = timings.ratio(chosen, best)
    rows = [(name, f"{timings.median(name) / STEPS_PER_TURN * steps_per_epoch:.3f}",
             format_ratio(timings.ratio(name, best)),
             "← auto" if name == chosen else "")
            for name in names.values()]
    body = "\n\n".join([
        paragraphs(__doc__),
        f"{cores} usable cores, {cores} busy processes beside the run; torch's default: "
        f"{threads.TORCH_DEFAULT} threads. Alone, auto chose {alone.threads} ({alone.reason}); "
        f"with the busy processes, {loaded.threads} ({loaded.reason}). Batch size "
        f"{config.batch_size}, {rounds} timed turns of {STEPS_PER_TURN} steps per count:",
        table(["threads", "s / epoch", "× best", ""], rows)])
    return Section("7. Shared cores: threads under load", body, [
        Target(f"7. default run (auto: {loaded.threads} thread(s)) beside {cores} busy "
               f"processes, against the best count ({best})", format_ratio(ratio),
               f"≤ {GOAL:.1f}×", ratio[0] <= GOAL),
        Target(f"7. torch's default ({threads.TORCH_DEFAULT} threads) beside {cores} busy "
               "processes, against the best count (before --threads auto)",
               format_ratio(timings.ratio(names[threads.TORCH_DEFAULT], best)), "—", None)])
