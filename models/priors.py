"""The priors p(z) that a VAE takes by name (``--prior``): the standard normal, a learned mixture
of Gaussians, and the VampPrior, a mixture of the encoder's own posteriors."""
from typing import Callable, Optional

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn.functional import softplus

PRIORS = ("standard", "mog", "vamp")


class MixtureOfGaussians(PyroModule):
    """p_θ(z) = Σ_k π_k N(z | m_k, diag s_k²), K = ``components``, with π = softmax(logits),
    s = softplus(s̃), all learned; means start as draws of N(0, I), so the components start
    apart and the mixture near the standard prior's scale."""

    def __init__(self, latent_dim: int, components: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scales = nn.Parameter(torch.full((components, latent_dim), 0.5413))  # σ = 1

    def forward(self) -> dist.TorchDistribution:
        gaussians = dist.Normal(self.locs, softplus(self.raw_scales) + 1e-6).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), gaussians)


class VampPrior(PyroModule):
    """p(z) = (1/K) Σ_k q_φ(z | u_k), the variational mixture of posteriors (Tomczak & Welling
    2018): the guide's own q(z|x) at K = ``pseudo_inputs`` learned inputs u_k ∈ R^D, so the
    prior is the aggregate posterior of K learned data points. It reads q(z|x) through the
    ``encode`` it is given once the guide exists (``share_encoder``: the guide's
    ``mixture_component``, which under the IAF guide is its base Gaussian, see there); the u_k
    start as uniform noise in [0, 1]^D."""

    def __init__(self, data_dim: int, pseudo_inputs: int):
        super().__init__()
        self.pseudo_inputs = nn.Parameter(torch.rand(pseudo_inputs, data_dim))
        self.encode: Optional[Callable[[torch.Tensor], dist.TorchDistribution]] = None

    def share_encoder(self, encode: Callable[[torch.Tensor], dist.TorchDistribution]) -> None:
        """Read q(z|x) through ``encode(x)`` (the guide's ``mixture_component``)."""
        self.encode = encode

    def forward(self) -> dist.TorchDistribution:
        if self.encode is None:
            raise ValueError("the VampPrior mixes the guide's q(z|u_k): build the model with "
                             "its guide (experiments.parts.build), which shares the encoder")
        weights = self.pseudo_inputs.new_zeros(self.pseudo_inputs.shape[0])
        return dist.MixtureSameFamily(dist.Categorical(logits=weights),
                                      self.encode(self.pseudo_inputs))
