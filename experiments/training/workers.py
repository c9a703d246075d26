"""Training runs in worker processes, as the comparison and the lessons start them: one entry
point for every worker, in processes of their own (``spawn``: no fork of a process that holds
torch threads), drawing figures to files as the command that started them does."""
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Callable, Optional

import torch

from experiments.common.command import draw_to_files
from experiments.data.datasets import Dataset
from experiments.parts.build import Parts
from experiments.training.config import Config, resolve
from experiments.training.run import RunResult, run


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` fresh processes for training runs."""
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                               initializer=draw_to_files)


def train_in_worker(config: dict, threads: int,
                    on_start: Optional[Callable[[Parts, Dataset], None]] = None,
                    on_epoch: Optional[Callable[[dict], None]] = None) -> RunResult:
    """The run of ``config`` (a ``Config.to_dict()``, which pickles across processes) with
    ``threads`` intra-op threads, without progress bars, overwriting its folder."""
    torch.set_num_threads(threads)
    return run(resolved(config), force=True, on_start=on_start, on_epoch=on_epoch)


def resolved(config: dict) -> Config:
    """The config a worker runs: ``config`` resolved (``experiments.training.config.resolve``),
    without progress bars."""
    return resolve(Config.from_dict(config).replace(progress=False))
