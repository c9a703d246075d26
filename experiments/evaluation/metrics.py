"""The numbers measured on the test set after every epoch, each declared once.

A metric is a column of metrics.csv and a key of summary.json; the run's printed summary shows
it under ``label``, its figures under ``legend``, and a comparison averages it over seeds. A new
metric is one entry of ``TEST_METRICS``: its labels, which models have it (read from what the
model declares), and how it is computed from the model, the guide that scores the test set,
the test data and the row measured so far.
"""
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from tqdm import tqdm

from experiments.evaluation.baselines import accuracy
from experiments.evaluation.collapse_by_kind import collapse_metrics
from experiments.evaluation.diagnostics import posterior_kl_per_point
from experiments.evaluation.hierarchy_collapse import hierarchy_applies
from experiments.evaluation.label_collapse import label_collapse_applies
from experiments.evaluation.likelihood import iwae_log_likelihood, mean_elbo, over_chunks
from experiments.evaluation.refine import EPOCH_REFIT, FINAL_REFIT, fit_local_posterior
from experiments.parts.build import Parts
from experiments.parts.kl_per_unit import collapse_applies, surgery_applies
from models import LatentVariableModel

#: samples of the per-epoch IWAE estimate at most (the summary's uses all of ``--iwae-samples``)
EPOCH_IWAE_SAMPLES = 100
#: test points per chunk of the exact diagnostics: chunks of a fixed size give every point the
#: same number whether one process or several ranks score them (``over_chunks``)
EXACT_CHUNK = 2048


@dataclass(frozen=True)
class Metric:
    """One number per epoch on the test set, in nats per example unless ``note`` says other.

    :param label: its name in the run's printed summary (18 characters at most).
    :param note: what the printed value is.
    :param legend: its name in figures.
    :param applies: whether a model has it.
    :param compute: ``compute(model, guide, x, row, iwae_samples, **inputs)``, where ``row``
        holds the metrics listed before this one and ``inputs`` those named in ``reads``.
    :param reads: what else it needs of the run, passed by name to ``metrics_on_test_set``
        (``labels``: the test labels; ``classifier``: the baseline classifier); a run that
        gives none of these leaves the metric out.
    :param final: its value in the summary, from the summary's own numbers (the IWAE estimate
        with all of ``--iwae-samples``), in place of the last epoch's.
    :param shared: in place of ``compute``, a pass that computes this metric together with
        others, ``shared(model, guide, x)`` → {metric name: value}: run once per test set, every
        metric that names it reads its own name off the same pass (the same draws).
    """

    label: str
    note: str
    legend: str
    applies: Callable[[LatentVariableModel], bool]
    compute: Optional[Callable[..., float]] = None
    reads: Tuple[str, ...] = ()
    final: Optional[Callable[[dict], float]] = None
    shared: Optional[Callable[..., Dict[str, float]]] = None


def _exact(model: LatentVariableModel) -> bool:
    return model.has_exact_log_likelihood


def _discrete_exact_posterior(model: LatentVariableModel) -> bool:
    if not model.has_exact_posterior:      # models with several sites have none
        return False
    (site,) = model.latent_sites.values()
    return site.discrete


def _exact_log_likelihood(model, guide, x, row, iwae_samples) -> float:
    with torch.no_grad():
        return _mean_over_chunks(lambda rows, index: model.exact_log_likelihood(rows), x)


def _posterior_kl(model, guide, x, row, iwae_samples) -> float:
    site = next(iter(model.latent_sites))
    return _mean_over_chunks(lambda rows, index: posterior_kl_per_point(model, guide, rows, site),
                             x)


def _mean_over_chunks(per_point, x: torch.Tensor) -> float:
    """The mean of ``per_point(rows, index)`` (shape (B,)) over x, in chunks of EXACT_CHUNK."""
    return torch.cat(over_chunks(per_point, x, EXACT_CHUNK)).mean().item()


def _epoch_iwae_and_stderr(model, guide, x, iwae_samples) -> Tuple[float, float]:
    return iwae_log_likelihood(model, guide, x, min(iwae_samples, EPOCH_IWAE_SAMPLES),
                               max_plate_nesting=model.max_plate_nesting)


def _epoch_iwae(model, guide, x, row, iwae_samples) -> float:
    return _epoch_iwae_and_stderr(model, guide, x, iwae_samples)[0]


def _one_continuous_site(model: LatentVariableModel) -> bool:
    """One continuous site under a prior the model gives, alone or beside a class y."""
    return collapse_applies(model) or label_collapse_applies(model)


