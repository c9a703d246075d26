"""The inference gaps as one stacked bar: log p(x) − amortized ELBO split in two."""
from pathlib import Path

import matplotlib.pyplot as plt

from experiments.figures.common import save_figure


def plot_gaps(gaps: dict, title: str, path: Path) -> Path:
    """From the amortized ELBO up: the amortization gap, then the approximation gap, reaching
    log p(x). Heights in nats per point."""
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    approx, amort = gaps["approximation_gap"], gaps["amortization_gap"]
    ax.bar([0], [amort], width=0.5, color="tab:orange",
           label=f"amortization gap  {amort:.3f}")
    ax.bar([0], [approx], bottom=[amort], width=0.5, color="tab:blue",
           label=f"approximation gap {approx:.3f}")
    ax.set_xticks([0], [f"{gaps['num_points']} test points"])
    ax.set_xlim(-0.8, 0.8)
    ax.set_ylabel("nats per point above the amortized ELBO")
    ax.set_title(f"inference gaps\n{title}", fontsize=10)
    ax.axhline(amort + approx, color="black", lw=0.8, ls="--",
               label=f"log p(x) − amortized ELBO = {amort + approx:.3f}")
    handles, labels = ax.get_legend_handles_labels()          # top of the stack first
    order = [labels.index(name) for name in sorted(labels, key=lambda n: (
        not n.startswith("log p"), not n.startswith("approx")))]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8,
              loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
