"""Observation models p(x|z): a decoder's output turned into a distribution over x.

Each likelihood maps the decoder output ``out`` of shape (..., D) to a distribution with event
shape (D,), and says which values of x it supports, so that data can be checked before training.
"""
import math

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints


class Likelihood(PyroModule):
    """p(x|z) = ``self(out)`` for the decoder output ``out`` = decoder(z).

    :param data_dim: D, for a likelihood with parameters per dimension (the others ignore it).
    """

    def __init__(self, data_dim: int):
        super().__init__()

    def log_prob_pairs(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_i | out_g) for every row x_i of x (N, D) and out_g of out (G, D): (N, G)."""
        return self(out).log_prob(x.unsqueeze(-2))


class LogitLikelihood(Likelihood):
    """p(x|z) = Π_j ``family``(x_j | logits = out_j) on [0, 1]^D, the logits unchecked (the
    data are checked against ``support`` before training)."""

    support = (0.0, 1.0)
    family: type

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        return self.family(logits=out, validate_args=False).to_event(1)


class SoftplusSum(torch.autograd.Function):
    """Σ_j log(1 + e^{l_j}) over the last dimension, and its gradient σ(l_j).

    Computed as Σ_j max(l_j, 0) − Σ_j log σ(|l_j|), σ(|l|) ∈ [½, 1]: exact to rounding for every
    l (no overflow, no cancellation), from operations PyTorch vectorizes on the CPU, two
    temporaries forward and one backward. ``torch.nn.functional.softplus`` (and ``logsigmoid``,
    inside ``binary_cross_entropy_with_logits``) go through ``log1p``, which PyTorch 2.14
    evaluates one element at a time on the CPU: 5.6 against 0.9 ms for 10⁶ logits on 2 cores,
    forward. Differentiable once (the gradient is not itself differentiated)."""

    @staticmethod
    def forward(ctx, logits):
        ctx.save_for_backward(logits)
        log_sigmoid = torch.sigmoid(logits.abs()).log_()
        return torch.relu(logits).sum(-1) - log_sigmoid.sum(-1)

    @staticmethod
    def backward(ctx, grad):
        (logits,) = ctx.saved_tensors
        return torch.sigmoid(logits).mul_(grad.unsqueeze(-1))


class BernoulliVector(dist.Independent):
    """Π_j Bernoulli(x_j | sigmoid(l_j)) over the last dimension, with logits l:

        log p(x) = Σ_j x_j l_j − Σ_j log(1 + e^{l_j}),

    the same distribution as ``Bernoulli(logits=l).to_event(1)``, computed in two reductions:
    the first a dot product (``dot``), the second ``SoftplusSum``.
    ``torch.distributions.Bernoulli`` computes −BCE(l_j, x_j) term by term (its log-sigmoid
    keeps a second buffer for the backward pass) and negates every term before the
    sum: with K particles K × B × D values, the largest tensor of a step (``benchmarks/
    RESULTS.md``, section 2)."""

    def __init__(self, logits: torch.Tensor, validate_args=None):
        super().__init__(dist.Bernoulli(logits=logits, validate_args=False), 1,
                         validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        logits = self.base_dist.logits
        return BernoulliVector(logits.expand(torch.Size(batch_shape) + logits.shape[-1:]),
                               validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits = self.base_dist.logits
        return dot(logits, value.to(logits.dtype)) - SoftplusSum.apply(logits)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_j a_j b_j over the last dimension, broadcasting the others.

    Where broadcasting shares one operand among rows of the other (x of shape (B, D) against
    K particles' logits (K, B, D), or x_i against every out_g in ``log_prob_pairs``),
    ``einsum`` turns the sums into matrix products: one pass over the shared operand. Where it
    shares nothing (a step's (B, D) logits against its (B, D) minibatch), ``einsum`` makes B
    matrix products of 1 × D by D × 1, each a kernel call: 0.23 against 0.016 ms for B = 128,
    D = 784 forward, 0.67 against 0.19 ms with the backward pass, on a Xeon's 1 thread; there
    the product and the sum go elementwise."""
    shape = torch.broadcast_shapes(a.shape, b.shape)
    if a.numel() == b.numel() == math.prod(shape):
        return (a * b).sum(-1)
    return torch.einsum("...d,...d->...", a, b)


class BernoulliLikelihood(LogitLikelihood):
    """p(x|z) = Π_j Bernoulli(x_j | sigmoid(out_j)), out = decoder(z) the logits; x ∈ {0, 1}^D.

    Scored on grey levels in [0, 1] it is no longer a normalized density (see ``--binarize``).
    """

    family = dist.Bernoulli

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        return BernoulliVector(out, validate_args=False)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class GaussianLikelihood(Likelihood):
    """p(x|z) = N(x | out, σ² I) with one learned scale σ > 0 shared by all D dimensions."""

    support = (-float("inf"), float("inf"))

    def __init__(self, data_dim: int, init_scale: float = 0.5):
        super().__init__(data_dim)
        self.scale = PyroParam(torch.tensor(init_scale), constraint=constraints.positive)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(out, self.scale).to_event(1)

    def log_prob_pairs(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log N(x_i | out_g, σ² I) = −‖x_i − out_g‖² / (2σ²) − D log(σ √(2π)), shape (N, G),
        the distances by ``torch.cdist``: memory N × G rather than N × G × D."""
        distance = torch.cdist(x, out, compute_mode="donot_use_mm_for_euclid_dist")
        log_norm = x.shape[-1] * (self.scale.log() + 0.5 * math.log(2 * math.pi))
        return -0.5 * (distance / self.scale) ** 2 - log_norm

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out


class ContinuousBernoulliLikelihood(LogitLikelihood):
    """p(x|z) = Π_j CB(x_j | sigmoid(out_j)), the normalized continuous Bernoulli on [0, 1]^D
    (Loaiza-Ganem & Cunningham 2019): a proper density for grey-level images."""

    family = dist.ContinuousBernoulli

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return dist.ContinuousBernoulli(logits=out).mean


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
}
