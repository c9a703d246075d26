"""Exact diagnostics, for models whose log p(x) and p(z|x) can be computed (``gmm``, ``lvm``,
``ppca``): how far each bound lies below log p(x), how far q(z|x) is from p(z|x), and, on
synthetic data, how close the model comes to the distribution that generated the data.

The gap of the ELBO is the KL divergence of the guide from the exact posterior,

    log p(x) − ELBO(x) = KL(q(z|x) ‖ p(z|x)) ≥ 0,

so ``test_gap`` (exact minus the one-sample test ELBO, ``experiments.evaluation.metrics``)
estimates its mean over the test set; for a discrete z the KL is also computed exactly from the
responsibilities (``posterior_kl``).
"""
from typing import Dict, Optional

import torch
from scipy.optimize import linear_sum_assignment
from torch.distributions import Distribution, MixtureSameFamily

from experiments.evaluation.likelihood import guide_distribution
from models.gmm import GaussianMixture


def posterior_kl(model: GaussianMixture, guide, x: torch.Tensor, site: str) -> float:
    """(1/N) Σ_i KL(q(z|x_i) ‖ p(z|x_i)) over the rows of x, by ``posterior_kl_per_point``."""
    return posterior_kl_per_point(model, guide, x, site).mean().item()


def posterior_kl_per_point(model, guide, x: torch.Tensor, site: str) -> torch.Tensor:
    """KL(q(z|x_i) ‖ p(z|x_i)) for every row x_i, shape (N,), without sampling:

    - discrete z (``gmm``): Σ_n q_in (log q_in − log r_in) with the exact responsibilities
      r_in = p(z = n | x_i); zero where the guide leaves z to enumeration;
    - continuous z on a quadrature grid (``lvm``): Σ_g q(z_g|x_i) h^d (log q(z_g|x_i) −
      log p(z_g|x_i)), the rectangle rule on the grid of ``exact_posterior``, accurate while
      the grid spacing h is below q's and p(z|x)'s widths.
    """
    q = guide_distribution(guide, x, site)
    with torch.no_grad():
        if model.latent_sites[site].discrete:
            if q is None:
                return x.new_zeros(x.shape[0])
            log_r = model.log_joint(x).log_softmax(-1)         # in logs: r may underflow to 0
            return (q.probs * (q.logits - log_r)).sum(-1)
        posterior = model.exact_posterior(x)
        log_q = q.log_prob(posterior.z.unsqueeze(-2)).T                          # (N, G)
        return (log_q.exp() * posterior.cell_volume * (log_q - posterior.log_density)).sum(-1)


def ground_truth_metrics(model, truth: Optional[Distribution], x: torch.Tensor) -> dict:
    """On synthetic data: ``true_log_likelihood``, the mean log p*(x) of the test set under the
    generating distribution p* (the ceiling of every model's log-likelihood, up to the noise of
    a finite test set), and for a mixture of as many components as the truth the recovery errors
    of ``mixture_recovery``."""
    if truth is None:
        return {}
    with torch.no_grad():
        metrics = {"true_log_likelihood": truth.log_prob(x.cpu()).mean().item()}
    if isinstance(truth, MixtureSameFamily) and model.mixture_of_gaussians:
        if model.components == truth.mixture_distribution.probs.shape[-1]:
            metrics.update(mixture_recovery(model, truth))
    return metrics


def mixture_recovery(model: GaussianMixture, truth: MixtureSameFamily) -> Dict[str, float]:
    """The largest errors of the learned weights λ̂, means μ̂ and scales σ̂ against the true
    mixture, after matching each learned component to one true component so that the sum of
    the distances ‖μ̂_n − μ_m‖ is least (the assignment problem, solved by scipy's
    ``linear_sum_assignment``): max |λ̂ − λ|, max ‖μ̂ − μ‖₂ and max |σ̂ − σ| over dimensions."""
    true = truth.component_distribution.base_dist
    with torch.no_grad():
        weights, locs, scales = (t.detach().cpu() for t in (model.weights, model.locs,
                                                             model.scales))
    learned, matched = linear_sum_assignment(torch.cdist(locs, true.loc).numpy())
    return {
        "recovery_weights_error": (weights[learned] - truth.mixture_distribution.probs[matched])
        .abs().max().item(),
        "recovery_means_error": (locs[learned] - true.loc[matched]).norm(dim=-1).max().item(),
        "recovery_scales_error": (scales[learned] - true.scale[matched]).abs().max().item(),
    }
