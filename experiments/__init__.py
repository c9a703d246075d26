"""Data, training, evaluation and comparisons: everything that runs models and guides."""
from experiments.build import Parts, build
from experiments.config import Config
from experiments.errors import UserError

__all__ = ["Config", "Parts", "UserError", "build"]
