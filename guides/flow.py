"""The amortized Gaussian guide followed by inverse autoregressive flows."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import affine_autoregressive
from torch import nn

from guides.normal import NormalGuide
from models.base import LatentVariableModel


class FlowGuide(NormalGuide):
    """z = f_T ∘ … ∘ f_1(z₀), z₀ ~ N(μ_φ(x), diag σ_φ(x)²), each f_t an inverse autoregressive
    transform z_j ← μ_tj(z_<j) + σ_tj(z_<j) z_j (Kingma et al. 2016), T = ``flow_layers``.

    log q(z|x) = log N(z₀ | μ, σ²) − Σ_t log |det ∂f_t/∂z|, exact and cheap because each f_t
    has a triangular Jacobian. The transforms are shared by all x (their parameters are not
    amortized); the base Gaussian is. Needs d ≥ 2: an autoregressive transform of one variable
    is a constant affine map.
    """

    closed_form_kl = False

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,),
                 flow_layers: int = 2, flow_hidden_dims: Optional[Sequence[int]] = None):
        super().__init__(model, hidden_dims)
        d = self.site.size
        widths = list(flow_hidden_dims or [max(2 * d, 16)])
        # plain modules, registered with pyro.module: Pyro scores samples after the guide has
        # returned, and a PyroModule refuses to run outside its parent's call
        self.flows = nn.ModuleList(affine_autoregressive(d, hidden_dims=widths)
                                   for _ in range(flow_layers))

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        pyro.module(f"{self._pyro_name}.flows", self.flows)     # named after this guide
        return dist.TransformedDistribution(super().posterior(x), list(self.flows))

    @classmethod
    def fit_error(cls, model: LatentVariableModel):
        error = super().fit_error(model)
        if error is None and next(iter(model.latent_sites.values())).size < 2:
            return "an autoregressive flow needs a latent dimension of 2 or more"
        return error
