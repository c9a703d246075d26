"""The figures of a finished run, each written atomically into the run folder as a PNG."""
from pathlib import Path
from typing import List

from experiments.data.datasets import Dataset
from experiments.figures.common import plot_bounds, plot_training_curves
from experiments.figures.images import plot_autoencoder_figures
from experiments.figures.lvm import plot_lvm_figures
from experiments.figures.mixture import plot_mixture_figures

#: each model's own figures, by the name users type: f(model, guide, data, run_dir) → paths
MODEL_FIGURES = {
    "vae": plot_autoencoder_figures,
    "gmm": plot_mixture_figures,
    "lvm": plot_lvm_figures,
    "ppca": plot_lvm_figures,
}


def plot_run_figures(model_name: str, model, guide, data: Dataset, metrics: List[dict],
                     summary: dict, run_dir: Path) -> List[Path]:
    """elbo.png for every run, bounds.png where log p(x) is exact, and the model's own."""
    written = [plot_training_curves(metrics, run_dir / "elbo.png")]
    if "test_exact_log_likelihood" in metrics[-1]:
        written.append(plot_bounds(metrics, run_dir / "bounds.png",
                                   ceiling=summary.get("true_log_likelihood")))
    if model_name in MODEL_FIGURES:
        written += MODEL_FIGURES[model_name](model, guide, data, run_dir)
    return written

