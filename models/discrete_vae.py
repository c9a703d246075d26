"""The discrete–discrete VAE: categorical latent codes, binary observations."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch

from models.base import LatentSite
from models.decoder import DecoderModel
from models.plates import data_plate


class DiscreteVAE(DecoderModel):
    """z = (z_1, …, z_L), L independent categorical variables with C values each, one-hot:

        z_l ~ p(z_l) = OneHotCategorical(1/C, …, 1/C)          l = 1 … L
        x ~ p_θ(x|z) = Π_j Bernoulli(x_j | sigmoid(decoder_θ(z)_j))

    The decoder reads the L one-hot codes concatenated (L·C inputs). z is scored as one-hot
    vectors so that a relaxed guide's straight-through samples — hard one-hot values whose
    gradients flow through their relaxed counterparts — are valid values of the same site.

    :param data_dim: D, the size of one flattened (binary) observation.
    :param latent_dim: L, the number of categorical variables.
    :param categories: C, the number of values of each.
    :param hidden_dims: widths of the decoder's hidden layers.
    :param network: the decoder, ``"mlp"`` or, for images, ``"conv"`` (transposed convolutions).
    :param image_shape: (channels, height, width) of one observation, their product D; needed
        by ``"conv"``.
    """

    #: a reparameterized one-hot z (Gumbel-softmax); four variables of ten values (the README's)
    defaults = {**DecoderModel.defaults, "guide": "relaxed", "latent_dim": 4}

    def __init__(self, data_dim: int, latent_dim: int = 2, categories: int = 10,
                 hidden_dims: Sequence[int] = (400,), network: str = "mlp",
                 image_shape: Optional[Sequence[int]] = None):
        super().__init__(data_dim, latent_dim * categories, hidden_dims, "bernoulli", network,
                         image_shape)
        self.latent_dim, self.categories = latent_dim, categories
        self.latent_sites = {"z": LatentSite("z", discrete=True, size=latent_dim,
                                             num_categories=categories, one_hot=True)}

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z): L independent uniform one-hot categoricals, event shape (L, C)."""
        probs = like.new_full((self.latent_dim, self.categories), 1.0 / self.categories)
        return dist.OneHotCategorical(probs=probs).to_event(1)

    def forward(self, x: Optional[torch.Tensor] = None, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            z = pyro.sample("z", self.prior(self.like(x)))                       # (batch, L, C)
            self.observe(x, z.flatten(-2))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] = sigmoid(decoder(z)) for one-hot codes z of shape (..., L, C)."""
        return super().decode(z.flatten(-2))
