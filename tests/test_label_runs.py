"""Runs of the models beyond p(x): the ssvae learns from the labels a run keeps (``--labels``),
the cvae from the visible part of its images; their metrics against computations made apart
from the run (plain torch, a reloaded checkpoint), and their figures."""
import json
from collections import Counter

import pytest
import torch
from torch.distributions import Bernoulli

from experiments.common.errors import UserError
from experiments.data.labels import balanced_subset, stratified_minibatches, withhold_labels
from experiments.evaluation.likelihood import iwae_log_likelihood
from experiments.training import loop
from experiments.training.end_to_end import run
from experiments.training.prepare import prepare_data
from experiments.training.trained import load_trained
from models import MODELS

#: 3 classes of 10, 10 and 2 points, interleaved
LABELS = torch.tensor([0, 1] * 10 + [2, 2])


def test_labeled_subset_is_class_balanced_fixed_by_the_seed_and_differs_across_seeds():
    counts = lambda index: Counter(LABELS[index].tolist())
    assert counts(balanced_subset(LABELS, 6, seed=0)) == {0: 2, 1: 2, 2: 2}
    # the short class gives all it has, the others share the rest evenly
    assert counts(balanced_subset(LABELS, 12, seed=0)) == {0: 5, 1: 5, 2: 2}
    odd = counts(balanced_subset(LABELS, 7, seed=3))
    assert sorted(odd.values()) == [2, 2, 3]
    assert torch.equal(balanced_subset(LABELS, 12, seed=4), balanced_subset(LABELS, 12, seed=4))
    draws = {tuple(balanced_subset(LABELS, 12, seed=s).tolist()) for s in range(5)}
    assert len(draws) > 1
    index = balanced_subset(LABELS, 12, seed=0)
    assert len(set(index.tolist())) == 12 and torch.equal(index, index.sort().values)
    assert len(balanced_subset(LABELS, len(LABELS), seed=1)) == len(LABELS)
    with pytest.raises(UserError, match="--labels 23 is more than the 22 training examples"):
        balanced_subset(LABELS, 23, seed=0)


def test_withheld_labels_are_minus_one_and_the_kept_ones_unchanged():
    partial = withhold_labels(LABELS, 6, seed=2)
    kept = balanced_subset(LABELS, 6, seed=2)
    assert torch.equal(partial[kept], LABELS[kept])
    assert (partial >= 0).sum() == 6 and set(partial.tolist()) == {-1, 0, 1, 2}


def test_an_ssvae_run_trains_on_the_kept_labels_and_reports_both_accuracies(
        quick_config, monkeypatch):
    """The loop hands the model the labels of exactly the 50 kept points (−1 elsewhere), the
    baseline classifier sees those 50 points alone, and the summary's test accuracy is that of
    argmax q(y|x) recomputed from the reloaded checkpoint."""
    seen, baseline_data = [], []
    forward = MODELS["ssvae"].forward

    def recording_forward(self, x, index=None, num_data=None, y=None):
        if y is not None:
            seen.append((index.clone(), y.clone()))
        return forward(self, x, index, num_data, y)

    train_classifier = loop.train_classifier

    def recording_classifier(like, x, y, *args, **kwargs):
        baseline_data.append(y.clone())
        return train_classifier(like, x, y, *args, **kwargs)

    monkeypatch.setattr(MODELS["ssvae"], "forward", recording_forward)
    monkeypatch.setattr(loop, "train_classifier", recording_classifier)
    config = quick_config(model="ssvae", guide="m2-enum", elbo="enum", labels=50,
                          aux_weight=10.0, epochs=1, latent_dim=4, labeled_batch=0)
    result = run(config)
    y_train = prepare_data(config, torch.device("cpu")).y_train           # as the run saw it
    full = prepare_data(config.replace(labels=None), torch.device("cpu")).y_train
    kept = balanced_subset(full, 50, seed=config.seed)
    assert torch.equal(y_train[kept], full[kept]) and (y_train >= 0).sum() == 50
    steps = [(index, y) for index, y in seen if len(index) < 300]      # training minibatches
    indices = torch.cat([index for index, _ in steps])
    assert torch.equal(indices.sort().values, torch.arange(300))       # one epoch, every point
    assert torch.equal(torch.cat([y for _, y in steps]), y_train[indices])
    (baseline_labels,) = baseline_data
    assert torch.equal(baseline_labels, full[kept])

    summary = json.loads((result.run_dir / "summary.json").read_text())
    _, data, parts = load_trained(result.run_dir)
    with torch.no_grad():
        accuracy = (parts.guide.classify(data.x_test).argmax(-1) == data.y_test).double().mean()
    assert summary["test_accuracy"] == pytest.approx(accuracy.item(), abs=1e-12)
    assert 0.0 <= summary["baseline_accuracy"] <= 1.0
    assert summary["test_accuracy"] == result.metrics[-1]["test_accuracy"]
    assert {p.name for p in result.run_dir.glob("*.png")} == {"elbo.png", "accuracy.png",
                                                              "style.png", "kl_per_dimension.png"}


