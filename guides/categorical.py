"""The amortized categorical guide of a model with one discrete latent site."""
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from models.base import LatentVariableModel
from models.networks import mlp
from models.plates import data_plate


class CategoricalGuide(PyroModule):
    """q_φ(z|x) = Categorical(softmax(net_φ(x))), net_φ: D → hidden_dims → K.

    z is not reparameterizable, so its gradient is the score function
    ∇_φ log q_φ(z|x) · (log p(x, z) − log q_φ(z|x)) under ``trace``. Under ``tracegraph`` that
    term is Rao-Blackwellized and centred by a learned, input-dependent baseline b_ψ(x) (an MLP
    of the same widths, fitted by least squares to the downstream cost; Mnih & Gregor 2014);
    ``trace`` ignores the baseline.

    :param model: the model whose one discrete latent site this guide covers.
    :param hidden_dims: widths of the hidden layers of net_φ and b_ψ.
    """

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,)):
        super().__init__(name="guide")
        (self.site,) = model.latent_sites.values()
        self.net = mlp(model.data_dim, hidden_dims, self.site.num_categories)
        self.baseline = mlp(model.data_dim, hidden_dims, 1)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x) as a distribution with batch shape (batch,)."""
        return dist.Categorical(logits=self.net(x))                          # logits (batch, K)

    def forward(self, x: torch.Tensor, index=None, num_data=None) -> None:
        baseline = {"baseline_value": self.baseline(x).squeeze(-1)}          # (batch,)
        with data_plate(x, index, num_data):
            pyro.sample(self.site.name, self.posterior(x), infer={"baseline": baseline})
