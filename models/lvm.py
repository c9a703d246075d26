"""The nonlinear latent variable model with a low-dimensional z, whose log p(x) is a quadrature."""
import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple

import torch

from models.vae import VAE

GRID_LIMIT = 6.0                  # p(z) puts less than 2e-9 of its mass outside [−6, 6] per axis
GRID_POINTS = {1: 2401, 2: 161}   # spacing h = 0.005 (d = 1) and 0.075 (d = 2)
CHUNK_ELEMENTS = 1 << 22          # data points × grid points held at once


@dataclass
class GridPosterior:
    """p(z | x_i) on a regular grid: ``z`` (G, d), ``log_density`` (N, G) = log p(z_g | x_i),
    so that Σ_g p(z_g | x_i) · ``cell_volume`` = 1 for every i."""

    z: torch.Tensor
    log_density: torch.Tensor
    cell_volume: float

    @property
    def mean(self) -> torch.Tensor:
        """E[z | x_i], shape (N, d)."""
        return self._weights() @ self.z

    @property
    def variance(self) -> torch.Tensor:
        """Var[z_j | x_i] per coordinate, shape (N, d)."""
        return (self._weights() @ self.z ** 2 - self.mean ** 2).clamp(min=0.0)

    def _weights(self) -> torch.Tensor:
        return self.log_density.exp() * self.cell_volume                   # (N, G)


class NonlinearLVM(VAE):
    """The seeds' nonlinear latent variable model, an infinite mixture of spherical Gaussians:

        z ~ p(z) = N(0, I_d),  d ∈ {1, 2}
        x | z ~ N(f(z), σ² I_D),  f an MLP (the decoder), σ > 0 learned
        p(x) = ∫ N(x | f(z), σ² I) N(z | 0, I) dz

    It is the VAE's generative model with the Gaussian likelihood, restricted to d ≤ 2 so that
    the integral is a sum over a grid z_g of spacing h on [−L, L]^d:

        p(x) ≈ Σ_g N(x | f(z_g), σ² I) N(z_g | 0, I) h^d,

    the rectangle rule. For a smooth integrand its error decays like exp(−2π² s² / h²) where the
    posterior p(z|x) has width s (spectral accuracy), so h at or below s suffices; to it adds
    the prior mass outside the box.

    :param data_dim: D.
    :param latent_dim: d, 1 or 2.
    :param hidden_dims: widths of the hidden layers of f.
    """

    fixed_likelihood = "gaussian"
    has_exact_log_likelihood = True
    has_exact_posterior = True

    def __init__(self, data_dim: int, latent_dim: int = 2, hidden_dims: Sequence[int] = (400,)):
        if latent_dim not in (1, 2):
            raise ValueError(f"the latent dimension must be 1 or 2, where log p(x) is a "
                             f"quadrature over a grid of z (got {latent_dim}); the vae model "
                             "takes any")
        super().__init__(data_dim, latent_dim, hidden_dims, likelihood="gaussian")

    def latent_grid(self, like: torch.Tensor, points: Optional[int] = None
                    ) -> Tuple[torch.Tensor, float]:
        """The grid z_g on [−L, L]^d, shape (points^d, d), and the cell volume h^d."""
        points = points or GRID_POINTS[self.latent_dim]
        axis = torch.linspace(-GRID_LIMIT, GRID_LIMIT, points, dtype=like.dtype,
                              device=like.device)
        axes = torch.meshgrid(*[axis] * self.latent_dim, indexing="ij")
        z = torch.stack([a.reshape(-1) for a in axes], dim=-1)
        return z, (2 * GRID_LIMIT / (points - 1)) ** self.latent_dim

    def _log_joint_blocks(self, x: torch.Tensor, points: Optional[int]
                          ) -> Iterator[torch.Tensor]:
        """log p(x_i, z_g) + log h^d over the grid, in blocks of grid points, each of shape
        (N, block) and about ``CHUNK_ELEMENTS`` numbers: f is evaluated once per grid point."""
        z, volume = self.latent_grid(x, points)
        block = max(1, CHUNK_ELEMENTS // len(x))
        for z_block in z.split(block):
            yield self.log_joint(x, z_block) + math.log(volume)

    def exact_log_likelihood(self, x: torch.Tensor, points: Optional[int] = None) -> torch.Tensor:
        """log p(x_i) by the quadrature above, shape (N,), held as a running log-sum-exp."""
        log_px = x.new_full((x.shape[0],), -math.inf)
        for block in self._log_joint_blocks(x, points):
            log_px = torch.logaddexp(log_px, block.logsumexp(-1))
        return log_px

    def exact_posterior(self, x: torch.Tensor, points: Optional[int] = None) -> GridPosterior:
        """p(z | x_i) = p(x_i, z) / p(x_i) on the quadrature grid; memory N × G."""
        z, volume = self.latent_grid(x, points)
        log_joint = torch.cat(list(self._log_joint_blocks(x, points)), dim=-1)    # (N, G)
        return GridPosterior(z, log_joint - log_joint.logsumexp(-1, keepdim=True)
                             - math.log(volume), volume)
