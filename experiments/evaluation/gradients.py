"""The spread of an estimator's gradient at fixed parameters: variance and signal-to-noise.

For a gradient estimator ĝ of ∇ELBO drawn M times at fixed (θ, φ) on a fixed minibatch:

    total variance  = Σ_j Var[ĝ_j]                 (the trace of the covariance)
    mean SNR        = (1/P) Σ_j |E ĝ_j| / sd[ĝ_j]  (Rainforth et al. 2018)

reported separately for the guide's parameters φ and the model's θ. An estimator whose
gradient does not depend on random draws (``enum`` summing a mixture out) has zero variance.
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from experiments.common.rng import isolated_rng
from experiments.evaluation.likelihood import EVAL_SEED
from experiments.parts.build import Parts


@dataclass
class GradientStats:
    total_variance: float
    mean_snr: float


def gradient_draws(parts: Parts, x: torch.Tensor, index: Optional[torch.Tensor] = None,
                   num_data: Optional[int] = None, draws: int = 100,
                   seed: int = EVAL_SEED) -> Dict[str, torch.Tensor]:
    """``draws`` gradients of the loss, {"guide": (M, P_φ), "model": (M, P_θ)}; φ are the
    guide's ``variational_parameters()`` (a learned baseline is not part of q).

    Uses ``elbo.loss_and_grads``, which every Pyro estimator implements (RenyiELBO and
    TraceGraph_ELBO have no ``differentiable_loss``). Parameters are not stepped; their
    ``.grad`` is restored, and the draws come from their own seeded random stream.
    """
    groups = {"guide": list(parts.guide.variational_parameters()),
              "model": list(parts.model.parameters())}
    every = list(parts.guide.parameters()) + groups["model"]
    saved = [p.grad for p in every]
    rows: Dict[str, List[torch.Tensor]] = {name: [] for name in groups}
    with isolated_rng(seed, x.device):
        for _ in range(draws):
            for p in every:
                p.grad = None
            parts.elbo.loss_and_grads(parts.model, parts.guide, x, index, num_data)
            for name, params in groups.items():
                rows[name].append(_flat_grad(params, x))
    for p, grad in zip(every, saved):
        p.grad = grad
    return {name: torch.stack(r) for name, r in rows.items()}


def _flat_grad(params: List[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if not params:
        return like.new_zeros(0)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in params])


def gradient_stats(draws: torch.Tensor) -> GradientStats:
    """Total variance and mean SNR of (M, P) gradient draws. Coordinates that never receive a
    gradient are left out of the SNR; an estimator without noise has an infinite SNR."""
    if draws.shape[1] == 0:
        return GradientStats(0.0, math.nan)
    mean, std = draws.mean(0), draws.std(0)
    active = (mean != 0) | (std != 0)
    if not active.any():
        return GradientStats(0.0, math.nan)
    mean, std = mean[active], std[active]
    snr = torch.where(std > 0, mean.abs() / std, torch.full_like(std, math.inf))
    return GradientStats(std.pow(2).sum().item(), snr.mean().item())


def gaussian_mean_gradients(f: Callable[[torch.Tensor], torch.Tensor], mu: float, sigma: float,
                            draws: int, baseline: float, seed: int = EVAL_SEED
                            ) -> Dict[str, torch.Tensor]:
    """M one-sample estimates of ∂/∂μ E_{z ~ N(μ, σ²)}[f(z)], each from the same ε ~ N(0, 1),
    z = μ + σ ε, shape (M,) each:

        score function            f(z) ∂/∂μ log N(z | μ, σ²) = f(z) (z − μ) / σ²
        score function, baseline  (f(z) − b) (z − μ) / σ²   (unbiased: E[(z − μ) / σ²] = 0)
        reparameterization        ∂/∂μ f(μ + σ ε) = f′(z)

    All three have the same mean; they differ in variance only.
    """
    with isolated_rng(seed, torch.device("cpu")):
        eps = torch.randn(draws, dtype=torch.float64)
    z = (mu + sigma * eps).requires_grad_()
    values = f(z)                                          # f acts on each z_m on its own
    (derivative,) = torch.autograd.grad(values.sum(), z)
    score = (z.detach() - mu) / sigma ** 2
    return {"score function": values.detach() * score,
            "score function, baseline": (values.detach() - baseline) * score,
            "reparameterization": derivative}
