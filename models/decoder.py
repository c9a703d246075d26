"""What the deep models share: x drawn from a likelihood head on a decoder network."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch

from models.base import LatentVariableModel
from models.likelihoods import LIKELIHOODS
from models.networks import image_channels_first, make_network


class DecoderModel(LatentVariableModel):
    """Base of the models whose observation is

        x ~ p_θ(x|z) = likelihood(decoder_θ(z))      (Bernoulli, Gaussian or continuous Bernoulli)

    for the latent code z that x is drawn from (the VAE's z, the hierarchical VAE's z₁, the
    discrete VAE's one-hot codes flattened). The decoder is an MLP or, for images, a
    transposed-convolution network (``models.networks.make_network``).

    :param data_dim: D, the size of one flattened observation.
    :param code_dim: the size of the decoder's input.
    :param hidden_dims: widths of the decoder's hidden (dense) layers.
    :param likelihood: a key of ``models.likelihoods.LIKELIHOODS``.
    :param network: ``"mlp"`` or ``"conv"``.
    :param image_shape: (C, H, W) of one observation, C·H·W = D; needed by ``"conv"``.
    """

    has_decoder = True

    def __init__(self, data_dim: int, code_dim: int, hidden_dims: Sequence[int],
                 likelihood: str, network: str = "mlp",
                 image_shape: Optional[Sequence[int]] = None):
        super().__init__(data_dim)
        self.network = network
        self.image_shape = None if image_shape is None else image_channels_first(image_shape)
        self.decoder = make_network(code_dim, hidden_dims, data_dim, network, image_shape)
        self.likelihood = LIKELIHOODS[likelihood](data_dim)

    def observe(self, x: Optional[torch.Tensor], code: torch.Tensor) -> None:
        """The site ``x`` ~ p_θ(x|z), observed at x (batch, D), or drawn where x is None,
        inside the caller's data plate."""
        pyro.sample("x", self.likelihood(self.decoder(code)), obs=x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """E[x | z] under p_θ(x|z): the decoder's mean, for reconstructions and samples."""
        return self.likelihood.mean(self.decoder(code))

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def ancestral_means(self, like: torch.Tensor, num_samples: int) -> torch.Tensor:
        """E[x | z] at ``num_samples`` codes z drawn from the prior, shape (num_samples, D):
        the model's samples as images. A model whose code has a prior of its own (a
        hierarchy) draws it top-down."""
        return self.decode(self.prior(like).sample((num_samples,)))


def standard_normal(like: torch.Tensor, size: int) -> dist.TorchDistribution:
    """N(0, I_size) with event shape (size,), on the device and dtype of ``like``."""
    return dist.Normal(like.new_zeros(()), like.new_ones(())).expand([size]).to_event(1)
