"""Whether a run's parts are absurdly large for its data, said before training starts.

A model and guide with P parameters store about 3P numbers in a checkpoint (the parameters and
Adam's two moment estimates). Where P exceeds ``RATIO`` times the N·D numbers of the training
data (and ``FLOOR``: small models are cheap whatever the data), the parts can memorize the data
many times over and cost far more than it: almost surely a typo in --latent-dim or
--hidden-dims (``--latent-dim 100000`` on 8×8 digits: 1.2·10⁸ parameters, a 1.4 GB checkpoint).
"""
from typing import Optional

import torch

#: parameters per number of training data above which a run is warned about
RATIO = 100
#: parameters below which no run is warned about
FLOOR = 1_000_000


def oversized(model: torch.nn.Module, guide: torch.nn.Module, x_train: torch.Tensor
              ) -> Optional[str]:
    """The warning for parts far larger than the training data ``x_train`` (N, D); None if
    they are not."""
    params = [p for part in (model, guide) for p in part.parameters()]
    count = sum(p.numel() for p in params)
    numbers = x_train.numel()
    if count <= max(FLOOR, RATIO * numbers):
        return None
    size = 3 * sum(p.numel() * p.element_size() for p in params)
    return (f"the model and guide have {count:,} parameters, {count / numbers:,.0f} times the "
            f"{numbers:,} numbers of the training data (a checkpoint of about {size / 1e9:.2g} GB "
            "with Adam's moments): check --latent-dim and --hidden-dims")

