"""The order of the training set in an epoch: which points each step takes (``minibatches``,
``steps_per_epoch``) and the random stream each step draws from (``seed_rank``), the same code in
one process and in a torchrun job (``experiments.training.distributed``), where rank r takes
the r-th share of every global minibatch.

The order comes from the run's seed and the epoch alone, the same on every rank, so a resumed
run takes the minibatches an uninterrupted one takes without any state in the checkpoint.
"""
import math
from typing import List

import numpy as np
import torch

from experiments.common.distributed import joined_group, world


def minibatches(n: int, batch_size: int, seed: int, epoch: int,
                device: torch.device) -> List[torch.Tensor]:
    """This rank's minibatches of one epoch, as indices into the training set.

    The epoch's order is a permutation fixed by (seed, epoch), the same on every rank. In one
    process it is cut into minibatches of ``batch_size``. With N ranks it is cut into global
    minibatches of N × ``batch_size`` points, rank r taking the r-th of N contiguous shares
    of each (equal, or one point apart in the last); a last global minibatch of fewer points
    than ranks joins the one before, so no rank ever takes an empty share.
    """
    order_rng = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=order_rng).to(device)
    here = world()
    if here.size == 1:
        return list(order.split(batch_size))
    steps = list(order.split(here.size * batch_size))
    if len(steps) > 1 and len(steps[-1]) < here.size:
        steps[-2:] = [torch.cat(steps[-2:])]
    return [step.tensor_split(here.size)[here.rank] for step in steps]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """How many minibatches ``minibatches`` gives each rank."""
    size = world().size
    if size == 1:
        return math.ceil(n / batch_size)
    steps = math.ceil(n / (size * batch_size))
    return steps - 1 if steps > 1 and n - (steps - 1) * size * batch_size < size else steps


def seed_rank(seed: int, epoch: int) -> None:
    """In a torchrun job, seed this rank's stream for ``epoch`` from (seed, epoch, rank)."""
    if joined_group():
        state = np.random.SeedSequence([seed, epoch, world().rank]).generate_state(1)[0]
        torch.manual_seed(int(state))
