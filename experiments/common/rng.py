"""Random numbers drawn apart from the run's own stream, so that drawing them changes nothing
that training draws next."""
import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Draw from a fresh stream seeded with ``seed``, restoring the caller's stream after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
