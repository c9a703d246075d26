"""The conditional VAE (Sohn, Lee & Yan 2015): the hidden part of an image given its visible part.

As Pyro's ``examples/cvae``: an image is split at the middle into four quadrants, some visible
and the rest hidden; a deterministic baseline network predicts the hidden pixels, and the CVAE
models their distribution given the visible ones, p(x_hidden | x_visible) = ∫ p(z | x_visible)
p(x_hidden | z, x_visible) dz, with a prior network that starts from the baseline's prediction.
"""
import math
from typing import List, Optional, Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from torch.nn.functional import softplus

from models.base import LatentSite, LatentVariableModel
from models.likelihoods import LIKELIHOODS
from models.networks import mlp
from models.plates import data_plate
from models.ssvae import join

#: likelihoods read off logits alone, which the baseline network can output too
CONDITIONAL_LIKELIHOODS = ("bernoulli", "continuous-bernoulli")


def quadrant_mask(image_shape: Sequence[int], visible: int) -> torch.Tensor:
    """The visible pixels of a flattened image, as a boolean tensor of prod(image_shape).

    The image (H, W) or (C, H, W) is split at row H // 2 and column W // 2, and the visible
    quadrants are those of Pyro's example: 1, the bottom-left; 2, the left half; 3, all but the
    bottom-right. Every channel shares the split.
    """
    if visible not in (1, 2, 3):
        raise ValueError(f"the number of visible quadrants must be 1, 2 or 3 (got {visible})")
    h, w = image_shape[-2:]
    shown = torch.zeros(h, w, dtype=torch.bool)
    shown[h // 2:, : w // 2] = True                      # bottom-left
    if visible >= 2:
        shown[:, : w // 2] = True                        # the left half
    if visible == 3:
        shown[: h // 2, :] = True                        # and the top-right
    return shown.expand(*image_shape).reshape(-1)


def default_image_shape(data_dim: int) -> Tuple[int, int]:
    """(s, s) when D = s² is a square, else one row (1, D) — which the split turns into a
    visible left part and a hidden right part."""
    side = math.isqrt(data_dim)
    return (side, side) if side * side == data_dim else (1, data_dim)


class CVAE(LatentVariableModel):
    """The conditional VAE, with x = (x_v, x_h) the visible and hidden pixels of an image:

        ŷ = baseline(x_v)                          (a fixed, pre-trained prediction of x_h)
        z ~ p_θ(z | x_v, ŷ) = N(μ_θ, diag σ_θ²),  (μ, σ̃) = prior_net_θ([x_v, ŷ] as one image)
        x_h ~ p_θ(x_h | z, x_v) = likelihood(generation_net_θ([z, x_v]))

    so log p(x) here means the conditional log p(x_h | x_v): the model observes only x_h, and
    its test ELBO and IWAE are bounds on it. The recognition network q(z | x_v, x_h) is any
    guide of a continuous z (``normal``, ``mvn``, ``flow``): its encoder reads the whole image.
    The importance-sampled IWAE estimate of the test set (``experiments.evaluation.likelihood``)
    is then the estimate of log p(x_h | x_v) with K samples of q, and its negative the
    conditional NLL.

    The baseline is an MLP trained first, alone, by ``train_baseline`` (minimizing
    −log p(x_h | ŷ), the same likelihood with the baseline's logits), as Pyro's example
    pre-trains it; the model reads ŷ without gradients, so SVI's optimizer never moves it. It is
    part of the model's ``state_dict``.

    :param data_dim: D, the size of one flattened image.
    :param latent_dim: d, the size of z.
    :param hidden_dims: widths of the hidden layers of every network.
    :param visible: how many quadrants are visible, 1, 2 or 3 (``quadrant_mask``).
    :param image_shape: (H, W) or (C, H, W) with product D; default ``default_image_shape``.
    :param likelihood: ``bernoulli`` or ``continuous-bernoulli``.
    """

    conditional = True
    #: lesson 7's sizes, with which the CVAE beats its baseline on the bundled digits
    defaults = {**LatentVariableModel.defaults, "hidden_dims": (128,), "batch_size": 64}

    def __init__(self, data_dim: int, latent_dim: int = 2, hidden_dims: Sequence[int] = (400,),
                 visible: int = 1, image_shape: Optional[Sequence[int]] = None,
                 likelihood: str = "bernoulli"):
        super().__init__(data_dim)
        image_shape = tuple(image_shape or default_image_shape(data_dim))
        if math.prod(image_shape) != data_dim or len(image_shape) not in (2, 3):
            raise ValueError(f"image shape {image_shape} does not hold {data_dim} values as "
                             "(H, W) or (C, H, W)")
        if likelihood not in CONDITIONAL_LIKELIHOODS:
            raise ValueError(f"the cvae's likelihood must be one of "
                             f"{', '.join(CONDITIONAL_LIKELIHOODS)} (got {likelihood!r})")
        mask = quadrant_mask(image_shape, visible)
        if mask.all() or not mask.any():
            raise ValueError(f"an image of shape {image_shape} split at the middle leaves no "
                             "visible or no hidden pixel")
        self.image_shape, self.visible, self.latent_dim = image_shape, visible, latent_dim
        self.register_buffer("visible_mask", mask)
        num_visible, num_hidden = int(mask.sum()), int((~mask).sum())
        self.latent_sites = {"z": LatentSite("z", discrete=False, size=latent_dim)}
        self.baseline = mlp(num_visible, hidden_dims, num_hidden)
        self.prior_net = mlp(data_dim, hidden_dims, 2 * latent_dim)
        self.generation_net = mlp(latent_dim + num_visible, hidden_dims, num_hidden)
        self.likelihood = LIKELIHOODS[likelihood](num_hidden)

    def split(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(x_v, x_h): the visible and hidden pixels of the rows of x, (…, D_v) and (…, D_h)."""
        return x[..., self.visible_mask], x[..., ~self.visible_mask]

    def merge(self, visible: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The images with these visible and hidden pixels, (…, D), batch shapes broadcast."""
        batch = torch.broadcast_shapes(visible.shape[:-1], hidden.shape[:-1])
        image = hidden.new_empty(*batch, self.data_dim)
        image[..., self.visible_mask] = visible.expand(*batch, visible.shape[-1])
        image[..., ~self.visible_mask] = hidden.expand(*batch, hidden.shape[-1])
        return image

    def baseline_prediction(self, x: torch.Tensor) -> torch.Tensor:
        """ŷ = the baseline's mean of x_h given x_v, (…, D_h), without gradients."""
        with torch.no_grad():
            return self.likelihood.mean(self.baseline(self.split(x)[0]))

    def prior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """p_θ(z | x_v, ŷ) for the rows of x (only their visible pixels are read), batch (N,)."""
        visible, _ = self.split(x)
        filled = self.merge(visible, self.baseline_prediction(x))                     # (N, D)
        loc, raw_scale = self.prior_net(filled).chunk(2, dim=-1)
        return dist.Normal(loc, softplus(raw_scale) + 1e-6).to_event(1)

    def generation(self, z: torch.Tensor, x: torch.Tensor) -> dist.TorchDistribution:
        """p_θ(x_h | z, x_v), the batch shapes of z (…, d) and x (…, D) broadcast."""
        return self.likelihood(self.generation_net(join(z, self.split(x)[0])))

    def forward(self, x: Optional[torch.Tensor] = None, index=None, num_data=None) -> None:
        if x is None:
            raise ValueError("the cvae is a model of the hidden pixels given the visible ones, "
                             "p(x_h | x_v): it draws x_h for given images x, not x from nothing")
        with data_plate(x, index, num_data):
            z = pyro.sample("z", self.prior(x))                               # (…, batch, d)
            pyro.sample("x_hidden", self.generation(z, x), obs=self.split(x)[1])   # (batch, D_h)

    def fit_baseline(self, x: torch.Tensor, epochs: int = 10, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, binarize: bool = False) -> List[float]:
        """``train_baseline(self, …)``: the baseline fitted alone, before SVI."""
        return train_baseline(self, x, epochs, batch_size, lr, seed, binarize)

    def baseline_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_h | ŷ(x_v)) of the baseline, per row of x: shape (N,). The baseline's
        conditional NLL is its negative mean."""
        visible, hidden = self.split(x)
        return self.likelihood(self.baseline(visible)).log_prob(hidden)

    def predict(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Completed images: the visible pixels of x with hidden ones E[x_h | z, x_v] for
        z ~ p(z | x_v, ŷ), shape (num_samples, N, D), for the predictions figure."""
        with torch.no_grad():
            z = self.prior(x).sample((num_samples,))                           # (S, N, d)
            hidden = self.likelihood.mean(self.generation_net(join(z, self.split(x)[0])))
            return self.merge(self.split(x)[0], hidden)

    def baseline_completion(self, x: torch.Tensor) -> torch.Tensor:
        """The visible pixels of x with the baseline's ŷ in the hidden ones, (N, D)."""
        return self.merge(self.split(x)[0], self.baseline_prediction(x))


def train_baseline(model: CVAE, x: torch.Tensor, epochs: int = 10, batch_size: int = 128,
                   lr: float = 1e-3, seed: int = 0, binarize: bool = False) -> List[float]:
    """Fit the baseline network alone, by Adam on −(1/N) Σ_i log p(x_h,i | ŷ(x_v,i)) over the
    rows of x, before the CVAE trains (the prior network reads ŷ, the way Pyro's example
    pre-trains its ``BaselineNet``). Returns the training NLL per epoch, nats per example.
    Minibatches come from a generator seeded with ``seed``; with ``binarize``, each minibatch's
    pixels are drawn afresh from it, x ~ Bernoulli(grey levels), as the CVAE sees them under
    dynamic binarization. The global random stream is left alone."""
    parameters = list(model.baseline.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr)
    order = torch.Generator().manual_seed(seed)
    pixels = torch.Generator(device=x.device).manual_seed(seed)
    history = []
    for _ in range(epochs):
        total = 0.0
        for index in torch.randperm(len(x), generator=order).to(x.device).split(batch_size):
            batch = torch.bernoulli(x[index], generator=pixels) if binarize else x[index]
            optimizer.zero_grad()
            loss = -model.baseline_log_likelihood(batch).mean()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        history.append(total / len(x))
    optimizer.zero_grad(set_to_none=True)   # no stale gradient for SVI's optimizer to step on
    return history
