"""The amortized diagonal-Gaussian guide extended to a chain of latent layers."""
from typing import Sequence

import pyro
from pyro.nn import PyroModule
from torch import nn

from guides.normal import NormalGuide
from models.base import LatentVariableModel
from models.networks import diagonal_normal, mlp
from models.plates import data_plate


class ChainGuide(NormalGuide):
    """q_φ(z₁, …, z_L | x) = q_φ(z₁|x) Π_{l=2}^{L} q_φ(z_l|z_{l−1}), every factor a diagonal
    Gaussian N(μ, diag σ²) with (μ, σ̃) = net(input), σ = softplus(σ̃): for the hvae,
    q(z₁|x) q(z₂|z₁), the bottom-up recognition model of Burda et al. (2016).

    q(z₁|x) is the ``normal`` guide's (an encoder of the model's kind, D → reversed(hidden_dims)
    → 2d₁, parameters ``encoder.*``); each q(z_l|z_{l−1}) is an MLP d_{l−1} → reversed(
    hidden_dims) → 2d_l (``chain.{l−2}.*``). Sites follow the model's ``latent_sites`` from x
    outwards, all continuous; a one-site model gets the ``normal`` guide itself. Samples are
    reparameterized through the whole chain, z₁ = μ(x) + σ(x) ε₁, z₂ = μ(z₁) + σ(z₁) ε₂, …,
    so log q(z|x) = Σ_l log q(z_l|z_{l−1}) with z₀ = x.

    No closed-form KL for ``meanfield``: Pyro's TraceMeanField_ELBO replaces each site's
    log p − log q by KL(q ‖ p) at the sampled values of the other sites, here
    KL(q(z₁|x) ‖ p(z₁|z₂)) at z₂ ~ q(z₂|z₁). That integrates z₁ out as if it were independent
    of z₂, which under this q it is not (z₂ is drawn from z₁), so its expectation is not the
    ELBO; Pyro's own condition (a site's parents in the model are no descendants of it in the
    guide) fails for z₁, whose parent z₂ descends from it. The test
    ``tests/test_hvae.py::test_meanfield_would_not_be_the_elbo`` measures the difference.

    :param model: a model whose latent sites are all continuous (any number, one or more).
    :param hidden_dims: the model's hidden widths (each network uses them in reverse).
    """

    covers_chain = True
    closed_form_kl = False

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,)):
        super().__init__(model, hidden_dims)
        self.sites = list(model.latent_sites.values())
        widths = list(reversed(hidden_dims))
        self.chain = PyroModule[nn.ModuleList](
            mlp(below.size, widths, 2 * above.size)
            for below, above in zip(self.sites[:-1], self.sites[1:]))

    def forward(self, x, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            z = pyro.sample(self.site.name, self.posterior(x))                # (batch, d₁)
            for site, layer in zip(self.sites[1:], self.chain):
                z = pyro.sample(site.name, diagonal_normal(layer(z)))         # (batch, d_l)
