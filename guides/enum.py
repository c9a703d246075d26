"""The guide that samples nothing: discrete latent sites are summed out of the model instead."""
import torch

from guides.base import Guide
from models.base import LatentVariableModel


class EnumGuide(Guide):
    """No q(z|x) at all: with ``TraceEnum_ELBO`` every discrete site that the model marks for
    parallel enumeration (``infer={"enumerate": "parallel"}``) is summed out exactly, so

        ELBO(x) = log Σ_z p(x, z) = log p(x),

    the bound is tight and its gap KL(q(z|x) ‖ p(z|x)) is zero: the implied q(z|x) is the exact
    posterior p(z|x). For a mixture this is the marginal log-likelihood log Σ_n λ_n p(x | z = n),
    the objective that EM climbs.

    :param model: the model whose discrete sites are enumerated (it is not stored).
    """

    covers = "discrete"
    reparameterized = False
    enumerates = True

    def __init__(self, model: LatentVariableModel):
        super().__init__()

    @classmethod
    def fit_error(cls, model: LatentVariableModel):
        error = super().fit_error(model)
        if error is None:
            site = next(iter(model.latent_sites.values()))
            if site.one_hot or site.size > 1:
                return (f"summing out {site.size} categorical variables jointly "
                        f"({site.num_categories}^{site.size} values) is not supported")
        return error

    def forward(self, x: torch.Tensor, index=None, num_data=None) -> None:
        """Nothing to sample: the model's enumerated sites need no guide."""
