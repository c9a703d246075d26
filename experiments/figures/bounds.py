"""The ELBO's gap seen per data point, and the bounds between the ELBO and log p(x)."""
from pathlib import Path
from typing import Dict, List, Tuple

import matplotlib.pyplot as plt
import numpy as np
import torch

from experiments.figures.common import save_figure


def plot_gap_against_kl(panels: List[Tuple[str, torch.Tensor, torch.Tensor]],
                        path: Path) -> Path:
    """One panel per (title, gap, kl): each test point x_i at (KL(q(z|x_i) ‖ p(z|x_i)),
    log p(x_i) − ELBO(x_i)), computed by two independent routes, against the line gap = KL."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    for ax, (title, gap, kl) in zip(axes[0], panels):
        gap, kl = gap.cpu().numpy(), kl.cpu().numpy()
        top = max(gap.max(), kl.max()) * 1.05
        bottom = min(0.0, gap.min(), kl.min())
        ax.plot([bottom, top], [bottom, top], color="black", lw=1, label="gap = KL")
        ax.scatter(kl, gap, s=8, alpha=0.6, color="tab:blue",
                   label=f"{len(gap)} test points")
        ax.set_xlim(bottom, top)
        ax.set_ylim(bottom, top)
        ax.set_aspect("equal")
        ax.set_xlabel("KL(q(z|x) ‖ p(z|x)), nats")
        ax.set_ylabel("log p(x) − ELBO(x), nats")
        ax.set_title(f"{title}\nmean gap {gap.mean():.4f}, mean KL {kl.mean():.4f}",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bounds_against_k_and_alpha(iwae: Dict[int, float], renyi: Dict[float, float],
                                    exact: float, title: str, path: Path) -> Path:
    """Left, the IWAE bound L_K against K (log scale); right, the Rényi bound L_α against α;
    both under the exact log p(x), in nats per test point."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    ks = sorted(iwae)
    left.plot(ks, [iwae[k] for k in ks], marker="o", color="tab:blue", label="IWAE bound L_K")
    left.set_xscale("log")
    left.set_xlabel("K, importance samples per point (L₁ is the ELBO)")
    left.set_ylabel("nats per test point")
    alphas = sorted(renyi)
    right.plot(alphas, [renyi[a] for a in alphas], marker="o", color="tab:purple",
               label="Rényi bound L_α")
    right.set_xlabel("α (at 1 the ELBO; at 0 the IWAE estimate with all the samples)")
    for ax, corner in ((left, "lower right"), (right, "lower left")):  # away from each curve
        ax.axhline(exact, color="black", ls="--", lw=1, label=f"exact log p(x) = {exact:.3f}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc=corner)
    right.set_xticks(np.linspace(0, 1, 6))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
