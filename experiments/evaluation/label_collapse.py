"""Posterior collapse of the continuous z of a model with a class y beside it (the ssvae, M2:
p(y) p(z) p(x|y, z) with p(z) = N(0, I); guide q(y|x) q(z|x, y), q(z|x, y) a diagonal Gaussian).

On the test set y is latent, as the test bounds score it, and every sum over y is exact (its C
values enumerated). Over N test points x_n, with q(z|x) = Σ_y q(y|x) q(z|x, y) the mixture the
guide gives for z once y is summed out:

    E_q[z|x]     = Σ_y q(y|x) μ(x, y)                    (the mixture's mean)
    active units A = #{j : Cov_x(E_q[z_j|x]) > 0.01}        (Burda et al. 2016)
    KL per unit  KL_j = (1/N) Σ_n Σ_y q(y|x_n) KL(q(z_j|x_n, y) ‖ N(0, 1)),

so Σ_j KL_j is the KL term of z in the ELBO of an unlabeled point (Kingma et al.'s U(x),
``guides.m2.M2EnumGuide``): E_{q(y|x)}[KL(q(z|x, y) ‖ p(z))], the ``kl`` reported. The ELBO
surgery (Hoffman & Johnson 2016) on the aggregate posterior
q(z) = (1/N) Σ_n Σ_y q(y|x_n) q(z|x_n, y) splits it in three:

    E_{q(y|x)}[KL(q(z|x, y) ‖ p(z))] = I(x; z) + I(y; z | x) + KL(q(z) ‖ p(z)),
    I(x; z)     = (1/N) Σ_n E_{q(z|x_n)}[log q(z|x_n) − log q(z)]                  ≤ log N,
    I(y; z | x) = (1/N) Σ_n Σ_y q(y|x_n) KL(q(z|x_n, y) ‖ q(z|x_n))                 ≤ log C,

what the code says about the point, what it says about the class beyond the point (under q;
the mean KL term minus the mixture's (1/N) Σ_n KL(q(z|x_n) ‖ p(z))), and how far the codes'
aggregate lies from the prior. The KL term and the KL per unit are closed forms; I(x; z) is the
one-site estimate (``collapse.mutual_information``) applied to the mixture q(z|x): Monte Carlo
over draws z ~ q(z|x_n), exact in y; I(y; z | x) Monte Carlo over draws z ~ q(z|x_n, y) for
every class (a sum over y, not a sampled y), each scored against its own point's mixture only;
KL(q(z) ‖ p(z)) is the KL term less the two.
"""
from typing import Dict, NamedTuple

import pyro.distributions as dist
import torch

from experiments.common.rng import isolated_rng
from experiments.evaluation.collapse import (
    MAX_POINTS,
    SURGERY_SAMPLES,
    active_units,
    mutual_information,
)
from experiments.evaluation.likelihood import EVAL_SEED
from experiments.parts.kl_per_unit import kl_per_point_and_dimension


class LabelPosterior(NamedTuple):
    """q(y|x_n) as ``probs`` (N, C) and q(z|x_n, y) for every y as ``given_label``, a diagonal
    Gaussian with batch shape (N, C)."""

    probs: torch.Tensor
    given_label: dist.TorchDistribution

    def mixture(self) -> dist.TorchDistribution:
        """q(z|x_n) = Σ_y q(y|x_n) q(z|x_n, y), batch shape (N,)."""
        return dist.MixtureSameFamily(dist.Categorical(probs=self.probs), self.given_label)


def label_collapse_applies(model) -> bool:
    """A model with a class y (one categorical site) beside one continuous site z, under a prior
    p(z) it gives (``model.prior``): the ssvae."""
    sites = model.latent_sites
    y, z = sites.get("y"), sites.get("z")
    return (len(sites) == 2 and y is not None and z is not None and y.discrete
            and not z.discrete and callable(getattr(model, "prior", None)))


def label_posterior(guide, x: torch.Tensor) -> LabelPosterior:
    """q(y|x) and q(z|x, y) at every class y for the rows of x, from the guide's classifier
    (``label_posterior``) and encoder (``latent_posterior``)."""
    classes = torch.arange(guide.num_classes, device=x.device)                        # (C,)
    return LabelPosterior(guide.label_posterior(x).probs,
                          guide.latent_posterior(x.unsqueeze(-2), classes))       # (N, C)


def kl_per_dimension_given_labels(posterior: LabelPosterior, prior) -> torch.Tensor:
    """KL_j of the module's formulas, (d,): each class's KL per unit weighted by q(y|x_n)."""
    per_class = kl_per_point_and_dimension(posterior.given_label, prior)         # (N, C, d)
    return (posterior.probs.unsqueeze(-1) * per_class).sum(1).mean(0)


def label_information(posterior: LabelPosterior,
                      num_samples: int = SURGERY_SAMPLES) -> float:
    """I(y; z | x) of the module's formulas: ``num_samples`` draws of q(z|x_n, y) for every
    point and class, each scored under its class and under its point's mixture q(z|x_n)."""
    given_label = posterior.given_label
    z = given_label.sample((num_samples,))                                     # (S, N, C, d)
    log_mixture = posterior.mixture().log_prob(z.transpose(-2, -3)).transpose(-1, -2)
    return (posterior.probs * (given_label.log_prob(z) - log_mixture)).sum(-1).mean().item()


def label_surgery(posterior: LabelPosterior, prior,
                  num_samples: int = SURGERY_SAMPLES) -> Dict:
    """The KL term of z and its three parts of the module's formulas (keys ``kl``,
    ``mutual_information``, ``label_information``, ``marginal_kl``: the KL term less the other
    two), each Monte Carlo part from ``num_samples`` draws per point (and class), and the KL
    per unit (``kl_per_dimension``, a list)."""
    per_dimension = kl_per_dimension_given_labels(posterior, prior)
    kl = per_dimension.sum().item()
    information = mutual_information(posterior.mixture(), num_samples)
    given_x = label_information(posterior, num_samples)
    return {"kl": kl, "mutual_information": information, "label_information": given_x,
            "marginal_kl": kl - information - given_x,
            "kl_per_dimension": per_dimension.tolist()}


def label_diagnostics(model, guide, x: torch.Tensor, seed: int = EVAL_SEED) -> Dict:
    """Active units, the KL per unit and the surgery of ``label_surgery`` on the first
    ``MAX_POINTS`` rows of x, from the stream ``seed``, without gradients."""
    with torch.no_grad(), isolated_rng(seed, x.device):
        rows = x[:MAX_POINTS]
        posterior = label_posterior(guide, rows)
        return {"active_units": active_units(posterior.mixture().mean),
                **label_surgery(posterior, model.prior(rows))}
