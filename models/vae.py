"""The variational autoencoder's generative model (Kingma & Welling 2014)."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch

from models.base import LatentSite
from models.decoder import DecoderModel, standard_normal
from models.plates import data_plate
from models.priors import PRIORS, MixtureOfGaussians, VampPrior


class VAE(DecoderModel):
    """The deep latent variable model of a VAE:

        z ~ p(z) = N(0, I_d)                        (one z ∈ R^d per data point)
        x ~ p_θ(x|z) = likelihood(decoder_θ(z))     (Bernoulli, Gaussian or continuous Bernoulli)

    :param data_dim: D, the size of one flattened observation.
    :param latent_dim: d, the size of z.
    :param hidden_dims: widths of the decoder's hidden layers (the encoder mirrors them).
    :param likelihood: a key of ``models.likelihoods.LIKELIHOODS``.
    :param network: the decoder, ``"mlp"`` or, for images, ``"conv"`` (transposed convolutions).
    :param image_shape: (C, H, W) of one observation, C·H·W = D; needed by ``"conv"``.
    :param prior: p(z), a name of ``models.priors.PRIORS``: ``"standard"`` N(0, I_d), ``"mog"``
        a learned mixture of ``components`` Gaussians, ``"vamp"`` the VampPrior over
        ``pseudo_inputs`` learned inputs (which reads the guide's encoder, ``learned_prior``).
    """

    def __init__(self, data_dim: int, latent_dim: int = 20, hidden_dims: Sequence[int] = (400,),
                 likelihood: str = "bernoulli", network: str = "mlp",
                 image_shape: Optional[Sequence[int]] = None, prior: str = "standard",
                 components: int = 10, pseudo_inputs: int = 500):
        super().__init__(data_dim, latent_dim, hidden_dims, likelihood, network, image_shape)
        self.latent_dim = latent_dim
        self.latent_sites = {"z": LatentSite("z", discrete=False, size=latent_dim)}
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}: choose one of {', '.join(PRIORS)}")
        self.learned_prior = (MixtureOfGaussians(latent_dim, components) if prior == "mog" else
                              VampPrior(data_dim, pseudo_inputs) if prior == "vamp" else None)

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z): N(0, I_d) on the device and dtype of ``like``, or the learned prior."""
        if self.learned_prior is not None:
            return self.learned_prior()
        return standard_normal(like, self.latent_dim)

    def forward(self, x: Optional[torch.Tensor] = None, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            z = pyro.sample("z", self.prior(self.like(x)))                     # (batch, d)
            self.observe(x, z)                                                 # (batch, D)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x_i, z_g) = log p_θ(x_i | z_g) + log p(z_g) for every row x_i of x (N, D) and
        every row z_g of z (G, d): shape (N, G), computing decoder_θ(z_g) once."""
        return self.likelihood.log_prob_pairs(self.decoder(z), x) + self.prior(z).log_prob(z)
