"""The non-amortized guide: free variational parameters for every training point."""
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch.distributions import constraints

from guides.base import Guide
from models.base import LatentVariableModel
from models.plates import data_plate


class LocalGuide(Guide):
    """q(z_i) = N(z_i | m_i, diag s_i²) with its own (m_i, s_i) for each of the N data points.

    Classic stochastic variational inference (Hoffman et al. 2013): no encoder, so no
    amortization gap, and nothing to say about a new x. The minibatch's rows are picked through
    the index of the subsampling plate. Started at q(z_i) = N(0, I) = p(z).

    :param model: the model whose one continuous latent site this guide covers.
    :param num_data: N, the number of data points (the training set).
    """

    closed_form_kl = True
    amortized = False

    def __init__(self, model: LatentVariableModel, num_data: int):
        super().__init__()
        (self.site,) = model.latent_sites.values()
        self.num_data = num_data
        self.loc = PyroParam(torch.zeros(num_data, self.site.size))
        self.scale = PyroParam(torch.ones(num_data, self.site.size),
                               constraint=constraints.positive)

    def posterior(self, index: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(self.loc[index], self.scale[index]).to_event(1)

    def forward(self, x: torch.Tensor, index=None, num_data=None) -> None:
        if x.shape[0] > self.num_data or (num_data or x.shape[0]) != self.num_data:
            raise ValueError(f"the local guide holds parameters for {self.num_data} data points "
                             f"and was given a data set of {num_data or x.shape[0]}")
        with data_plate(x, index, num_data) as index:
            pyro.sample(self.site.name, self.posterior(index))
