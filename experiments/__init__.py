"""Data, training, evaluation and comparisons: everything that runs models and guides.

The top-level modules are the commands (``python -m experiments.train``, ``compare``, ``gaps``,
``list``, ``lessons``; ``__main__`` is the console command ``elbolab`` that runs them); the
library sits in the subpackages, one room each, on floors (tests/test_architecture.py). What
``from experiments import …`` offers is imported on first use, so that importing the package,
which every command does first, takes no time (a command then imports what it needs inside
``experiments.common.command.starting``, where Ctrl-C ends it in one line).
"""
import importlib

#: the version of ELBO Lab, stated here only: setup.cfg reads it (``attr:``), every run records it
#: in its config.json and summary.json, and every command shows it with ``--version``
__version__ = "0.1.0"

#: the names ``from experiments import …`` offers, each with the module it lives in
EXPORTS = {
    "Config": "experiments.config.config",
    "Parts": "experiments.parts.build",
    "TrainedRun": "experiments.training.trained",
    "UserError": "experiments.common.errors",
    "build": "experiments.parts.build",
    "load": "experiments.training.trained",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name in EXPORTS:
        return getattr(importlib.import_module(EXPORTS[name]), name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")
