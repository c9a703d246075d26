"""The data plate shared by every model and guide, so their sites line up and scale alike."""
from typing import Optional

import pyro
import torch


def data_plate(x: Optional[torch.Tensor], index: Optional[torch.Tensor] = None,
               num_data: Optional[int] = None) -> pyro.plate:
    """``pyro.plate("data")`` over the rows of ``x``, a minibatch of a data set of ``num_data``.

    With ``index`` (the minibatch's positions in the data set) and ``num_data`` = N, every
    log-density inside the plate is scaled by N / B, so the minibatch objective is an unbiased
    estimate of the full-data ELBO Σ_{i=1}^N ELBO(x_i). Without them, ``x`` is the whole data set.
    Guides that keep one set of parameters per data point (``local``) read ``index`` from the
    plate they open.

    With ``x`` None (a model asked to draw x, not to score it) the plate holds ``num_data``
    points, or one: ``model(None, num_data=n)`` draws n data points.
    """
    if x is None:
        return pyro.plate("data", size=num_data or 1, dim=-1)
    batch_size = x.shape[0]
    if index is None:
        if num_data is not None and num_data != batch_size:
            raise ValueError("data_plate: pass the minibatch's index when num_data != len(x)")
        return pyro.plate("data", size=batch_size, dim=-1)
    return pyro.plate("data", size=num_data if num_data is not None else batch_size,
                      subsample=index, dim=-1)
