"""Gradient estimators side by side: the spread of their one-sample draws."""
from pathlib import Path
from typing import Dict

import matplotlib.pyplot as plt
import numpy as np
import torch

from experiments.figures.common import save_figure


def plot_gradient_draws(draws: Dict[str, torch.Tensor], true_gradient: float, title: str,
                        path: Path) -> Path:
    """A histogram of each estimator's one-sample draws on common bins, with its standard
    deviation, and the true gradient as a vertical line."""
    values = {name: d.cpu().numpy() for name, d in draws.items()}
    low, high = np.percentile(np.concatenate(list(values.values())), [0.5, 99.5])
    bins = np.linspace(low, high, 120)        # the 1% most extreme draws fall off the axis
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for (name, v), color in zip(values.items(), ("tab:red", "tab:orange", "tab:blue")):
        ax.hist(v, bins=bins, density=True, histtype="stepfilled", alpha=0.45, color=color,
                label=f"{name}: sd {v.std():.2f}")
    ax.axvline(true_gradient, color="black", lw=1.2, ls="--",
               label=f"true gradient {true_gradient:g}")
    ax.set_xlabel(f"one-sample estimate of the gradient ({len(v)} draws each; the 1% most "
                  "extreme of all draws lie outside the axis)")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
