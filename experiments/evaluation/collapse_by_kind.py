"""The collapse diagnostics of any model with continuous latents, by its kind, from one pass:

- one continuous site z under p(z) or p(z|x_v) (the vae, the cvae): ``collapse``;
- a class y beside a continuous z (the ssvae), exact in y: ``label_collapse``;
- two continuous layers z₁, z₂ (the hvae), layer by layer: ``hierarchy_collapse``.

Every number of a kind comes from the same draws (one seeded stream), so the per-epoch metrics
that read them (``experiments.evaluation.metrics``) cost one pass, not one each.
"""
from typing import Callable, Dict, Optional

import torch

from experiments.evaluation.collapse import collapse_diagnostics
from experiments.evaluation.hierarchy_collapse import hierarchy_applies, hierarchy_diagnostics
from experiments.evaluation.label_collapse import label_collapse_applies, label_diagnostics
from experiments.parts.kl_per_unit import collapse_applies

#: the metric (a column of metrics.csv, a key of summary.json) → the diagnostics' key
METRIC_KEYS = {
    "test_active_units": "active_units", "test_kl_to_prior": "kl",
    "test_mutual_information": "mutual_information",
    "test_label_information": "label_information", "test_marginal_kl": "marginal_kl",
    **{f"test_{name}_{layer}": f"{key}_{layer}" for layer in ("z1", "z2")
       for name, key in (("active_units", "active_units"), ("kl_to_prior", "kl"))},
    "test_mutual_information_z2": "mutual_information_z2",
    "test_marginal_kl_z2": "marginal_kl_z2",
}


def diagnostics_of(model) -> Optional[Callable[..., Dict]]:
    """The diagnostics that fit ``model``'s kind, ``(model, guide, x) → dict``, or None (a
    model with discrete latents only)."""
    if hierarchy_applies(model):
        return hierarchy_diagnostics
    if label_collapse_applies(model):
        return label_diagnostics
    if collapse_applies(model):
        return collapse_diagnostics
    return None


def collapse_metrics(model, guide, x: torch.Tensor) -> Dict[str, float]:
    """The kind's diagnostics on the test set x, one pass, keyed by metric name."""
    found = diagnostics_of(model)(model, guide, x)
    return {name: float(found[key]) for name, key in METRIC_KEYS.items() if key in found}


def kl_per_dimension(model, guide, x: torch.Tensor) -> Dict[str, list]:
    """The KL per unit for the summary, {"kl_per_dimension": […]} (``_z1`` and ``_z2`` for
    each layer of a hierarchy), or {} where it is not defined (discrete latents only, or q or
    p not factorized)."""
    diagnostics = diagnostics_of(model)
    if diagnostics is None:
        return {}
    found = diagnostics(model, guide, x)
    return {key: value for key, value in found.items() if key.startswith("kl_per_dimension")}
