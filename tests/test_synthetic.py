"""Synthetic data with ground truth: seeded draws, sizes, and generating densities that are
normalized and match an independent computation."""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from experiments.data.datasets import DATASETS, load_dataset
from experiments.data.synthetic import NUM_TEST, NUM_TRAIN, TRUTHS

CURVES = ["ring", "spiral", "moons"]


@pytest.mark.parametrize("name", list(TRUTHS))
def test_draws_are_seeded_sized_and_carry_their_truth(name):
    a, b = load_dataset(name), load_dataset(name, num_train=100, num_test=30)
    assert name in DATASETS and a.truth is TRUTHS[name]
    assert (len(a.x_train), len(a.x_test)) == (NUM_TRAIN, NUM_TEST)
    assert (len(b.x_train), len(b.x_test)) == (100, 30)
    assert torch.equal(load_dataset(name).x_train, a.x_train)        # the same every run
    assert torch.equal(b.x_train, a.x_train[:100])                   # the first N of a sequence
    assert torch.equal(b.x_test, a.x_test[:30])
    assert a.x_train.dtype == torch.float32 and a.data_dim == (1 if name == "gmm-1d" else 2)


@pytest.mark.parametrize("name", ["gmm-1d", "gmm-2d"])
def test_mixture_truth_log_prob_matches_scipy(name):
    truth = TRUTHS[name]
    w = truth.mixture_distribution.probs.double().numpy()
    mu = truth.component_distribution.base_dist.loc.double().numpy()
    sigma = truth.component_distribution.base_dist.scale.double().numpy()
    x = load_dataset(name, num_test=200).x_test
    reference = logsumexp(np.log(w) + norm.logpdf(x.double().numpy()[:, None], mu, sigma).sum(-1),
                          axis=-1)
    assert np.allclose(truth.log_prob(x).numpy(), reference, atol=1e-5)


@pytest.mark.parametrize("name", CURVES)
def test_curve_densities_integrate_to_one_and_fit_their_samples(name):
    """∫ p(x) dx over a grid wide enough to hold the curve and its noise is 1, and the
    average log-density of samples is far above that of shuffled-coordinate points."""
    truth = TRUTHS[name]
    x = load_dataset(name, num_test=300).x_test
    low, high = x.min(0).values - 1.0, x.max(0).values + 1.0
    a = torch.linspace(low[0], high[0], 60)       # spacing ≤ 0.11 for noise ≥ 0.08
    b = torch.linspace(low[1], high[1], 60)
    grid = torch.stack(torch.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)
    cell = (a[1] - a[0]) * (b[1] - b[0])
    assert (truth.log_prob(grid).exp().sum() * cell).item() == pytest.approx(1.0, abs=2e-3)
    shuffled = torch.stack([x[:, 0], x[torch.randperm(len(x)), 1]], -1)
    assert truth.log_prob(x).mean() > truth.log_prob(shuffled).mean() + 0.5
