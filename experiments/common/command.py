"""What every command does the same way: figures go to files, and a ``UserError`` ends the
command with one line ``error: <message>`` and exit status 2 instead of a traceback.

Only a command (and the worker processes a command starts) chooses matplotlib's backend;
importing the library leaves it as the user's session has it.
"""
import functools
import sys
from typing import Callable, List, Optional

from experiments.common.distributed import speaks
from experiments.common.errors import UserError

Main = Callable[[Optional[List[str]]], int]


def draw_to_files() -> None:
    """matplotlib's file-only backend: no display is needed or assumed."""
    import matplotlib

    matplotlib.use("Agg")


def command(main: Main) -> Main:
    """``main(argv)`` as a command: figures to files, a ``UserError`` as one ``error:`` line
    on stderr and exit status 2 (in a torchrun job, rank 0's line only, as every rank meets
    the same refusal: ``experiments.common.distributed.speaks``)."""
    @functools.wraps(main)
    def run(argv: Optional[List[str]] = None) -> int:
        draw_to_files()
        try:
            return main(argv)
        except UserError as exc:
            if speaks(exc):
                print(f"error: {exc}", file=sys.stderr)
            return 2

    return run
