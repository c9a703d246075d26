"""Figures of a finished run, each written atomically into the run folder as a PNG."""
import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed

from experiments.figures.common import plot_training_curves, save_figure  # noqa: E402
from experiments.figures.images import plot_autoencoder_figures  # noqa: E402

__all__ = ["plot_training_curves", "plot_autoencoder_figures", "save_figure"]
