"""The amortized diagonal-Gaussian guide of the VAE."""
import pyro.distributions as dist
import torch

from guides.base import AmortizedGuide
from models.networks import diagonal_normal


class NormalGuide(AmortizedGuide):
    """q_φ(z|x) = N(z | μ_φ(x), diag σ_φ(x)²), with (μ, σ̃) = encoder_φ(x) and σ = softplus(σ̃).

    The encoder mirrors the model's decoder: D → reversed(hidden_dims) → 2d; softplus keeps σ
    positive without the overflow of exp. Samples are reparameterized, z = μ + σ ε with
    ε ~ N(0, I), and KL(q ‖ N(0, I)) has a closed form.

    :param model: the model whose one continuous latent site this guide covers.
    :param hidden_dims: the model's hidden widths (the encoder uses them in reverse).
    """

    closed_form_kl = True

    def encoder_outputs(self) -> int:
        return 2 * self.site.size

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x) with batch shape (batch,) and event shape (d,)."""
        return diagonal_normal(self.encoder(x))
