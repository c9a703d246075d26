"""Processes that work as one: PyTorch's process group, as ``torchrun`` starts it.

``torchrun`` starts N copies of a command (its ranks) and tells each, in its environment, its
``RANK``, the ``WORLD_SIZE``, its ``LOCAL_RANK`` on its machine, and where to meet
(``MASTER_ADDR``, ``MASTER_PORT``). ``joined`` makes this process one of them; without
torchrun nothing changes: ``world()`` is rank 0 of 1 and every helper here does what one
process does. What the library does across ranks goes through this module:

- ``leader`` (``experiments.common.ranks``): rank 0 alone writes the run folder and prints;
- ``shared_work`` and ``split_chunks``: inside ``shared_work``, a computation made of numbered
  chunks is split among the ranks (chunk c on rank c mod N) and the results are gathered, in
  chunk order, on every rank: each rank ends with the list one process computes;
- ``from_leader``: a value (or a refusal) that rank 0 alone computes, for every rank;
- ``RankFailure``: the one line of a job that lost a rank, naming the rank where it can (the
  ranks tell each other their host and process id when they join).
"""
import contextlib
import contextvars
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, List, Optional, Tuple, TypeVar

import torch
import torch.distributed as dist

from experiments.common.errors import UserError
from experiments.common.processes import alive
from experiments.common.ranks import launched, leader

T = TypeVar("T")

_SHARED = contextvars.ContextVar("shared_work", default=False)
_PEERS: List[Tuple[str, int]] = []          # (host, process id) of every rank, by rank
_STOP = threading.Event()


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a job: rank ``rank`` of ``size``."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"


class RankFailure(UserError):
    """A rank died, stopped answering, or disagrees with the others. Printed by rank 0, and by
    the other ranks when ``loud`` (rank 0 is the one lost, or only this rank knows)."""

    def __init__(self, message: str, loud: bool = False):
        super().__init__(message)
        self.loud = loud


def joined_group() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> World:
    """Which rank this process is, of how many: rank 0 of 1 outside a process group."""
    if not joined_group():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def joined(backend: str, timeout: float) -> Iterator[World]:
    """Inside: this process one rank of the torchrun job that started it, in a process group
    of ``backend`` (``gloo``; ``nccl``: one GPU per process, that of its local rank) whose
    collectives give up after ``timeout`` seconds. Outside torchrun, or when the caller has
    joined already, nothing is done. A collective that fails because a rank was lost ends in
    a ``RankFailure`` naming the rank where it can."""
    if not launched() or joined_group():
        yield world()
        return
    if backend == "nccl":
        _take_gpu(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    _STOP.clear()
    try:
        _PEERS[:] = gather((socket.gethostname(), os.getpid()))
        yield world()
        dist.barrier()      # leave together: no rank's last collective meets a closed socket
    except RuntimeError as exc:
        if not is_collective_failure(exc):
            raise
        raise lost_contact(exc) from None
    finally:
        _PEERS.clear()
        dist.destroy_process_group()


def _take_gpu(local_rank: int) -> None:
    if local_rank >= torch.cuda.device_count():
        raise RankFailure(f"rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')}: "
                          f"--device cuda takes GPU {local_rank} (its local rank), but PyTorch "
                          f"sees {torch.cuda.device_count()} GPU(s) on this machine; start at "
                          "most that many processes per machine", loud=True)
    torch.cuda.set_device(local_rank)


def lost_contact(exc: BaseException, then: str = "") -> RankFailure:
    """The failure of a job that lost a rank: the ranks known to be gone (or, when none is
    known, why the collective ``exc`` failed), what this rank did, and ``then`` what to do.
    Rank 0 says it, or the lowest rank left when rank 0 is the one gone."""
    here, lost = world(), lost_ranks()
    for _ in range(20):     # a killed process closes its sockets before it is seen to be gone
        if lost:
            break
        time.sleep(0.05)
        lost = lost_ranks()
    who = ", ".join(f"rank {r} of {here.size} (process {pid})" for r, pid in lost)
    gone = dict(lost)
    survivors = [r for r in range(here.size) if r not in gone]
    what = (f"{who} died" if who else
            f"another rank stopped answering ({_first_line(exc)})")
    return RankFailure(f"{what}; {here} stopped" + (f" {then}" if then else ""),
                       loud=0 in gone and here.rank == min(survivors))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def gather(value: T) -> List[T]:
    """``value`` of every rank, by rank (picklable values; tensors travel on the CPU)."""
    if not joined_group():
        return [value]
    everyone: List[Optional[T]] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, value)
    return everyone


