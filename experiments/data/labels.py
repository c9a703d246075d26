"""Labels kept and labels withheld (``--labels N``): the semi-supervised setting of Kingma et
al. (2014), where N training points keep their class and the rest are unlabeled."""
from typing import List

import torch

from experiments.common.errors import UserError
from models.ssvae import UNLABELED


def balanced_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The indices (ascending) of n rows of the labels ``y`` (N,), as even across classes as
    the classes allow, fixed by ``seed``.

    Each class's rows are shuffled, then dealt round-robin (the classes in a shuffled order):
    the k-th point of every class is taken before the (k+1)-th of any, so class counts differ
    by at most one, except that a class with too few points gives all it has. The draw uses a
    generator of its own and leaves torch's global random stream alone.
    """
    if not 0 <= n <= len(y):
        raise UserError(f"--labels {n} is more than the {len(y)} training examples; choose at "
                        f"most {len(y)}, or leave it out to keep every label")
    generator = torch.Generator().manual_seed(seed)
    y = y.cpu()
    classes = torch.unique(y)
    classes = classes[torch.randperm(len(classes), generator=generator)]
    rows, keys = [], []
    for position, c in enumerate(classes):
        members = torch.nonzero(y == c).squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        rows.append(members)
        keys.append(torch.arange(len(members)) * len(classes) + position)   # deal order
    order = torch.cat(keys).argsort()
    return torch.cat(rows)[order[:n]].sort().values


def stratified_minibatches(y: torch.Tensor, batch_size: int, labeled_batch: int,
                           generator: torch.Generator) -> List[torch.Tensor]:
    """One epoch of minibatches, as indices into the labels ``y`` (N,), −1 where unlabeled:
    the unlabeled rows in a random order, cut into minibatches of ``batch_size``, each joined
    by ``labeled_batch`` labeled rows, or more where that many steps would leave labeled points
    unseen (⌈N_l / steps⌉), drawn in random orders that follow one another: every labeled point
    is seen equally often, at least once an epoch. The loss
    of such a minibatch scales each group by its own share (``models.ssvae.label_plates`` with
    ``num_labeled``). ``y`` holds both labeled and unlabeled rows."""
    known = torch.nonzero(y >= 0).squeeze(1)
    unknown = torch.nonzero(y < 0).squeeze(1)
    unlabeled = unknown[torch.randperm(len(unknown), generator=generator)].split(batch_size)
    labeled_batch = max(labeled_batch, -(-len(known) // len(unlabeled)))
    rounds = -(-len(unlabeled) * labeled_batch // len(known))            # ceil
    labeled = torch.cat([known[torch.randperm(len(known), generator=generator)]
                         for _ in range(rounds)]).split(labeled_batch)
    return [torch.cat([rows, extra]) for rows, extra in zip(unlabeled, labeled)]


def withhold_labels(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``y`` with every label but those of ``balanced_subset(y, n, seed)`` replaced by
    ``UNLABELED`` (−1), the value the models that take labels read as unknown."""
    kept = balanced_subset(y, n, seed).to(y.device)
    partial = torch.full_like(y, UNLABELED)
    partial[kept] = y[kept]
    return partial
