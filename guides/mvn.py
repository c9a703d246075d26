"""The amortized full-covariance Gaussian guide."""
import pyro.distributions as dist
import torch
from torch.nn.functional import softplus

from guides.base import AmortizedGuide


class MultivariateNormalGuide(AmortizedGuide):
    """q_φ(z|x) = N(z | μ_φ(x), L_φ(x) L_φ(x)ᵀ), L lower triangular with a positive diagonal.

    The encoder outputs μ (d values) and L's d(d+1)/2 free entries; the diagonal passes through
    softplus. Unlike the diagonal guide it can represent correlations in p(z|x), and samples
    z = μ + L ε stay reparameterized. KL(q ‖ N(0, I)) is not in Pyro's closed-form table for a
    diagonal prior, so ``meanfield`` refuses it.
    """

    closed_form_kl = False

    def encoder_outputs(self) -> int:
        d = self.site.size
        return d + d * (d + 1) // 2

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        d = self.site.size
        out = self.encoder(x)
        loc, entries = out[..., :d], out[..., d:]           # (batch, d), (batch, d(d+1)/2)
        rows, cols = torch.tril_indices(d, d, device=x.device)
        tril = out.new_zeros(*out.shape[:-1], d, d)
        tril[..., rows, cols] = entries
        diagonal = softplus(tril.diagonal(dim1=-2, dim2=-1)) + 1e-6
        scale_tril = tril.tril(-1) + torch.diag_embed(diagonal)              # (batch, d, d)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)
