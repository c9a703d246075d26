"""The console command ``elbolab`` (``python -m experiments`` is the same): one entry to the
commands, each with its own options (``elbolab train --help``).

    elbolab train --model vae --guide normal --elbo trace --data digits
    elbolab compare|gaps|list|lessons …

``elbolab X …`` runs ``python -m experiments.X …``: the same options, output and exit statuses
(0 done, 1 where a command reports unfinished work, 2 for a refused option, 130 after Ctrl-C).
"""
import argparse
import ast
import importlib
import importlib.util
import sys
from typing import List, Optional

from experiments.common.command import add_version, starting

#: the subcommands, each the module that runs it
COMMANDS = {**{name: f"experiments.{name}" for name in ("train", "compare", "gaps", "list", "ais")},
            "lessons": "experiments.lessons.__main__"}


def summary(module: str) -> str:
    """The first line of ``module``'s docstring, read from its source without importing it
    (the commands import torch and Pyro: ``elbolab --help`` stays instant)."""
    source = importlib.util.find_spec(module).loader.get_source(module)
    return ast.get_docstring(ast.parse(source)).split("\n")[0].rstrip(".:").replace("``", "")


def parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<9} {summary(module)}" for name, module in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="elbolab", usage="elbolab [-h] [--version] COMMAND [OPTION ...]",
        description="ELBO Lab: latent variable models, guides and ELBO estimators in Pyro,\n"
                    "trained, evaluated and compared from the command line.",
        epilog=f"commands:\n{listing}\n\nelbolab COMMAND --help lists the options of COMMAND.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(p)
    p.add_argument("command", choices=COMMANDS, metavar="COMMAND",
                   help="the command to run, with its own options (below)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``elbolab COMMAND OPTIONS…``: the command's ``main`` with the options after it."""
    argv = sys.argv[1:] if argv is None else argv
    name = parser().parse_args(argv[:1]).command      # --help, --version: here, then exit
    with starting("__main__"):          # Ctrl-C while importing: one line, exit 130
        command = importlib.import_module(COMMANDS[name])
    return command.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