def _surgery(model: LatentVariableModel) -> bool:
    """One p(z) for every point: the ELBO surgery's split of the KL term applies."""
    return surgery_applies(model) or label_collapse_applies(model)


def _exact_or_labels(model: LatentVariableModel) -> bool:
    return model.has_exact_log_likelihood or model.takes_labels


def _labels(model: LatentVariableModel) -> bool:
    return model.takes_labels


def _conditional(model: LatentVariableModel) -> bool:
    return model.conditional


def _test_accuracy(model, guide, x, row, k, labels) -> float:
    return accuracy(guide.classify(x), labels)


def _baseline_accuracy(model, guide, x, row, k, labels, classifier) -> float:
    with torch.no_grad():
        return accuracy(classifier(x), labels)


def _baseline_conditional_nll(model, guide, x, row, k) -> float:
    with torch.no_grad():
        return -model.baseline_log_likelihood(x).mean().item()


TEST_METRICS: Dict[str, Metric] = {
    "test_elbo": Metric(
        "test ELBO", "nats per example", "test ELBO", lambda model: True,
        lambda model, guide, x, row, k: mean_elbo(model, guide, x,
                                                  max_plate_nesting=model.max_plate_nesting)),
    "test_iwae": Metric(
        "test IWAE log p(x)", "nats per example", "test IWAE estimate of log p(x)",
        _exact_or_labels, _epoch_iwae),
    "test_exact_log_likelihood": Metric(
        "exact log p(x)", "nats per example", "test exact log p(x)", _exact,
        _exact_log_likelihood),
    "test_gap": Metric(
        "gap exact − ELBO", "estimates the mean KL(q(z|x) ‖ p(z|x))",
        "log p(x) − ELBO (Monte Carlo)", _exact,
        lambda model, guide, x, row, k: row["test_exact_log_likelihood"] - row["test_elbo"]),
    "test_posterior_kl": Metric(
        "KL(q ‖ p(z|x))", "exact, from the responsibilities", "KL(q(z|x) ‖ p(z|x)), exact",
        _discrete_exact_posterior, _posterior_kl),
    "test_active_units": Metric(
        "active units", "of d: Cov_x(E_q[z_j|x]) > 0.01 (Burda et al.)", "active latent units",
        _one_continuous_site, shared=collapse_metrics),
    "test_kl_to_prior": Metric(
        "KL(q(z|x) ‖ p(z))", "nats, mean over the test set", "KL(q(z|x) ‖ p(z))",
        _one_continuous_site, shared=collapse_metrics),
    "test_mutual_information": Metric(
        "I(x; z)", "nats, under q, with the aggregate posterior over the test set",
        "I(x; z) under q", _surgery, shared=collapse_metrics),
    "test_label_information": Metric(
        "I(y; z | x)", "nats, under q: what z says of the class beyond x",
        "I(y; z | x) under q", label_collapse_applies, shared=collapse_metrics),
    "test_marginal_kl": Metric(
        "KL(q(z) ‖ p(z))", "nats: the KL term less the information above (ELBO surgery)",
        "KL(q(z) ‖ p(z)), aggregate posterior", _surgery, shared=collapse_metrics),
    **{f"test_active_units_{layer}": Metric(
        f"active units {layer}", f"of d_{layer[1]}: Cov_x(E_q[{layer},j|x]) > 0.01",
        f"active latent units of {layer}", hierarchy_applies, shared=collapse_metrics)
       for layer in ("z1", "z2")},
    "test_kl_to_prior_z1": Metric(
        "KL term of z1", "nats: E_q[log q(z1|x) − log p(z1|z2)], Monte Carlo",
        "KL term of z1, E_q[log q(z1|x) − log p(z1|z2)]", hierarchy_applies,
        shared=collapse_metrics),
    "test_kl_to_prior_z2": Metric(
        "KL term of z2", "nats: E_q(z1|x)[KL(q(z2|z1) ‖ p(z2))]",
        "KL term of z2, E_q[KL(q(z2|z1) ‖ p(z2))]", hierarchy_applies, shared=collapse_metrics),
    "test_mutual_information_z2": Metric(
        "I(z1; z2)", "nats, under q over the z1 draws: ≥ I(x; z2)", "I(z1; z2) under q",
        hierarchy_applies, shared=collapse_metrics),
    "test_marginal_kl_z2": Metric(
        "KL(q(z2) ‖ p(z2))", "nats: KL term of z2 − I(z1; z2) (ELBO surgery)",
        "KL(q(z2) ‖ p(z2)), aggregate posterior", hierarchy_applies, shared=collapse_metrics),
    "test_accuracy": Metric(
        "test accuracy", "of argmax q(y|x) on the test labels", "q(y|x) (the model's classifier)",
        _labels, _test_accuracy, reads=("labels",)),
    "baseline_accuracy": Metric(
        "baseline accuracy", "of q(y|x)'s network trained on the labeled points alone",
        "the same network trained on the labeled points alone", _labels, _baseline_accuracy,
        reads=("labels", "classifier")),
    "test_conditional_nll": Metric(
        "conditional NLL", "−log p(x_h | x_v), importance-sampled, nats per example",
        "CVAE −log p(x_hidden | x_visible)", _conditional,
        lambda model, guide, x, row, k: -_epoch_iwae(model, guide, x, row, k),
        final=lambda summary: -summary["test_iwae"]),
    "test_conditional_nll_stderr": Metric(
        "cond. NLL stderr", "over test points", "standard error of the conditional NLL",
        _conditional, lambda model, guide, x, row, k: _epoch_iwae_and_stderr(
            model, guide, x, k)[1], final=lambda summary: summary["test_iwae_point_stderr"]),
    "baseline_conditional_nll": Metric(
        "baseline cond. NLL", "−log p(x_h | ŷ(x_v)) of the baseline network alone",
        "baseline network −log p(x_hidden | ŷ)", _conditional, _baseline_conditional_nll),
}