def test_stratified_minibatches_take_every_unlabeled_row_once_and_the_labels_evenly():
    y = withhold_labels(LABELS, 5, seed=0)                      # 5 labeled of 22
    draw = lambda: stratified_minibatches(y, 4, 3, torch.Generator().manual_seed(1))
    batches = draw()
    assert len(batches) == 5                                    # ⌈17 unlabeled / 4⌉
    unlabeled = torch.cat([b[y[b] < 0] for b in batches])
    assert torch.equal(unlabeled.sort().values, torch.nonzero(y < 0).squeeze(1))
    assert all(int((y[b] >= 0).sum()) == 3 for b in batches)
    seen = Counter(torch.cat([b[y[b] >= 0] for b in batches]).tolist())
    assert set(seen) == set(torch.nonzero(y >= 0).squeeze(1).tolist())
    assert max(seen.values()) - min(seen.values()) <= 1         # 15 draws of 5 points: 3 each
    assert all(torch.equal(a, b) for a, b in zip(batches, draw()))
    many = withhold_labels(LABELS, 12, seed=0)                  # 12 labeled, 10 unlabeled
    batches = stratified_minibatches(many, 4, 1, torch.Generator().manual_seed(1))
    assert [int((many[b] >= 0).sum()) for b in batches] == [4, 4, 4]   # ⌈12 / 3 steps⌉, not 1
    labeled = torch.cat([b[many[b] >= 0] for b in batches])
    assert torch.equal(labeled.sort().values, torch.nonzero(many >= 0).squeeze(1))


def test_an_ssvae_run_with_a_labeled_batch_passes_its_labeled_rows_apart(
        quick_config, monkeypatch):
    """With --labeled-batch 8 every step holds 8 labeled rows and tells the model how many
    labeled points there are, and an epoch still passes every unlabeled point once."""
    seen = []
    forward = MODELS["ssvae"].forward

    def recording_forward(self, x, index=None, num_data=None, y=None, num_labeled=None):
        if y is not None and len(y) < 300:
            seen.append((index.clone(), y.clone(), num_labeled))
        return forward(self, x, index, num_data, y, num_labeled)

    monkeypatch.setattr(MODELS["ssvae"], "forward", recording_forward)
    config = quick_config(model="ssvae", labels=50, labeled_batch=8, batch_size=32, epochs=1,
                          latent_dim=4)
    run(config)
    y_train = prepare_data(config, torch.device("cpu")).y_train
    assert {n for _, _, n in seen} == {50}
    assert all(int((y >= 0).sum()) == 8 for _, y, _ in seen)
    unlabeled = torch.cat([index[y < 0] for index, y, _ in seen])
    assert torch.equal(unlabeled.sort().values, torch.nonzero(y_train < 0).squeeze(1))
    assert all(torch.equal(y, y_train[index]) for index, y, _ in seen)


def test_ssvae_with_every_label_enumerates_under_validation(quick_config):
    """All rows labeled: no minibatch has a site to enumerate, which Pyro warns of (an error
    under this suite's warnings filter) unless the estimator is built for it; only the
    auxiliary term trains q(y|x), and it learns."""
    result = run(quick_config(model="ssvae", guide="m2-enum", elbo="enum", aux_weight=50.0,
                              epochs=2, batch_size=32, lr=3e-3, latent_dim=4,
                              pyro_validation=True))
    assert result.summary["test_accuracy"] > 0.5          # chance is 0.1


