"""The guide of the semi-supervised VAE (M2): a classifier q(y|x) and a style encoder q(z|x, y)."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch.nn.functional import softplus

from guides.base import Guide
from models.base import LatentVariableModel
from models.networks import mlp
from models.ssvae import join, label_plates


class M2Guide(Guide):
    """The M2 guide with y sampled: q_φ(y, z | x) = q_φ(y|x) q_φ(z|x, y) (Kingma et al. 2014).

        q_φ(y|x) = Cat(softmax(classifier_φ(x)))                        (the classifier)
        q_φ(z|x, y) = N(μ_φ(x, y), diag σ_φ(x, y)²),  (μ, σ̃) = encoder_φ([x, onehot(y)])

    On unlabeled rows (plate ``"data"``) y is drawn from q(y|x) — a discrete sample, so its
    gradient is the score function ∇ log q(y|x) · (log p − log q) under ``trace`` — and z from
    q(z|x, y). On labeled rows (plate ``"labeled"``) y is the label and only ``z_labeled`` is
    drawn. The ``m2-enum`` variant sums y out instead.

    The auxiliary classification term (Kingma et al.'s α; Pyro's example uses α = 46 on MNIST):
    q(y|x) appears in the ELBO of unlabeled rows only, so on labeled rows the guide adds

        pyro.factor("y_aux", −α · log q_φ(y_i | x_i)),

    which, the loss being E_q[log q − log p], adds −α Σ_labeled log q_φ(y_i|x_i) (scaled N/B like
    every site): the classifier's cross-entropy on the labels, trained by the same SVI step. It
    is the term of Pyro's ``model_classify`` (a model-side observation of y under q(y|x), scaled
    by α), moved into the guide because here the classifier belongs to the guide alone. It is
    not part of any bound: test ELBO and IWAE are computed without labels, where it is absent.

    :param model: the ``ssvae`` model (its sites y and z).
    :param hidden_dims: the model's hidden widths (the classifier and encoder use them reversed).
    :param aux_weight: α ≥ 0; 0 drops the term.
    """

    covers = "discrete"
    reparameterized = False
    enumerate_y: Optional[str] = None

    def __init__(self, model: LatentVariableModel, hidden_dims: Sequence[int] = (400,),
                 aux_weight: float = 0.0):
        super().__init__()
        if aux_weight < 0:
            raise ValueError(f"the auxiliary weight α must be at least 0 (got {aux_weight})")
        self.num_classes = model.latent_sites["y"].num_categories
        self.latent_dim = model.latent_sites["z"].size
        self.aux_weight = aux_weight
        widths = list(reversed(hidden_dims))
        self.classifier = mlp(model.data_dim, widths, self.num_classes)
        self.encoder = mlp(model.data_dim + self.num_classes, widths, 2 * self.latent_dim)

    @classmethod
    def fit_error(cls, model: LatentVariableModel) -> Optional[str]:
        sites = model.latent_sites
        found = "; ".join(s.describe() for s in sites.values()) or "no latent site"
        y, z = sites.get("y"), sites.get("z")
        if (len(sites) != 2 or y is None or z is None or not y.discrete or y.size != 1
                or y.one_hot or z.discrete):
            return (f"it covers a label y (one categorical) and a continuous z, and the model "
                    f"has {found}")
        return None

    def label_posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(y|x), batch shape x.shape[:-1]."""
        return dist.Categorical(logits=self.classifier(x))

    def latent_posterior(self, x: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x, y), its batch shape that of x and y broadcast (y (C, 1) enumerated and x
        (B, D) give (C, B))."""
        onehot = torch.nn.functional.one_hot(y, self.num_classes).to(x.dtype)
        loc, raw_scale = self.encoder(join(x, onehot)).chunk(2, dim=-1)
        return dist.Normal(loc, softplus(raw_scale) + 1e-6).to_event(1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q_φ(y|x) as class probabilities, shape (N, C): argmax for test accuracy."""
        with torch.no_grad():
            return self.label_posterior(x).probs

    def forward(self, x: torch.Tensor, index=None, num_data=None, y=None,
                num_labeled=None) -> None:
        with label_plates(x, y, index, num_data, num_labeled) as groups:
            for group in groups:
                with group.plate:
                    if group.y is None:
                        self._unlabeled(group.x)
                    else:
                        self._labeled(group.x, group.y, group.suffix)

    def _unlabeled(self, x: torch.Tensor) -> None:
        infer = {"enumerate": self.enumerate_y} if self.enumerate_y else {}
        y = pyro.sample("y", self.label_posterior(x), infer=infer)     # (…, B); enumerated (C, 1)
        pyro.sample("z", self.latent_posterior(x, y))                  # (…, B, d), or (C, B, d)

    def _labeled(self, x: torch.Tensor, y: torch.Tensor, suffix: str) -> None:
        pyro.sample("z" + suffix, self.latent_posterior(x, y))
        if self.aux_weight > 0:
            log_q = self.label_posterior(x).log_prob(y)                                # (B,)
            pyro.factor("y_aux", -self.aux_weight * log_q, has_rsample=True)


class M2EnumGuide(M2Guide):
    """The M2 guide with y summed out by enumeration on unlabeled rows (``--elbo enum``).

    y is marked for parallel enumeration, and ``TraceEnum_ELBO`` computes the unlabeled bound
    exactly in y,

        U(x) = Σ_y q_φ(y|x) [log p(y) + E_{q(z|x,y)}[log p(z) + log p_θ(x|y, z) − log q_φ(z|x,y)]]
               + H[q_φ(y|x)],

    with one z drawn per (x, y) pair: the C decoder passes of Kingma et al. (2014) and of Pyro's
    ``config_enumerate`` example, instead of one sampled y with a score-function gradient.
    """

    enumerates = True
    enumerate_y = "parallel"