def metrics_on_test_set(model, guide, x: torch.Tensor, iwae_samples: int,
                        progress: bool = False, **inputs) -> Dict[str, float]:
    """Every metric of ``TEST_METRICS`` that ``model`` has and whose ``reads`` are among the
    ``inputs`` given, in order: the test ELBO; for a model with an exact log-likelihood the
    IWAE estimate with min(``iwae_samples``, ``EPOCH_IWAE_SAMPLES``) samples, the exact
    log-likelihood, the gap, and for a discrete z the exact mean KL(q(z|x) ‖ p(z|x)); for a
    model with labels the IWAE estimate and the test accuracies; for a conditional model the
    conditional NLLs. ``progress`` names each on a bar on stderr as it runs."""
    row: Dict[str, float] = {}
    passes: Dict[Callable, Dict[str, float]] = {}        # each shared pass, once
    names = [name for name, metric in TEST_METRICS.items()
             if metric.applies(model) and all(inputs.get(r) is not None for r in metric.reads)]
    with tqdm(names, desc="test metrics", leave=False, disable=not progress or len(names) < 2,
              file=sys.stderr) as bar:
        for name in bar:
            bar.set_postfix_str(TEST_METRICS[name].label, refresh=True)
            row[name] = _measure(TEST_METRICS[name], name, model, guide, x, row, iwae_samples,
                                 passes, inputs)
    return row


def _measure(metric: Metric, name: str, model, guide, x: torch.Tensor, row: dict,
             iwae_samples: int, passes: dict, inputs: dict) -> float:
    """One metric's value: read off its shared pass (run now if no metric before it ran it),
    or computed alone."""
    if metric.shared is None:
        wanted = {r: inputs[r] for r in metric.reads}
        return metric.compute(model, guide, x, row, iwae_samples, **wanted)
    if metric.shared not in passes:
        passes[metric.shared] = metric.shared(model, guide, x)
    return passes[metric.shared][name]


def final_metrics(summary: dict) -> Dict[str, float]:
    """The metrics whose summary value is computed from the summary's own numbers
    (``Metric.final``), for those the summary holds."""
    return {name: metric.final(summary) for name, metric in TEST_METRICS.items()
            if metric.final is not None and name in summary}


def scoring_guide(parts: Parts, x_test: torch.Tensor, final: bool = False,
                  progress: bool = False):
    """The guide that scores the test set: the trained one's ``scoring_guide()`` if amortized,
    else per-point parameters fitted to the test set with the model fixed
    (``experiments.evaluation.refine``): after every epoch a fit that stops once it gains less
    than 0.01 nats per point (``EPOCH_REFIT``), for the summary (``final``) a closer one
    (``FINAL_REFIT``). ``progress`` shows the fit's bar on stderr."""
    if parts.guide.amortized:
        return parts.guide.scoring_guide()
    return fit_local_posterior(parts.model, x_test, progress=progress,
                               schedule=FINAL_REFIT if final else EPOCH_REFIT)
