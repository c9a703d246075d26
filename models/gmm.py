"""The Gaussian mixture: a latent variable model with a discrete z, whose log p(x) is exact."""
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch.distributions import constraints

from models.base import LatentSite, LatentVariableModel
from models.plates import data_plate


class GaussianMixture(LatentVariableModel):
    """K Gaussian components with diagonal covariances, in the seeds' notation:

        p(z = n) = λ_n                                  (n = 1 … K, one z per data point)
        p(x | z = n) = N(x | μ_n, diag σ_n²)
        p(x) = Σ_n λ_n N(x | μ_n, diag σ_n²)

    The weights λ live on the simplex, the scales σ_n ∈ R^D are positive, the means μ_n ∈ R^D
    are free. z is marked for parallel enumeration, so ``TraceEnum_ELBO`` with a guide that
    leaves z out sums it out exactly; a guide that samples z (``categorical``) overrides it.

    :param data_dim: D.
    :param components: K.
    """

    fixed_likelihood = "gaussian"
    #: the component z summed out exactly: the ELBO is then log p(x) itself
    defaults = {**LatentVariableModel.defaults, "guide": "enum", "elbo": "enum"}
    has_exact_log_likelihood = True
    has_exact_posterior = True
    starts_from_clusters = True
    mixture_of_gaussians = True

    def __init__(self, data_dim: int, components: int = 3):
        super().__init__(data_dim)
        self.components = components
        self.latent_sites = {"z": LatentSite("z", discrete=True, size=1,
                                             num_categories=components)}
        # placeholders until ``set_from_clusters``: distinct random means break the symmetry
        self.weights = PyroParam(torch.full((components,), 1.0 / components),
                                 constraint=constraints.simplex)
        self.locs = PyroParam(torch.randn(components, data_dim))
        self.scales = PyroParam(torch.ones(components, data_dim), constraint=constraints.positive)

    def forward(self, x: Optional[torch.Tensor] = None, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            z = pyro.sample("z", dist.Categorical(self.weights),
                            infer={"enumerate": "parallel"})                  # (batch,) or (K, 1)
            pyro.sample("x", self.component(z), obs=x)                        # (batch, D)

    def component(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z) = N(μ_z, diag σ_z²), batch shape z.shape, event shape (D,)."""
        return dist.Normal(self.locs[z], self.scales[z]).to_event(1)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_i, z = n) = log λ_n + log N(x_i | μ_n, diag σ_n²), shape (N, K)."""
        every_n = torch.arange(self.components, device=x.device)
        return self.weights.log() + self.component(every_n).log_prob(x.unsqueeze(-2))

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_i) = log Σ_n λ_n N(x_i | μ_n, diag σ_n²) by log-sum-exp, shape (N,)."""
        return self.log_joint(x).logsumexp(-1)

    def exact_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """The responsibilities p(z = n | x_i) = λ_n N(x_i | μ_n, σ_n²) / p(x_i), shape (N, K)."""
        return self.log_joint(x).softmax(-1)

    def set_from_clusters(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Start from a hard clustering of x (labels in 0 … K−1): λ_n the share of cluster n,
        μ_n its mean and σ_n its standard deviation (floored, so a cluster of one point or of
        equal points does not start collapsed); an empty cluster takes the data's moments."""
        one_hot = torch.nn.functional.one_hot(labels, self.components).to(x.dtype)  # (N, K)
        counts = one_hot.sum(0)                                                     # (K,)
        floor = 1e-3 * x.std(0) + 1e-6
        empty = (counts == 0).unsqueeze(-1)
        means = (one_hot.T @ x) / counts.clamp(min=1).unsqueeze(-1)                 # (K, D)
        variances = (one_hot.T @ x ** 2) / counts.clamp(min=1).unsqueeze(-1) - means ** 2
        scales = variances.clamp(min=0).sqrt().maximum(floor)
        weights = (counts + 1e-3) / (counts + 1e-3).sum()
        self.weights = weights
        self.locs = torch.where(empty, x.mean(0), means)
        self.scales = torch.where(empty, x.std(0), scales)
