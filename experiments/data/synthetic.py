"""Synthetic data sets with ground truth: each knows its generating distribution exactly.

Every set is drawn afresh from its generating distribution in ``TRUTHS`` (a
``torch.distributions.Distribution`` with ``sample`` and ``log_prob``, kept in ``Dataset.truth``)
with fixed seeds, one for the training and one for the test draw, so the test set does not
depend on ``--num-train`` and is the same for every run.
"""
import math
from typing import Callable, Optional, Tuple

import torch
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    constraints,
)

from experiments.common.rng import isolated_rng

TRAIN_SEED, TEST_SEED = 31_415, 27_182
NUM_TRAIN, NUM_TEST = 5_000, 500      # defaults of --num-train and --num-test
BLOCK = 1000                               # points drawn per seed
CHUNK_ELEMENTS = 1 << 22


def mixture(weights, locs, scales) -> MixtureSameFamily:
    """p(x) = Σ_n λ_n N(x | μ_n, diag σ_n²) with λ = ``weights``, μ = ``locs`` (K, D),
    σ = ``scales`` (K, D)."""
    components = Independent(Normal(torch.tensor(locs), torch.tensor(scales)), 1)
    return MixtureSameFamily(Categorical(torch.tensor(weights)), components)


class NoisyCurve(Distribution):
    """Points near a curve in the plane: t ~ U(0, 1), x = c(t) + ε, ε ~ N(0, s² I₂), so

        p(x) = ∫₀¹ N(x | c(t), s² I) dt ≈ (1/M) Σ_j N(x | c(t_j), s² I),  t_j = (j + ½) / M,

    the midpoint rule, accurate while the spacing of the c(t_j) along the curve is well below
    s (M = 4096 puts them at most 0.004 apart here, against s ≥ 0.08).

    :param curve: c, mapping t of shape (...,) to points of shape (..., 2).
    :param noise: s.
    """

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, curve: Callable[[torch.Tensor], torch.Tensor], noise: float,
                 points: int = 4096):
        self.curve, self.noise, self.points = curve, noise, points
        super().__init__(event_shape=torch.Size([2]), validate_args=False)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        t = torch.rand(sample_shape)
        return self.curve(t) + self.noise * torch.randn(*sample_shape, 2)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        t = (torch.arange(self.points, dtype=x.dtype, device=x.device) + 0.5) / self.points
        near = Independent(Normal(self.curve(t), self.noise), 1)              # batch (M,)
        rows = max(1, CHUNK_ELEMENTS // (2 * self.points))
        blocks = [near.log_prob(chunk.unsqueeze(-2)).logsumexp(-1) for chunk in x.split(rows)]
        return torch.cat(blocks) - math.log(self.points)


def ring(t: torch.Tensor) -> torch.Tensor:
    """The unit circle."""
    angle = 2 * math.pi * t
    return torch.stack([angle.cos(), angle.sin()], dim=-1)


def spiral(t: torch.Tensor) -> torch.Tensor:
    """One and a half turns outwards, radius 0.4 → 2."""
    angle, radius = 3 * math.pi * t, 0.4 + 1.6 * t
    return torch.stack([radius * angle.cos(), radius * angle.sin()], dim=-1)


def moons(t: torch.Tensor) -> torch.Tensor:
    """Two interleaved half circles (scikit-learn's ``make_moons``): t < ½ the upper one."""
    upper, angle = t < 0.5, math.pi * (2 * t % 1)
    top = torch.stack([angle.cos(), angle.sin()], dim=-1)
    bottom = torch.stack([1 - angle.cos(), 0.5 - angle.sin()], dim=-1)
    return torch.where(upper.unsqueeze(-1), top, bottom)


TRUTHS = {
    "gmm-1d": mixture([0.3, 0.45, 0.25], [[-3.0], [0.5], [3.0]], [[0.7], [0.9], [0.5]]),
    "gmm-2d": mixture([0.3, 0.25, 0.25, 0.2],
                      [[-2.5, -1.5], [0.0, 2.5], [2.5, -1.0], [0.5, -3.5]],
                      [[0.6, 0.4], [0.8, 0.5], [0.4, 0.9], [0.5, 0.5]]),
    "ring": NoisyCurve(ring, noise=0.1),
    "spiral": NoisyCurve(spiral, noise=0.08),
    "moons": NoisyCurve(moons, noise=0.1),
}


def describe(truth: Distribution) -> str:
    """One line on a generating distribution (``experiments.list`` shows it)."""
    if isinstance(truth, MixtureSameFamily):
        k, d = truth.mixture_distribution.probs.shape[-1], truth.event_shape[-1]
        return f"synthetic: a mixture of {k} Gaussians in {d}-D (--components {k} to match)"
    curve = truth.curve.__doc__.split(":")[0].strip().rstrip(".").replace("``", "")
    return f"synthetic: {curve[0].lower() + curve[1:]}, plus N(0, {truth.noise}² I) noise"


def draw(name: str, num_train: Optional[int] = None,
         num_test: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``num_train`` (default 5,000) training and ``num_test`` (default 500) test points
    from ``TRUTHS[name]``, float32 of shape (N, D): the first N of a fixed sequence each, so
    that a smaller N keeps the first points of a larger one."""
    return (_sequence(TRUTHS[name], num_train or NUM_TRAIN, TRAIN_SEED),
            _sequence(TRUTHS[name], num_test or NUM_TEST, TEST_SEED))


def _sequence(truth: Distribution, n: int, seed: int) -> torch.Tensor:
    """The first n points of a sequence drawn in blocks of ``BLOCK``, block j with its own seed."""
    blocks = []
    for j in range(math.ceil(n / BLOCK)):
        with isolated_rng(seed * 1_000_003 + j, torch.device("cpu")):
            blocks.append(truth.sample((BLOCK,)).float())
    return torch.cat(blocks)[:n]
