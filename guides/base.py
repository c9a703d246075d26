"""What every guide declares, so that impossible model × guide × estimator combinations are
refused before anything trains (see ``experiments.parts.compatibility``)."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from models.base import LatentVariableModel
from models.networks import make_network
from models.plates import data_plate


class Guide(PyroModule):
    """Base of every guide q(z|x): a ``PyroModule`` named ``guide`` whose ``forward(x, index,
    num_data)`` mirrors the model's latent sites inside the same ``pyro.plate("data")``.

    Class attributes state what the guide is, for the compatibility checks:

    - ``covers``: the kind of latent site it samples, ``"continuous"`` or ``"discrete"``;
    - ``covers_chain``: it samples every latent site of the model, one after another in the
      model's order (``LatentVariableModel.latent_sites``), all of the kind it covers; without
      it, the model must have exactly one latent site;
    - ``reparameterized``: its samples are differentiable functions of its parameters;
    - ``closed_form_kl``: KL(q(z|x) ‖ p(z)) against the model's prior has a closed form;
    - ``enumerates``: it samples nothing and leaves the discrete sites to be summed out;
    - ``amortized``: q(z|x) is computed from x by a network (else: parameters per data point);
    - ``straight_through``: its samples are hard values whose gradients come from relaxed ones.
    """

    covers = "continuous"
    covers_chain = False
    reparameterized = True
    closed_form_kl = False
    enumerates = False
    amortized = True
    straight_through = False

    def __init__(self):
        super().__init__(name="guide")

    def variational_parameters(self):
        """φ, the parameters of q(z|x) itself; a guide that also learns a baseline for its
        score-function gradients leaves that out."""
        return self.parameters()

    def scoring_guide(self):
        """The guide that test bounds are computed with: this one, unless it trains through a
        surrogate (see the relaxed guide)."""
        return self

    @classmethod
    def fit_error(cls, model: LatentVariableModel) -> Optional[str]:
        """Why this guide cannot cover ``model``'s latent sites, or None if it can."""
        sites = list(model.latent_sites.values())
        wanted = cls.covers == "discrete"
        if not sites or any(s.discrete != wanted for s in sites) or (
                len(sites) > 1 and not cls.covers_chain):
            found = "; ".join(s.describe() for s in sites) or "no latent site"
            if len(sites) > 1:
                found = f"{len(sites)}: {found}"
            covered = (f"{cls.covers} latent sites only" if cls.covers_chain
                       else f"one {cls.covers} latent site")
            return f"it covers {covered}, and the model has {found}"
        return None


class AmortizedGuide(Guide):
    """A guide whose q_φ(z|x) is read off an encoder network applied to x.

    The encoder mirrors the model's decoder, D → reversed(hidden_dims) → ``encoder_outputs()``,
    and is of the model's kind (``network``: an MLP, or convolutions over ``image_shape``);
    subclasses turn its output into ``posterior(x)``, a distribution with batch shape (batch,)
    whose sample is the model's first latent site (its only one, unless the guide
    ``covers_chain``).
    """

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,)):
        super().__init__()
        if len(model.latent_sites) > 1 and not self.covers_chain:
            raise ValueError(self.fit_error(model))      # it would leave the other sites out
        self.site = next(iter(model.latent_sites.values()))
        self.encoder = self.read_x(model, hidden_dims, self.encoder_outputs())

    @staticmethod
    def read_x(model: LatentVariableModel, hidden_dims: Sequence[int], out_dim: int):
        """A network from x to ``out_dim`` values, the model's decoder mirrored."""
        return make_network(model.data_dim, list(reversed(hidden_dims)), out_dim,
                            model.network, model.image_shape)

    def encoder_outputs(self) -> int:
        raise NotImplementedError

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mixture_component(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The density that a mixture over inputs (the VampPrior, p(z) = (1/K) Σ_k · at its
        pseudo-inputs u_k) takes for each x: q_φ(z|x) itself, wherever scoring any z under it
        is cheap."""
        return self.posterior(x)

    def forward(self, x: torch.Tensor, index=None, num_data=None) -> None:
        with data_plate(x, index, num_data):
            pyro.sample(self.site.name, self.posterior(x))
