"""Probabilistic PCA: the linear-Gaussian latent variable model, exact at every parameter value."""
import pyro.distributions as dist
import torch

from models.vae import VAE


class PPCA(VAE):
    """Probabilistic principal component analysis (Tipping & Bishop 1999):

        z ~ p(z) = N(0, I_d)
        x | z ~ N(W z + b, σ² I_D)          (W ∈ R^{D×d}, b ∈ R^D, σ > 0 learned)

    the nonlinear model with a linear f, whose marginal and posterior are Gaussian in closed form:

        p(x) = N(x | b, W Wᵀ + σ² I_D)
        p(z | x) = N(z | M⁻¹ Wᵀ (x − b), σ² M⁻¹),  M = Wᵀ W + σ² I_d

    so bounds and gradients of every estimator can be checked exactly against it.

    :param data_dim: D.
    :param latent_dim: d.
    """

    fixed_likelihood = "gaussian"
    has_exact_log_likelihood = True
    has_exact_posterior = True

    def __init__(self, data_dim: int, latent_dim: int = 2):
        super().__init__(data_dim, latent_dim, hidden_dims=(), likelihood="gaussian")

    @property
    def linear(self) -> torch.nn.Linear:
        """The decoder's one layer: ``weight`` is W (D, d), ``bias`` is b (D,)."""
        return self.decoder[0]

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x_i | b, W Wᵀ + σ² I), shape (N,), through the low-rank covariance."""
        noise = self.likelihood.scale ** 2 * x.new_ones(self.data_dim)
        marginal = dist.LowRankMultivariateNormal(self.linear.bias, self.linear.weight, noise)
        return marginal.log_prob(x)

    def exact_posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z | x_i) = N(M⁻¹ Wᵀ (x_i − b), σ² M⁻¹), batch shape (N,), event shape (d,)."""
        w, variance = self.linear.weight, self.likelihood.scale ** 2
        m = w.T @ w + variance * torch.eye(self.latent_dim, dtype=x.dtype, device=x.device)
        loc = torch.linalg.solve(m, w.T @ (x - self.linear.bias).T).T          # (N, d)
        return dist.MultivariateNormal(loc, covariance_matrix=variance * torch.linalg.inv(m))
