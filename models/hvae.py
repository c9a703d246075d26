"""The VAE with two stochastic layers (Burda, Grosse & Salakhutdinov 2016, section 5)."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch

from models.base import LatentSite
from models.decoder import DecoderModel, standard_normal
from models.networks import diagonal_normal, mlp
from models.plates import data_plate


class HVAE(DecoderModel):
    """A hierarchy of two latent layers, z = (z₁, z₂) per data point:

        z₂ ~ p(z₂) = N(0, I_{d₂})
        z₁ ~ p_θ(z₁|z₂) = N(μ_θ(z₂), diag σ_θ(z₂)²)     (μ, σ̃) = MLP_θ(z₂), σ = softplus(σ̃)
        x ~ p_θ(x|z₁) = likelihood(decoder_θ(z₁))      (Bernoulli, Gaussian or continuous Bernoulli)

    so x sees z₂ only through z₁, whose prior p_θ(z₁) = ∫ p_θ(z₁|z₂) p(z₂) dz₂ is learned rather
    than fixed at N(0, I) as in the VAE. The joint density, for the ELBO and every K-sample
    bound with a guide q(z₁, z₂|x) (the ``chain`` guide's q(z₁|x) q(z₂|z₁)), is

        log p_θ(x, z₁, z₂) = log p_θ(x|z₁) + log p_θ(z₁|z₂) + log p(z₂),
        ELBO(x) = E_q[log p_θ(x, z₁, z₂) − log q(z₁, z₂|x)] ≤ log p_θ(x).

    Both latent sites are continuous and lie in the one data plate; the model samples z₂ before
    z₁, and ``latent_sites`` lists them from x outwards (z₁, z₂).

    :param data_dim: D, the size of one flattened observation.
    :param latent_dims: (d₁, d₂), the sizes of z₁ and z₂ (Burda et al.: (100, 50)).
    :param hidden_dims: widths of the hidden layers of both decoders, z₁ → x and z₂ → z₁.
    :param likelihood: a key of ``models.likelihoods.LIKELIHOODS``.
    :param network: the decoder z₁ → x, ``"mlp"`` or, for images, ``"conv"``; z₂ → z₁ is an MLP.
    :param image_shape: (C, H, W) of one observation, C·H·W = D; needed by ``"conv"``.
    """

    #: q(z₁|x) q(z₂|z₁) mirrors the hierarchy; the normal guide has no z₂
    defaults = {**DecoderModel.defaults, "guide": "chain"}

    def __init__(self, data_dim: int, latent_dims: Sequence[int] = (20, 10),
                 hidden_dims: Sequence[int] = (400,), likelihood: str = "bernoulli",
                 network: str = "mlp", image_shape: Optional[Sequence[int]] = None):
        if len(latent_dims) != 2 or min(latent_dims) < 1:
            raise ValueError(f"hvae has two latent layers, so its latent sizes are two positive "
                             f"numbers d₁,d₂ (got {','.join(map(str, latent_dims)) or 'none'})")
        d1, d2 = (int(d) for d in latent_dims)
        super().__init__(data_dim, d1, hidden_dims, likelihood, network, image_shape)
        self.latent_dims = (d1, d2)
        self.latent_sites = {"z1": LatentSite("z1", discrete=False, size=d1),
                             "z2": LatentSite("z2", discrete=False, size=d2)}
        self.z1_decoder = mlp(d2, hidden_dims, 2 * d1)

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z₂) = N(0, I_{d₂}), the top of the hierarchy, on the device and dtype of ``like``."""
        return standard_normal(like, self.latent_dims[1])

    def z1_prior(self, z2: torch.Tensor) -> dist.TorchDistribution:
        """p_θ(z₁|z₂) = N(μ_θ(z₂), diag σ_θ(z₂)²): batch shape z2.shape[:-1], event (d₁,)."""
        return diagonal_normal(self.z1_decoder(z2))

    def forward(self, x: Optional[torch.Tensor] = None, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            z2 = pyro.sample("z2", self.prior(self.like(x)))                  # (batch, d₂)
            z1 = pyro.sample("z1", self.z1_prior(z2))                         # (batch, d₁)
            self.observe(x, z1)                                               # (batch, D)

    def log_joint(self, x: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """log p_θ(x_i, z₁g, z₂g) for every row x_i of x (N, D) and every pair of rows
        (z₁g, z₂g) of z1 (G, d₁) and z2 (G, d₂): shape (N, G), each decoder run once."""
        log_prior = self.z1_prior(z2).log_prob(z1) + self.prior(z2).log_prob(z2)      # (G,)
        return self.likelihood.log_prob_pairs(self.decoder(z1), x) + log_prior

    def ancestral_means(self, like: torch.Tensor, num_samples: int) -> torch.Tensor:
        """E[x | z₁] at z₂ ~ p(z₂), z₁ ~ p_θ(z₁|z₂), shape (num_samples, D)."""
        z2 = self.prior(like).sample((num_samples,))
        return self.decode(self.z1_prior(z2).sample())
