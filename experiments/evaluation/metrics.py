"""The numbers measured on the test set after every epoch, each declared once.

A metric is a column of metrics.csv and a key of summary.json; the run's printed summary shows
it under ``label``, its figures under ``legend``, and a comparison averages it over seeds. A new
metric is one entry of ``TEST_METRICS``: its labels, which models have it (read from what the
model declares), and how it is computed from the model, the guide that scores the test set,
the test data and the row measured so far.
"""
import sys
from dataclasses import dataclass
from typing import Callable, Dict

import torch
from tqdm import tqdm

from experiments.evaluation.diagnostics import posterior_kl
from experiments.evaluation.likelihood import iwae_log_likelihood, mean_elbo
from experiments.evaluation.refine import EPOCH_REFIT, FINAL_REFIT, fit_local_posterior
from experiments.parts.build import Parts
from models import LatentVariableModel

#: samples of the per-epoch IWAE estimate at most (the summary's uses all of ``--iwae-samples``)
EPOCH_IWAE_SAMPLES = 100


@dataclass(frozen=True)
class Metric:
    """One number per epoch on the test set, in nats per example.

    :param label: its name in the run's printed summary (18 characters at most).
    :param note: what the printed value is.
    :param legend: its name in figures.
    :param applies: whether a model has it.
    :param compute: ``compute(model, guide, x, row, iwae_samples)``, where ``row`` holds the
        metrics listed before this one.
    """

    label: str
    note: str
    legend: str
    applies: Callable[[LatentVariableModel], bool]
    compute: Callable[..., float]


def _exact(model: LatentVariableModel) -> bool:
    return model.has_exact_log_likelihood


def _discrete_exact_posterior(model: LatentVariableModel) -> bool:
    (site,) = model.latent_sites.values()
    return model.has_exact_posterior and site.discrete


def _exact_log_likelihood(model, guide, x, row, iwae_samples) -> float:
    with torch.no_grad():
        return model.exact_log_likelihood(x).mean().item()


def _epoch_iwae(model, guide, x, row, iwae_samples) -> float:
    return iwae_log_likelihood(model, guide, x, min(iwae_samples, EPOCH_IWAE_SAMPLES),
                               max_plate_nesting=model.max_plate_nesting)[0]


TEST_METRICS: Dict[str, Metric] = {
    "test_elbo": Metric(
        "test ELBO", "nats per example", "test ELBO", lambda model: True,
        lambda model, guide, x, row, k: mean_elbo(model, guide, x,
                                                  max_plate_nesting=model.max_plate_nesting)),
    "test_iwae": Metric(
        "test IWAE log p(x)", "nats per example", "test IWAE estimate of log p(x)", _exact,
        _epoch_iwae),
    "test_exact_log_likelihood": Metric(
        "exact log p(x)", "nats per example", "test exact log p(x)", _exact,
        _exact_log_likelihood),
    "test_gap": Metric(
        "gap exact − ELBO", "estimates the mean KL(q(z|x) ‖ p(z|x))",
        "log p(x) − ELBO (Monte Carlo)", _exact,
        lambda model, guide, x, row, k: row["test_exact_log_likelihood"] - row["test_elbo"]),
    "test_posterior_kl": Metric(
        "KL(q ‖ p(z|x))", "exact, from the responsibilities", "KL(q(z|x) ‖ p(z|x)), exact",
        _discrete_exact_posterior,
        lambda model, guide, x, row, k: posterior_kl(model, guide, x,
                                                     next(iter(model.latent_sites)))),
}


def metrics_on_test_set(model, guide, x: torch.Tensor, iwae_samples: int,
                        progress: bool = False) -> Dict[str, float]:
    """Every metric of ``TEST_METRICS`` that ``model`` has, in order: the test ELBO, and for a
    model with an exact log-likelihood the IWAE estimate with min(``iwae_samples``,
    ``EPOCH_IWAE_SAMPLES``) samples, the exact log-likelihood, the gap, and for a discrete z the
    exact mean KL(q(z|x) ‖ p(z|x)). ``progress`` names each on a bar on stderr as it runs."""
    row: Dict[str, float] = {}
    names = [name for name, metric in TEST_METRICS.items() if metric.applies(model)]
    with tqdm(names, desc="test metrics", leave=False, disable=not progress or len(names) < 2,
              file=sys.stderr) as bar:
        for name in bar:
            bar.set_postfix_str(TEST_METRICS[name].label, refresh=True)
            row[name] = TEST_METRICS[name].compute(model, guide, x, row, iwae_samples)
    return row


def scoring_guide(parts: Parts, x_test: torch.Tensor, final: bool = False,
                  progress: bool = False):
    """The guide that scores the test set: the trained one's ``scoring_guide()`` if amortized,
    else per-point parameters fitted to the test set with the model fixed
    (``experiments.evaluation.refine``): after every epoch a fit that stops once it gains less
    than 0.01 nats per point (``EPOCH_REFIT``), for the summary (``final``) a closer one
    (``FINAL_REFIT``). ``progress`` shows the fit's bar on stderr."""
    if parts.guide.amortized:
        return parts.guide.scoring_guide()
    return fit_local_posterior(parts.model, x_test, schedule=FINAL_REFIT if final else EPOCH_REFIT,
                               progress=progress)