def from_leader(compute: Callable[[], T]) -> T:
    """``compute()`` run by rank 0 alone, its value (or its ``UserError``, raised again) handed
    to every rank: a run folder chosen once, a refusal every rank stops at."""
    if not joined_group():
        return compute()
    message = [None]
    if leader():
        try:
            message = [("value", compute())]
        except UserError as exc:
            message = [("error", str(exc))]
    dist.broadcast_object_list(message, src=0)
    kind, payload = message[0]
    if kind == "error":
        raise UserError(payload)
    return payload


def leader_first(compute: Callable[[], T]) -> T:
    """``compute()`` on every rank, rank 0 first: what may download or write a cache (a data
    set) is done once before the other ranks read it; a ``UserError`` of rank 0 stops all."""
    if not joined_group():
        return compute()
    refusal = [None]
    if leader():
        try:
            value = compute()
        except UserError as exc:
            refusal = [str(exc)]
            dist.broadcast_object_list(refusal, src=0)
            raise
    dist.broadcast_object_list(refusal, src=0)
    if leader():
        return value
    if refusal[0] is not None:
        raise UserError(refusal[0])
    return compute()


@contextlib.contextmanager
def shared_work() -> Iterator[None]:
    """Inside, ``split_chunks`` divides its chunks among the ranks; every rank must enter and
    make the same calls. Outside, every rank computes every chunk, so a call that only rank 0
    makes (a figure) never waits for the others."""
    token = _SHARED.set(True)
    try:
        yield
    finally:
        _SHARED.reset(token)


def split_chunks(compute: Callable[[int], T], count: int,
                 device: Optional[torch.device] = None) -> List[T]:
    """``[compute(c) for c in range(count)]``. Inside ``shared_work`` with several ranks, rank
    r computes the chunks c ≡ r (mod N) and the results are gathered on every rank in chunk
    order, tensors returned on ``device``; the values equal one process's as long as
    ``compute(c)`` depends on c alone (its random stream seeded by c, not by the rank)."""
    here = world()
    if not _SHARED.get() or here.size == 1:
        return [compute(c) for c in range(count)]
    mine = {c: _to(compute(c), torch.device("cpu")) for c in range(here.rank, count, here.size)}
    merged = {c: value for part in gather(mine) for c, value in part.items()}
    return [_to(merged[c], device) for c in range(count)]


def _to(value, device: Optional[torch.device]):
    return value.to(device) if torch.is_tensor(value) and device is not None else value


def lost_ranks() -> List[Tuple[int, int]]:
    """(rank, process id) of the ranks of this job on this machine whose process is gone; a
    rank on another machine cannot be checked from here."""
    here = world().rank if joined_group() else int(os.environ.get("RANK", 0))
    host = socket.gethostname()
    return [(r, pid) for r, (h, pid) in enumerate(_PEERS)
            if r != here and h == host and not alive(pid)]


def request_stop() -> None:
    """Ask this rank to stop (a signal handler's call): the ranks agree on it at their next
    step (``stop_requested`` travels with the step's loss), so all stop after the same step
    instead of one leaving the others waiting in a collective."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def forget_stop() -> None:
    """The ranks have stopped as asked: a later run in this process starts afresh."""
    _STOP.clear()


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed: a peer that died (its sockets closed) or
    stopped answering (the process group's timeout)."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed",
                                  "timed out", "Timed out"))
