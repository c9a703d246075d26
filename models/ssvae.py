"""The semi-supervised VAE (M2, Kingma et al. 2014): a class y beside a continuous z.

y is observed where a label is known and latent elsewhere (Kingma, Rezende, Mohamed & Welling
2014, "Semi-supervised learning with deep generative models").
"""
import contextlib
from typing import Iterator, List, Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.nn.functional import one_hot

from models.base import LatentSite, LatentVariableModel
from models.likelihoods import LIKELIHOODS
from models.networks import mlp

#: the labels of a minibatch mark an unlabeled point with this value
UNLABELED = -1


class SSVAE(LatentVariableModel):
    """M2, the generative half:

        y ~ p(y) = Cat(1/C, …, 1/C)                           (the class, one per data point)
        z ~ p(z) = N(0, I_d)                                  (the style, independent of y)
        x ~ p_θ(x | y, z) = likelihood(decoder_θ([z, onehot(y)]))

    ``forward(x, index, num_data, y)`` takes the minibatch's labels ``y`` (long, ``UNLABELED`` =
    −1 where unknown; None: no label known); with x None it draws ``num_data`` unlabeled points
    (default one), y, z and x. Labeled rows observe y, in the plate
    ``"labeled"`` with sites ``z_labeled`` and ``x_labeled``; unlabeled rows leave y latent, in
    the plate ``"data"`` with sites ``y``, ``z`` and ``x`` (the model's ``latent_sites``, which
    the test bounds integrate: log p(x) = log Σ_y ∫ p(y) p(z) p(x|y, z) dz). The guide sums y out
    by enumeration or samples it. Both plates carry the data plate's scale N/B (see
    ``label_plates``), so one loss estimates Σ_labeled log p(x_i, y_i) bounds + Σ_unlabeled
    log p(x_i) bounds over the whole data set. A minibatch whose labeled rows were drawn apart
    from its unlabeled ones (``num_labeled`` given) scales each group by its own share.

    :param data_dim: D, the size of one flattened observation.
    :param latent_dim: d, the size of z.
    :param hidden_dims: widths of the decoder's hidden layers (the guide's networks mirror them).
    :param num_classes: C, the number of values of y (given by the data's labels).
    :param likelihood: a key of ``models.likelihoods.LIKELIHOODS``.
    """

    takes_labels = True
    #: y summed out on unlabeled rows, q(y|x) also trained on the labels with Pyro's α = 46
    #: grown with the pixels (46 · 784/64), 16 labeled rows in every minibatch, one hidden
    #: layer of 512 units: with them M2 beats its classifier alone at 8×8 and 28×28, where
    #: lesson 7's settings lost by 0.25 at 28×28 and width 128 tied (docs/results/m2.md)
    defaults = {**LatentVariableModel.defaults, "guide": "m2-enum", "elbo": "enum",
                "aux_weight": 563.5, "likelihood": "continuous-bernoulli", "latent_dim": 8,
                "hidden_dims": (512,), "batch_size": 64, "lr": 2e-3, "labeled_batch": 16}

    def __init__(self, data_dim: int, latent_dim: int = 20, hidden_dims: Sequence[int] = (400,),
                 num_classes: int = 10, likelihood: str = "bernoulli"):
        super().__init__(data_dim)
        if num_classes < 2:
            raise ValueError(f"the labels need at least 2 classes (got {num_classes})")
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.latent_sites = {
            "y": LatentSite("y", discrete=True, size=1, num_categories=num_classes),
            "z": LatentSite("z", discrete=False, size=latent_dim),
        }
        self.decoder = mlp(latent_dim + num_classes, hidden_dims, data_dim)
        self.likelihood = LIKELIHOODS[likelihood](data_dim)

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) = N(0, I_d), on the device and dtype of ``like``."""
        standard = dist.Normal(like.new_zeros(()), like.new_ones(()))
        return standard.expand([self.latent_dim]).to_event(1)

    def label_prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(y) = Cat(1/C, …, 1/C)."""
        return dist.Categorical(logits=like.new_zeros(self.num_classes))

    def forward(self, x: Optional[torch.Tensor] = None, index=None, num_data=None,
                y=None, num_labeled=None) -> None:
        with label_plates(x, y, index, num_data, num_labeled) as groups:
            for group in groups:
                with group.plate:
                    self._generate(group.x, group.y, group.suffix)

    def _generate(self, x: Optional[torch.Tensor], y: Optional[torch.Tensor],
                  suffix: str) -> None:
        like = self.like(x)
        z = pyro.sample("z" + suffix, self.prior(like))                        # (…, batch, d)
        if y is None:
            y = pyro.sample("y", self.label_prior(like))       # (…, batch), or (C, 1) enumerated
        else:
            pyro.sample("y" + suffix, self.label_prior(like), obs=y)
        out = self.decoder(join(z, self.onehot(y, like=z)))                 # (…, batch, D)
        pyro.sample("x" + suffix, self.likelihood(out), obs=x)

    def onehot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """onehot(y) in the dtype of ``like``, shape y.shape + (C,)."""
        return one_hot(y, self.num_classes).to(like.dtype)

    def log_joint(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, y, z) = log p(y) + log p(z) + log p_θ(x | y, z), broadcast over the batch
        shapes of x (…, D), y (…) and z (…, d)."""
        log_py = -torch.log(x.new_tensor(float(self.num_classes)))
        out = self.decoder(join(z, self.onehot(y, like=z)))
        return log_py + self.prior(z).log_prob(z) + self.likelihood(out).log_prob(x)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E[x | y, z] under p_θ(x|y, z), for samples and the style-transfer grid (z (…, d) and
        y (…) broadcast)."""
        return self.likelihood.mean(self.decoder(join(z, self.onehot(y, like=z))))


