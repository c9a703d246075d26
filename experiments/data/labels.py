"""Labels kept and labels withheld (``--labels N``): the semi-supervised setting of Kingma et
al. (2014), where N training points keep their class and the rest are unlabeled."""
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


def withhold_labels(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``y`` with every label but those of ``balanced_subset(y, n, seed)`` replaced by
    ``UNLABELED`` (−1), the value the models that take labels read as unknown."""
    kept = balanced_subset(y, n, seed).to(y.device)
    partial = torch.full_like(y, UNLABELED)
    partial[kept] = y[kept]
    return partial
