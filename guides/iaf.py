"""The amortized inverse autoregressive flow of Kingma et al. (2016)."""
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import conditional_affine_autoregressive
from torch import nn

from guides.flow import FlowGuide
from guides.normal import NormalGuide
from models.base import LatentVariableModel
from models.networks import diagonal_normal


class IAFGuide(NormalGuide):
    """q_φ(z|x) of an inverse autoregressive flow whose every step reads x (Kingma et al. 2016):

        (μ, σ̃, h) = encoder_φ(x),  z₀ ~ N(μ, diag σ²),  σ = softplus(σ̃)
        z_t = σ_t(z_{t−1}, h) ⊙ z_{t−1} + μ_t(z_{t−1}, h),   t = 1 … T = ``flow_layers``

    each (μ_t, log σ_t) a MADE network of z_{t−1} and the context h (Pyro's conditional affine
    autoregressive transform), so coordinate j of z_t depends on z_{t−1,<j} only and

        log q(z_T|x) = log N(z₀ | μ, σ²) − Σ_t Σ_j log σ_tj,

    exact and cheap. Unlike the ``flow`` guide, whose transforms are shared by all x, the
    transforms are amortized: they change with x through h. Samples stay reparameterized;
    KL(q ‖ p) has no closed form. Needs d ≥ 2.

    :param model: the model whose one continuous latent site this guide covers.
    :param hidden_dims: the model's hidden widths (the encoder uses them in reverse).
    :param flow_layers: T, the number of transforms.
    """

    closed_form_kl = False

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,),
                 flow_layers: int = 2):
        self.context_dim = context_size(next(iter(model.latent_sites.values())).size)
        super().__init__(model, hidden_dims)
        d = self.site.size
        # plain modules registered with pyro.module, as the flow guide's (see there)
        self.flows = nn.ModuleList(
            conditional_affine_autoregressive(d, self.context_dim, hidden_dims=[self.context_dim])
            for _ in range(flow_layers))

    def encoder_outputs(self) -> int:
        return 2 * self.site.size + self.context_dim

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x), batch shape (batch,), event shape (d,)."""
        pyro.module(f"{self._pyro_name}.flows", self.flows)     # named after this guide
        out = self.encoder(x)
        base = diagonal_normal(out[..., :2 * self.site.size])
        context = out[..., 2 * self.site.size:]                               # (batch, context)
        return AmortizedFlow(base, [f.condition(context) for f in self.flows])

    def mixture_component(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The base N(z | μ_φ(x), diag σ_φ(x)²) alone, without the flow: what the VampPrior
        mixes under this guide, p(z) = (1/K) Σ_k N(z | μ_φ(u_k), diag σ_φ(u_k)²). Scoring an
        arbitrary z under the flow conditioned on u_k means inverting it, one coordinate after
        another (d passes of each MADE, for every z and every k); the base Gaussians cost what
        the diagonal guide's VampPrior costs. The prior stays a proper density that does not
        depend on x, so every bound stays a bound; it is the encoder's Gaussian part at the
        pseudo-inputs, not the whole guide's q(z|u_k)."""
        return diagonal_normal(self.encoder(x)[..., :2 * self.site.size])

    fit_error = FlowGuide.fit_error


class AmortizedFlow(dist.TransformedDistribution):
    """q(z|x) through transforms conditioned on each x's context, scoring z of any batch shape
    that broadcasts with its own (a mixture over x, as the aggregate posterior needs, scores
    z (…, 1, d) against N contexts): z is expanded to the full batch shape first, which the
    coordinate-by-coordinate inverse of an autoregressive transform and Pyro's conditioning
    (``ConditionalAutoRegressiveNN`` expands h to z's shape) need. A z of the full shape is
    scored as it is: the transforms cache the z they drew, by identity, and score it without
    inverting."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        batch = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        if batch != value.shape[:-1]:      # else keep the very tensor the flow cached at sampling
            value = value.expand(*batch, value.shape[-1])
        return super().log_prob(value)


def context_size(latent_dim: int) -> int:
    """The size of h: twice d, at least 16 (the flow guide's hidden width)."""
    return max(2 * latent_dim, 16)
