"""What every command does the same way: figures go to files, a ``UserError`` ends the
command with one line ``error: <message>`` and exit status 2 instead of a traceback, and Ctrl-C
ends it with one line ``stopped: …`` and exit status 130, also while it is still importing
(``starting``); ``--version`` says which ELBO Lab it is (``add_version``), and every
command's parser is made one way (``command_parser``).

Only a command (and the worker processes a command starts) chooses matplotlib's backend;
importing the library leaves it as the user's session has it.
"""
import argparse
import contextlib
import functools
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from experiments import __version__
from experiments.common.errors import UserError
from experiments.common.ranks import speaks

Main = Callable[[Optional[List[str]]], int]


class Parser(argparse.ArgumentParser):
    """argparse's parser whose refusals (an unknown flag, a value its type cannot read) are a
    ``UserError``: one ``error:`` line, like every other refusal, not the usage block."""

    def error(self, message: str):
        raise UserError(f"{message} (the options: {self.prog} --help)")


def draw_to_files() -> None:
    """matplotlib's file-only backend: no display is needed or assumed."""
    import matplotlib

    matplotlib.use("Agg")


def program(module: str) -> str:
    """A command's name as its usage line gives it: ``elbolab train`` when the console command
    ``elbolab`` started it (``experiments.__main__``), else ``python -m experiments.train``."""
    if Path(sys.argv[0]).name == "elbolab":
        return f"elbolab {module.rpartition('.')[2]}"
    return f"python -m {module}"


def command_parser(module: str, description: str) -> Parser:
    """The parser of the command ``module``: named as its usage line gives it (``program``),
    its description printed as written, and ``--version``."""
    parser = Parser(prog=program(module), description=description,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    return parser


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: print the version of ELBO Lab (``experiments.__version__``) and exit."""
    parser.add_argument("--version", action="version", version=f"ELBO Lab {__version__}")


def command(main: Main) -> Main:
    """``main(argv)`` as a command: figures to files, a ``UserError`` as one ``error:`` line
    on stderr and exit status 2 (in a torchrun job, rank 0's line only, as every rank meets
    the same refusal: ``experiments.common.ranks.speaks``)."""
    @functools.wraps(main)
    def run(argv: Optional[List[str]] = None) -> int:
        draw_to_files()
        _work_begins()
        try:
            return main(argv)
        except UserError as exc:
            if speaks(exc):
                print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:           # before the command's own handling began
            print("stopped: interrupted", file=sys.stderr)
            return 130

    return run


#: SIGINT's handler before ``starting`` took it, given back when the command's work begins
_BEFORE_STARTING: List[object] = []


@contextlib.contextmanager
def starting(name: str) -> Iterator[None]:
    """``with starting(__name__):`` around a command's imports (seconds: torch, Pyro): run as
    the program (``name`` is ``"__main__"``), Ctrl-C from then until its ``main`` begins
    (``command``) ends it with one line and exit status 130 instead of a traceback from deep
    inside an import or from the module's last lines. Nothing has been written then, so the
    process just ends (``os._exit``: a half-imported module needs no cleanup)."""
    if name == "__main__" and not _BEFORE_STARTING:
        _BEFORE_STARTING.append(signal.signal(signal.SIGINT, _stop_starting))
    yield


def _work_begins() -> None:
    """SIGINT's handler as it was before ``starting`` (Python's KeyboardInterrupt, or ignored
    in a background job), for the command's own handling."""
    if _BEFORE_STARTING:
        signal.signal(signal.SIGINT, _BEFORE_STARTING.pop())


def _stop_starting(signum, frame) -> None:
    sys.stderr.write("stopped: interrupted while starting, before any work\n")
    sys.stderr.flush()
    os._exit(130)
