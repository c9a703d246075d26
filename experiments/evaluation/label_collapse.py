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
one-site estimate of ``collapse.mutual_information`` applied to the mixture q(z|x): Monte Carlo
over draws z ~ q(z|x_n), exact in y (each draw scored against all N·C components of q(z) by
matrix products, ``log_given_labels``); I(y; z | x) Monte Carlo over draws z ~ q(z|x_n, y) for
every class (a sum over y, not a sampled y), each scored against its own point's mixture only;
KL(q(z) ‖ p(z)) is the KL term less the two.
"""
import math
from typing import Dict, NamedTuple

import pyro.distributions as dist
import torch

from experiments.common.rng import isolated_rng
from experiments.evaluation.collapse import (
    MAX_POINTS,
    ROWS_PER_BLOCK,
    SURGERY_SAMPLES,
    active_units,
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


def log_given_labels(posterior: LabelPosterior, z: torch.Tensor) -> torch.Tensor:
    """log q(z_r|x_n, y) of every row z_r of z (R, d) under every (point, class): (R, N, C).
    The Gaussian's −½ Σ_j (z_j − μ_j)² / σ_j² expanded into matrix products (R·N·C·d
    multiply-adds in BLAS, not as many broadcast elements), in float64 so that the expansion
    loses nothing where σ is small."""
    base = posterior.given_label.base_dist
    loc, scale = (t.flatten(0, 1).double() for t in (base.loc, base.scale))       # (N·C, d)
    precision, z = scale.pow(-2), z.double()
    squares = (z.pow(2) @ precision.T - 2 * z @ (loc * precision).T
               + (loc.pow(2) * precision).sum(-1))                                 # (R, N·C)
    norm = scale.log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)
    return (-0.5 * squares - norm).reshape(len(z), *posterior.probs.shape)


def mixture_information(posterior: LabelPosterior, num_samples: int = SURGERY_SAMPLES) -> float:
    """I(x; z) of the module's formulas: ``num_samples`` draws z ~ q(z|x_n) per point, each
    scored under its point's mixture and under the aggregate q(z), in blocks of
    ``ROWS_PER_BLOCK`` draws."""
    mixture = posterior.mixture()
    z = mixture.sample((num_samples,))                                           # (S, N, d)
    log_weights = posterior.probs.double().log()                                 # (N, C)
    log_aggregate = torch.cat([
        (log_given_labels(posterior, block) + log_weights).flatten(1).logsumexp(-1)
        for block in z.reshape(-1, z.shape[-1]).split(ROWS_PER_BLOCK)])
    log_aggregate = log_aggregate.reshape(z.shape[:-1]) - math.log(len(log_weights))
    return (mixture.log_prob(z).double() - log_aggregate).mean().item()


def label_surgery(posterior: LabelPosterior, prior,
                  num_samples: int = SURGERY_SAMPLES) -> Dict:
    """The KL term of z and its three parts of the module's formulas (keys ``kl``,
    ``mutual_information``, ``label_information``, ``marginal_kl``: the KL term less the other
    two), each Monte Carlo part from ``num_samples`` draws per point (and class), and the KL
    per unit (``kl_per_dimension``, a list)."""
    per_dimension = kl_per_dimension_given_labels(posterior, prior)
    kl = per_dimension.sum().item()
    information = mixture_information(posterior, num_samples)
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
