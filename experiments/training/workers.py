"""Training runs in worker processes, as the comparison and the lessons start them: one entry
point for every worker, in processes of their own (``spawn``: no fork of a process that holds
torch threads), drawing figures to files as the command that started them does.

Interrupts: a worker ignores SIGINT and SIGTERM except while it runs a job, so a Ctrl-C (which
the terminal sends to every process of the command) or the SIGTERM that ``Workers.interrupt``
forwards stops the runs in progress the way it stops ``experiments.train`` (the checkpoint of
the last finished epoch kept, the summary marked interrupted) and never prints a traceback from
a worker that is idle or still starting up. A job stopped so, or never started, ends in
``RunInterrupted``.
"""
import contextlib
import multiprocessing
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Callable, Iterator, List, Optional

import torch

from experiments.common.command import draw_to_files
from experiments.config.config import Config, resolve
from experiments.data.datasets import Dataset
from experiments.parts.build import Parts
from experiments.training.end_to_end import RunInterrupted, RunResult, run

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: how long the runs in progress may take to stop after an interrupt before they are killed
STOP_SECONDS = 120

_stop = None          # in a worker: the pool's stop event, set once the parent is interrupted
_progress = None      # in a worker: the pool's progress queue (or None)


class Workers:
    """``workers`` fresh processes for training runs, with a stop event every job checks
    before it starts and, if asked for, a queue on which jobs report progress
    (``progress_queue`` in the worker)."""

    def __init__(self, workers: int, progress: bool = False):
        context = get_context("spawn")
        self.stop = context.Event()
        self.progress = context.Queue() if progress else None
        self.futures: List[Future] = []
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                        initargs=(self.stop, self.progress))

    def submit(self, fn: Callable, *args) -> Future:
        """``fn(*args)`` in a worker; the processes it starts inherit ignored signals."""
        with _signals_ignored():
            future = self.pool.submit(_job, fn, *args)
        self.futures.append(future)
        return future

    def interrupt(self) -> None:
        """Stop every job: those not started never start, those in progress get a SIGTERM
        and are waited for (``STOP_SECONDS`` at most, then killed). Further interrupts of this
        process are ignored meanwhile."""
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, _ignore) for sig in SIGNALS} if main else {}
        self.stop.set()
        for future in self.futures:
            future.cancel()
        children = multiprocessing.active_children()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()                   # SIGTERM: ignored by an idle worker
        _, running = wait(self.futures, timeout=STOP_SECONDS)
        for child in children if running else ():
            child.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.progress is not None:
            self.progress.close()


def worker_pool(workers: int) -> Workers:
    """``workers`` fresh processes for training runs (``Workers``)."""
    return Workers(workers)


def progress_queue():
    """In a worker: the queue its pool reads progress from (None if it reads none)."""
    return _progress


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored in this process meanwhile, and in the processes it starts
    (an ignored signal stays ignored across exec, and Python then installs no handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield                           # only the main thread may change signal handlers
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_worker(stop, progress) -> None:
    global _stop, _progress
    _stop, _progress = stop, progress
    for sig in SIGNALS:
        signal.signal(sig, _ignore)
    draw_to_files()


def _job(fn: Callable, *args):
    """``fn(*args)`` interruptible by SIGINT or SIGTERM (one of them, once), unless the pool
    was stopped before it began; an interrupt outside a run also ends in ``RunInterrupted``."""
    for sig in SIGNALS:
        signal.signal(sig, _interrupt)
    try:
        if _stop is not None and _stop.is_set():
            raise RunInterrupted("not started")
        return fn(*args)
    except KeyboardInterrupt:
        raise RunInterrupted("interrupted") from None
    finally:
        for sig in SIGNALS:
            signal.signal(sig, _ignore)


def _interrupt(signum, frame):
    for sig in SIGNALS:
        signal.signal(sig, _ignore)
    raise KeyboardInterrupt


def _ignore(signum, frame):
    """A signal ignored in Python rather than by the OS (``SIG_IGN``): one that arrived while
    the handlers changed is then dropped silently, instead of Python's warning of a race."""


def train_in_worker(config: dict, threads: int,
                    on_start: Optional[Callable[[Parts, Dataset], None]] = None,
                    on_epoch: Optional[Callable[[dict], None]] = None,
                    resume: bool = False) -> RunResult:
    """The run of ``config`` (a ``Config.to_dict()``, which pickles across processes) with
    ``threads`` intra-op threads, without progress bars: continued from the checkpoint in its
    folder if ``resume``, else overwriting its folder."""
    torch.set_num_threads(threads)          # the worker's share, also around the run
    settings = resolved(config).replace(threads=threads)
    if resume:
        return run(settings, resume=config["out"], on_start=on_start, on_epoch=on_epoch)
    return run(settings, force=True, on_start=on_start, on_epoch=on_epoch)


def resolved(config: dict) -> Config:
    """The config a worker runs: ``config`` resolved (``experiments.config.config.resolve``),
    without progress bars."""
    return resolve(Config.from_dict(config).replace(progress=False))