@pytest.mark.slow
def test_a_cvae_run_reports_its_conditional_nll_as_minus_the_iwae_of_its_guide(
        quick_config, monkeypatch):
    """The summary's conditional NLL is −log p̂(x_h | x_v) by the project's importance sampler
    on the reloaded run with all of --iwae-samples (more than an epoch's), with its standard
    error; the baseline's is its Bernoulli NLL computed here from the baseline network alone;
    the baseline is fitted once, before the first step, and a resumed run does not refit it."""
    fits = []
    fit_baseline = MODELS["cvae"].fit_baseline

    def counting_fit(self, *args, **kwargs):
        fits.append(args)
        return fit_baseline(self, *args, **kwargs)

    monkeypatch.setattr(MODELS["cvae"], "fit_baseline", counting_fit)
    config = quick_config(model="cvae", visible=2, epochs=1, iwae_samples=150)
    result = run(config)
    assert len(fits) == 1
    summary = json.loads((result.run_dir / "summary.json").read_text())
    _, data, parts = load_trained(result.run_dir)
    iwae, stderr = iwae_log_likelihood(parts.model, parts.guide, data.x_test, 150)
    assert summary["test_conditional_nll"] == pytest.approx(-iwae, abs=1e-9)
    assert summary["test_conditional_nll_stderr"] == pytest.approx(stderr, abs=1e-9)
    assert summary["test_conditional_nll_stderr"] > 0
    model, x = parts.model, data.x_test
    shown = model.visible_mask
    with torch.no_grad():
        by_hand = -Bernoulli(logits=model.baseline(x[:, shown])).log_prob(
            x[:, ~shown]).sum(-1).mean()
    assert summary["baseline_conditional_nll"] == pytest.approx(by_hand.item(), rel=1e-6)
    assert by_hand < 32 * torch.log(torch.tensor(2.0))     # fitted: below 32 fair coins
    assert {p.name for p in result.run_dir.glob("*.png")} == {"elbo.png", "completions.png",
                                                              "kl_per_dimension.png"}
    baseline_before = {k: v.clone() for k, v in model.baseline.state_dict().items()}

    resumed = run(config.replace(epochs=2), resume=result.run_dir)
    assert len(fits) == 1
    assert all(torch.equal(v, resumed.parts.model.baseline.state_dict()[k])
               for k, v in baseline_before.items())
    assert [row["baseline_conditional_nll"] for row in resumed.metrics] == pytest.approx(
        [summary["baseline_conditional_nll"]] * 2)


def test_the_baseline_classifier_replicates_q_y_given_x_and_leaves_the_run_alone():
    """The classifier alone has the layers of q(y|x), fresh and outside Pyro's parameter store;
    it learns separable classes, and training it draws nothing from the run's random stream."""
    import pyro

    from experiments.evaluation.baselines import accuracy, train_classifier
    from guides.m2 import M2Guide

    guide = M2Guide(MODELS["ssvae"](6, latent_dim=2, hidden_dims=(16, 8), num_classes=3),
                    hidden_dims=(16, 8))
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.rand(60, 6, generator=generator) * 0.2 + torch.nn.functional.one_hot(y, 6)
    state, stored = torch.get_rng_state(), set(pyro.get_param_store().keys())
    classifier = train_classifier(guide.classifier, x, y, steps=200, batch_size=16, lr=0.01,
                                  seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(pyro.get_param_store().keys()) == stored
    shapes = lambda net: [tuple(p.shape) for p in net.parameters()]
    assert shapes(classifier) == shapes(guide.classifier)
    assert accuracy(classifier(x), y) == 1.0
    again = train_classifier(guide.classifier, x, y, steps=200, batch_size=16, lr=0.01, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(classifier.parameters(), again.parameters()))


def test_ssvae_one_epoch_then_one_resumed_equals_two_in_one_go(quick_config, tmp_path):
    """The labels and the random stream are the same whether a run is resumed or not. The
    classifier alone trains for as many steps as the run's --epochs give SVI, so the epoch
    before a resume that extends --epochs reports the shorter run's; from then on they agree."""
    settings = dict(model="ssvae", guide="m2-enum", elbo="enum", labels=40, aux_weight=5.0,
                    latent_dim=3)
    whole = run(quick_config(**settings, epochs=2, out=str(tmp_path / "whole")))
    first = run(quick_config(**settings, epochs=1, out=str(tmp_path / "parts")))
    resumed = run(quick_config(**settings, epochs=2, out=str(tmp_path / "parts")),
                  resume=first.run_dir)
    drop = lambda row: {k: v for k, v in row.items()
                        if k not in ("seconds", "eval_seconds", "baseline_accuracy")}
    assert [drop(r) for r in resumed.metrics] == [drop(r) for r in whole.metrics]
    assert resumed.summary["baseline_accuracy"] == whole.summary["baseline_accuracy"]
    assert resumed.summary["test_accuracy"] == whole.summary["test_accuracy"]


def test_with_labels_enough_for_the_labeled_batch_rows_are_drawn_alike(quick_config,
                                                                        monkeypatch):
    """200 labels of 300 put 21 labeled rows in a minibatch of 32 on average, more than
    --labeled-batch 8: the steps are the plain ones, every point once, no ``num_labeled``."""
    seen = []
    forward = MODELS["ssvae"].forward

    def recording_forward(self, x, index=None, num_data=None, y=None, num_labeled=None):
        if y is not None and len(y) < 300:
            seen.append((index.clone(), num_labeled))
        return forward(self, x, index, num_data, y, num_labeled)

    monkeypatch.setattr(MODELS["ssvae"], "forward", recording_forward)
    run(quick_config(model="ssvae", labels=200, labeled_batch=8, batch_size=32, epochs=1,
                     latent_dim=4))
    assert {n for _, n in seen} == {None}
    assert torch.equal(torch.cat([i for i, _ in seen]).sort().values, torch.arange(300))
