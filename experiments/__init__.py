"""Data, training, evaluation and comparisons: everything that runs models and guides.

The top-level modules are the commands (``python -m experiments.train``, ``compare``, ``gaps``,
``list``, ``lessons``); the library sits in the subpackages, one room each."""
from experiments.common.errors import UserError
from experiments.parts.build import Parts, build
from experiments.training.config import Config
from experiments.training.trained import TrainedRun, load

__all__ = ["Config", "Parts", "TrainedRun", "UserError", "build", "load"]
