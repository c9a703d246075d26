"""The figures of a finished run, each written atomically into the run folder as a PNG, chosen
from what the model declares (its traits, ``models.base.LatentVariableModel``), never from its
name:

    elbo.png                      every run
    bounds.png                    an exact log-likelihood
    reconstructions.png, samples.png (manifold.png for z ∈ R²)
                                  a decoder, on image data
    latent.png                    a decoder: its codes on the test set
    density.png, posterior.png    a mixture of Gaussians
    curve.png, posterior.png      a decoder with z of dimension 1 or 2 (curve: Gaussian p(x|z)
                                  on 2-d data; posterior: an exact posterior)
    accuracy.png                  labels (``takes_labels``); style.png on image data
    completions.png               a conditional model (``conditional``), on image data
    kl_per_dimension.png          one continuous latent site, q and p factorized; the hvae
                                  (one panel per layer)
"""
from pathlib import Path
from typing import Callable, List, Tuple

from experiments.data.datasets import Dataset
from experiments.figures.collapse import plot_kl_per_dimension
from experiments.figures.common import plot_bounds, plot_training_curves
from experiments.figures.completions import plot_completion_figures
from experiments.figures.images import plot_image_figures, plot_latent_codes
from experiments.figures.labels import plot_accuracy, plot_label_figures
from experiments.figures.lvm import plot_lvm_figures
from experiments.figures.mixture import plot_mixture_figures

#: the model's own figures: each draws what the model's traits and the data allow (maybe none)
MODEL_FIGURES: Tuple[Callable[..., List[Path]], ...] = (
    plot_image_figures,
    plot_latent_codes,
    plot_mixture_figures,
    plot_lvm_figures,
    plot_label_figures,
    plot_completion_figures,
    plot_kl_per_dimension,
)


def plot_run_figures(model, guide, data: Dataset, metrics: List[dict], summary: dict,
                     run_dir: Path) -> List[Path]:
    """elbo.png for every run, bounds.png where log p(x) is exact, accuracy.png where the
    model takes labels, and the model's own."""
    objective = summary.get("train_objective", "ELBO")
    written = [plot_training_curves(metrics, run_dir / "elbo.png", objective=objective,
                                    title="ELBO per epoch" if objective == "ELBO" else
                                    f"train {objective} and test ELBO per epoch")]
    if model.has_exact_log_likelihood:
        written.append(plot_bounds(metrics, run_dir / "bounds.png",
                                   ceiling=summary.get("true_log_likelihood")))
    if model.takes_labels and any(row.get("test_accuracy") is not None for row in metrics):
        written.append(plot_accuracy(metrics, run_dir / "accuracy.png"))
    for draw in MODEL_FIGURES:
        written += draw(model, guide, data, run_dir)
    return written
