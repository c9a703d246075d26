"""Which process this is among the ranks of a torchrun job, read from the environment alone.

``torchrun`` tells every process it starts its ``RANK``, the ``WORLD_SIZE`` and where the ranks
meet (``MASTER_ADDR``, ``MASTER_PORT``). Commands read this before they import torch (a refusal
is printed by rank 0 alone, ``experiments.common.command``); the process group itself is
``experiments.common.distributed``.
"""
import os

#: what torchrun tells every process, and ``init_process_group`` reads (its ``env://``)
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """Whether torchrun (or a launcher that sets the same variables) started this process."""
    return all(name in os.environ for name in LAUNCH_VARIABLES)


def leader() -> bool:
    """Whether this process writes and prints: rank 0 of a torchrun job (also before it joins
    the others and after it leaves), or a process alone."""
    return not launched() or os.environ["RANK"] == "0"


def speaks(error: Exception) -> bool:
    """Whether this process prints ``error``: every rank meets the same refusal, and rank 0
    says it once; an error marked ``loud`` (``distributed.RankFailure``) is said by the rank
    that raises it."""
    return leader() or getattr(error, "loud", False)
