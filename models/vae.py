"""The variational autoencoder's generative model (Kingma & Welling 2014)."""
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch

from models.base import LatentSite, LatentVariableModel
from models.likelihoods import LIKELIHOODS
from models.networks import mlp
from models.plates import data_plate


class VAE(LatentVariableModel):
    """The deep latent variable model of a VAE:

        z ~ p(z) = N(0, I_d)                        (one z ∈ R^d per data point)
        x ~ p_θ(x|z) = likelihood(decoder_θ(z))     (Bernoulli, Gaussian or continuous Bernoulli)

    :param data_dim: D, the size of one flattened observation.
    :param latent_dim: d, the size of z.
    :param hidden_dims: widths of the decoder's hidden layers (the encoder mirrors them).
    :param likelihood: a key of ``models.likelihoods.LIKELIHOODS``.
    """

    has_decoder = True

    def __init__(self, data_dim: int, latent_dim: int = 20, hidden_dims: Sequence[int] = (400,),
                 likelihood: str = "bernoulli"):
        super().__init__(data_dim)
        self.latent_dim = latent_dim
        self.latent_sites = {"z": LatentSite("z", discrete=False, size=latent_dim)}
        self.decoder = mlp(latent_dim, hidden_dims, data_dim)
        self.likelihood = LIKELIHOODS[likelihood](data_dim)

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) = N(0, I_d), on the device and dtype of ``like``."""
        return dist.Normal(like.new_zeros(()), like.new_ones(())).expand([self.latent_dim]).to_event(1)

    def forward(self, x: torch.Tensor, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            z = pyro.sample("z", self.prior(x))                                # (batch, d)
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)         # (batch, D)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x_i, z_g) = log p_θ(x_i | z_g) + log p(z_g) for every row x_i of x (N, D) and
        every row z_g of z (G, d): shape (N, G), computing decoder_θ(z_g) once."""
        return self.likelihood.log_prob_pairs(self.decoder(z), x) + self.prior(z).log_prob(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] under p_θ(x|z): the decoder's mean, for reconstructions and samples."""
        return self.likelihood.mean(self.decoder(z))
