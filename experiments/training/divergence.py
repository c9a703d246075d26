"""When training has diverged, and what to say then.

Each step's loss estimates −ELBO of the whole training set, so −loss / N is the bound in nats
per point (``experiments.training.loop.train_epoch``). Training has diverged where

- the loss is NaN or infinite, or
- the bound has fallen more than ``FALL`` times its own size below where the run started:
  ELBO_t < ELBO_1 − FALL · max(1, |ELBO_1|), with ELBO_1 the first step's (the bound at the
  initial parameters, before any update).

A step with a sane learning rate improves the bound on average and a minibatch estimate wanders
around it by a few times its own size at most; a fall by a thousand times the starting value
is the optimizer overshooting (a learning rate far too large), the bound then running off to
−10¹⁶ while every number stays finite.
"""
import math
from inspect import signature
from typing import Optional

from experiments.common.errors import UserError
from experiments.config.config import Config
from models import MODELS

#: how many times the size of the starting bound (at least 1 nat) it may fall before training
#: counts as diverged
FALL = 1000.0


class TrainingDiverged(UserError):
    """The loss became NaN or infinite, or the bound fell far below its start
    (``DivergenceWatch``); the run says what it kept (``experiments.training.end_to_end``)."""


class DivergenceWatch:
    """Watches the losses of one training from its first step on.

    :param num_data: N, the size of the training set the losses are scaled to.
    """

    def __init__(self, num_data: int):
        self.num_data = num_data
        self.start: Optional[float] = None      # ELBO_1, nats per point

    def check(self, loss: float, epoch: int, step: int) -> None:
        """Raise ``TrainingDiverged`` naming ``epoch`` and ``step`` if ``loss`` shows it."""
        where = f"training diverged at epoch {epoch}, step {step}"
        if not math.isfinite(loss):
            raise TrainingDiverged(f"{where}: the loss is {loss}")
        elbo = -loss / self.num_data
        if self.start is None:
            self.start = elbo
        elif elbo < self.start - FALL * max(1.0, abs(self.start)):
            raise TrainingDiverged(f"{where}: the train ELBO fell to {elbo:.3g} nats per point "
                                   f"from {self.start:.3g} at the first step")


def advice(config: Config) -> str:
    """What may help a run of ``config`` that diverged, leaving out what it already does (the
    default --lr is its model's)."""
    default = MODELS[config.model].defaults["lr"]
    tips = [f"a --lr below {config.lr:g}"
            + (f" (the default is {default:g})" if config.lr > default else "")]
    tips.append("a larger --batch-size")
    takes_likelihood = "likelihood" in signature(MODELS[config.model]).parameters
    if config.likelihood == "gaussian" and takes_likelihood:
        tips.append("--likelihood bernoulli for [0, 1] data")
    return "try " + ", ".join(tips[:-1]) + " or " + tips[-1]