def join(*parts: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last axis after broadcasting the batch shapes: an enumerated y of
    shape (C, 1, C) joins x of shape (B, D) as (C, B, D + C)."""
    batch = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*batch, p.shape[-1]) for p in parts], dim=-1)


class LabelGroup:
    """The rows of a minibatch that share a status: their ``x``, their labels ``y`` (None where
    unlabeled), the ``plate`` over them and the ``suffix`` of their site names."""

    def __init__(self, name: str, x: Optional[torch.Tensor], y: Optional[torch.Tensor],
                 suffix: str, size: Optional[int] = None, total: Optional[int] = None):
        self.x, self.y, self.suffix = x, y, suffix
        rows = x.shape[0] if x is not None else size
        # rows that stand for ``total`` points: the plate scales their log-densities total/rows
        subsample = None if total is None else torch.arange(rows, device=x.device)
        self.plate = pyro.plate(name, total or rows, subsample=subsample, dim=-1)


@contextlib.contextmanager
def label_plates(x: Optional[torch.Tensor], y: Optional[torch.Tensor], index=None,
                 num_data=None, num_labeled=None) -> Iterator[List[LabelGroup]]:
    """``with label_plates(x, y, index, num_data) as groups``: the labeled and the unlabeled rows
    of a minibatch as ``LabelGroup``s (only those that have rows), inside a
    ``poutine.scale(N/B)`` — the scale ``data_plate`` gives a minibatch of B of N points, so that
    every row counts N/B times whether labeled or not and the loss is an unbiased estimate of the
    whole data set's. Without ``index``, ``x`` is the whole data set (scale 1).

    Labeled rows (y_i ≥ 0) form the plate ``"labeled"`` (site names suffixed ``_labeled``),
    unlabeled rows (y_i = ``UNLABELED``, or all rows when ``y`` is None) the plate ``"data"``.
    Both plates occupy dim −1 one after the other, never nested, so the model and the guide
    open them identically and enumeration of y stays within the unlabeled rows.

    With ``num_labeled`` = N_l, the minibatch's B_l labeled rows were drawn from the N_l
    labeled points apart from its B_u unlabeled rows, drawn from the other N − N_l (a fixed
    number of labeled rows in every step, ``experiments.data.labels.stratified_minibatches``):
    each group then counts for its own share, N_l/B_l and (N − N_l)/B_u, and the loss is still
    an unbiased estimate of the whole data set's.

    With x None (the model drawing x) there is one group, ``num_data`` unlabeled rows (or one).
    """
    if x is None:
        yield [LabelGroup("data", None, None, "", size=num_data or 1)]
    elif num_labeled is not None:
        yield split_labels(x, y, totals=(num_labeled, num_data - num_labeled))
    else:
        with poutine.scale(scale=minibatch_scale(x, index, num_data)):
            yield split_labels(x, y)


def split_labels(x: torch.Tensor, y: Optional[torch.Tensor],
                 totals=(None, None)) -> List[LabelGroup]:
    """The labeled group (if any row has a label) and the unlabeled group (if any row has none),
    standing for ``totals`` = (labeled, unlabeled) points (None: their own rows)."""
    if y is None:
        return [LabelGroup("data", x, None, "", total=totals[1])]
    if y.shape != x.shape[:1]:
        raise ValueError(f"one label per row of x: got labels of shape {tuple(y.shape)} "
                         f"for {x.shape[0]} rows")
    known = y != UNLABELED
    groups = []
    if known.any():
        groups.append(LabelGroup("labeled", x[known], y[known], "_labeled", total=totals[0]))
    if not known.all():
        groups.append(LabelGroup("data", x[~known], None, "", total=totals[1]))
    return groups


def minibatch_scale(x: torch.Tensor, index=None, num_data=None) -> float:
    """N / B for a minibatch ``x`` of B rows drawn from ``num_data`` = N (1 without ``index``):
    the scale that ``models.plates.data_plate`` applies."""
    batch_size = x.shape[0]
    if index is None:
        if num_data is not None and num_data != batch_size:
            raise ValueError("label_plates: pass the minibatch's index when num_data != len(x)")
        return 1.0
    return (num_data if num_data is not None else batch_size) / batch_size

