"""The amortized relaxed one-hot categorical guide (Gumbel-softmax, straight-through)."""
import functools
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch

from guides.base import AmortizedGuide
from models.base import LatentVariableModel
from models.plates import data_plate


class RelaxedCategoricalGuide(AmortizedGuide):
    """q_φ(z_l|x) = RelaxedOneHotCategorical(τ, logits_φ(x)_l) for each of the L variables
    (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017), with the straight-through estimator.

    A sample is y = softmax((logits + g) / τ), g ~ Gumbel(0, 1): a reparameterized point of
    the simplex. Pyro's straight-through variant hands the model the hard one-hot argmax of y,
    so the model's discrete prior scores a valid value, while gradients flow through y. The
    choice and its price: q is scored by the relaxed (Concrete) density at y and p(z) by the
    discrete probability of the hard value, so the objective is a biased surrogate of the ELBO
    that approaches it as τ → 0 (at the cost of higher-variance gradients); ``--temperature``
    sets τ.

    :param model: a model whose discrete latent site is scored as one-hot vectors.
    :param hidden_dims: the model's hidden widths (the encoder uses them in reverse).
    :param temperature: τ > 0.
    """

    covers = "discrete"
    straight_through = True

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,),
                 temperature: float = 0.5):
        super().__init__(model, hidden_dims)
        self.temperature = temperature

    def encoder_outputs(self) -> int:
        return self.site.size * self.site.num_categories

    @classmethod
    def fit_error(cls, model: LatentVariableModel):
        error = super().fit_error(model)
        if error is None and not next(iter(model.latent_sites.values())).one_hot:
            return "its relaxed samples are one-hot vectors, and the model scores z as labels"
        return error

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).unflatten(-1, (self.site.size, self.site.num_categories))

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        temperature = x.new_tensor(self.temperature)
        return dist.RelaxedOneHotCategoricalStraightThrough(temperature,
                                                            logits=self.logits(x)).to_event(1)

    def forward(self, x: torch.Tensor, index=None, num_data=None, hard: bool = False) -> None:
        with data_plate(x, index, num_data):
            q = (dist.OneHotCategorical(logits=self.logits(x)).to_event(1) if hard
                 else self.posterior(x))
            pyro.sample(self.site.name, q)

    def scoring_guide(self):
        """q(z|x) = Π_l OneHotCategorical(softmax(logits_l)), the distribution the relaxation
        approximates: test ELBO and IWAE computed with it are true bounds on log p(x), which
        the relaxed density scored against a discrete prior is not."""
        return functools.partial(self, hard=True)
