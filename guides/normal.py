"""The amortized diagonal-Gaussian guide of the VAE."""
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch.nn.functional import softplus

from models.base import LatentVariableModel
from models.networks import mlp
from models.plates import data_plate


class NormalGuide(PyroModule):
    """q_φ(z|x) = N(z | μ_φ(x), diag σ_φ(x)²), with (μ, log-ish σ) = encoder_φ(x).

    The encoder mirrors the model's decoder: D → reversed(hidden_dims) → 2d. σ = softplus(·)
    keeps the scale positive without the overflow of exp. Covers the model's one continuous
    latent site, sampled with the reparameterization z = μ + σ ε, ε ~ N(0, I).

    :param model: the model whose continuous latent site this guide covers.
    :param hidden_dims: the model's hidden widths (the encoder uses them in reverse).
    """

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,)):
        super().__init__(name="guide")
        (self.site,) = model.latent_sites.values()
        self.encoder = mlp(model.data_dim, list(reversed(hidden_dims)), 2 * self.site.size)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x) as a distribution with batch shape (batch,) and event shape (d,)."""
        loc, raw_scale = self.encoder(x).chunk(2, dim=-1)                    # (batch, d) each
        return dist.Normal(loc, softplus(raw_scale) + 1e-6).to_event(1)

    def forward(self, x: torch.Tensor, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            pyro.sample(self.site.name, self.posterior(x))
