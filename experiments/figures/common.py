"""What every run's figures share: saving atomically, and the training curves."""
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib.pyplot as plt

from experiments.runs import write_atomically


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG through a temporary file, then close it."""
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110,
                                                 bbox_inches="tight"), binary=True)
    plt.close(fig)
    return path


def plot_training_curves(metrics: List[Dict[str, float]], path: Path,
                         columns: Sequence[str] = ("train_elbo", "test_elbo"),
                         title: str = "ELBO per epoch") -> Path:
    """One line per metric column against the epoch, in nats per example (higher is better)."""
    labels = {"train_elbo": "train ELBO", "test_elbo": "test ELBO",
              "test_iwae": "test IWAE estimate of log p(x)",
              "test_exact_log_likelihood": "test exact log p(x)"}
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [row["epoch"] for row in metrics]
    for column in columns:
        values = [row[column] for row in metrics if row.get(column) not in (None, "")]
        if values:
            ax.plot(epochs[-len(values):], values, marker="o" if len(values) < 30 else None,
                    markersize=3, label=labels.get(column, column))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example (higher is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
