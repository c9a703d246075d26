"""Figures of a Gaussian mixture: the data with the learned density, its components and the true
density, and the guide's q(z|x) against the exact responsibilities p(z|x)."""
from pathlib import Path
from typing import List, Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse

from experiments.data.datasets import Dataset
from experiments.evaluation.diagnostics import posterior_kl
from experiments.evaluation.likelihood import guide_distribution
from experiments.figures.common import save_figure
from models.gmm import GaussianMixture

#: components' colours: tab10 without its red (the true density p*) and grey (the data)
PALETTE = [plt.get_cmap("tab10")(i) for i in (0, 1, 2, 4, 5, 6, 8, 9)]
TRUTH_COLOR = "tab:red"


def component_color(n: int):
    """The colour of component n (cycling), never the truth's or the data's."""
    return PALETTE[n % len(PALETTE)]


def plot_mixture_figures(model: GaussianMixture, guide, data: Dataset,
                         run_dir: Path) -> List[Path]:
    """density.png (data of dimension 1 or 2) and posterior.png, for a mixture of Gaussians."""
    if not model.mixture_of_gaussians:
        return []
    written = []
    if data.data_dim in (1, 2):
        plot = plot_density_1d if data.data_dim == 1 else plot_density_2d
        written.append(plot(model, data, run_dir / "density.png"))
    written.append(plot_responsibilities(model, guide, data, run_dir / "posterior.png"))
    return written


def _axis(x: torch.Tensor, points: int) -> torch.Tensor:
    """``points`` values spanning x (N,) with a margin of a tenth of its range on each side."""
    low, high = x.min().item(), x.max().item()
    margin = 0.1 * (high - low)
    return torch.linspace(low - margin, high + margin, points, dtype=x.dtype, device=x.device)


def _component_label(model: GaussianMixture, n: int) -> str:
    def values(t: torch.Tensor) -> str:
        text = ", ".join(f"{v:.2f}" for v in t.tolist())
        return text if len(t) == 1 else f"({text})"

    return (f"component {n + 1}: λ={model.weights[n].item():.2f}, μ={values(model.locs[n])}, "
            f"σ={values(model.scales[n])}")


def plot_density_1d(model: GaussianMixture, data: Dataset, path: Path) -> Path:
    """A histogram of the training data under the learned p(x) = Σ_n λ_n N(x | μ_n, σ_n²), its
    weighted components λ_n N(x | μ_n, σ_n²), and the true density p*(x) where it is known."""
    grid = _axis(data.x_train[:, 0], 800).unsqueeze(-1)                       # (G, 1)
    with torch.no_grad():
        joint = model.log_joint(grid).exp().cpu().numpy()                    # (G, K)
    x = grid[:, 0].cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(data.x_train[:, 0].cpu().numpy(), bins=80, density=True, color="0.82",
            label=f"training data ({len(data.x_train)} points)")
    for n in range(model.components):
        ax.plot(x, joint[:, n], color=component_color(n), linestyle=":", linewidth=1.5,
                label=_component_label(model, n))
    ax.plot(x, joint.sum(-1), color="black", linewidth=2, label="learned p(x)")
    if data.truth is not None:
        ax.plot(x, data.truth.log_prob(grid.cpu()).exp().numpy(), color=TRUTH_COLOR,
                linestyle="--", linewidth=1.5, label="true p*(x)")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(f"Gaussian mixture of {model.components}: data, learned and true density")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_density_2d(model: GaussianMixture, data: Dataset, path: Path, points: int = 200) -> Path:
    """Training points under contours of the learned p(x) (solid) and the true p*(x) (dashed) at
    the same levels, with each component's mean and its 2σ ellipse."""
    x = data.x_train
    a, b = _axis(x[:, 0], points), _axis(x[:, 1], points)
    mesh = torch.stack(torch.meshgrid(a, b, indexing="xy"), dim=-1)           # (P, P, 2)
    with torch.no_grad():
        learned = model.exact_log_likelihood(mesh.reshape(-1, 2)).exp().reshape(points, points)
    levels = learned.max().item() * np.array([0.02, 0.1, 0.3, 0.6])
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    shown = x[:3000].cpu().numpy()
    ax.scatter(shown[:, 0], shown[:, 1], s=3, color="0.6", alpha=0.5)
    ax.contour(a.cpu(), b.cpu(), learned.cpu(), levels=levels, colors="black", linewidths=1.2)
    handles = [Line2D([], [], marker="o", linestyle="", color="0.6",
                      label=f"training data ({len(shown)} of {len(x)} points)"),
               Line2D([], [], color="black", label="learned p(x)")]
    if data.truth is not None:
        true = data.truth.log_prob(mesh.reshape(-1, 2).cpu()).exp().reshape(points, points)
        ax.contour(a.cpu(), b.cpu(), true, levels=levels, colors=TRUTH_COLOR, linestyles="--",
                   linewidths=1.2)
        handles.append(Line2D([], [], color=TRUTH_COLOR, linestyle="--", label="true p*(x)"))
    for n in range(model.components):
        (mx, my), (sx, sy) = model.locs[n].tolist(), model.scales[n].tolist()
        ax.add_patch(Ellipse((mx, my), 4 * sx, 4 * sy, fill=False, color=component_color(n),
                             linewidth=2))
        ax.plot(mx, my, marker="x", color=component_color(n), markersize=9, mew=2)
        handles.append(Line2D([], [], color=component_color(n), marker="x", linewidth=2,
                              label=_component_label(model, n)))
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(f"Gaussian mixture of {model.components}: contours at the same levels, "
                 "components as mean and 2σ ellipse", fontsize=10)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, path)


def plot_responsibilities(model: GaussianMixture, guide, data: Dataset, path: Path) -> Path:
    """q(z = n | x) against the exact p(z = n | x) = λ_n N(x | μ_n, σ_n²) / p(x): as curves
    across x in one dimension, else as a scatter over the test points (exact on the diagonal)."""
    site = next(iter(model.latent_sites))
    x = (_axis(data.x_train[:, 0], 800).unsqueeze(-1) if data.data_dim == 1
         else data.x_test[:2000])
    with torch.no_grad():
        exact = model.exact_posterior(x).cpu().numpy()                        # (N, K)
    q = guide_distribution(guide, x, site)
    q_probs: Optional[np.ndarray] = None if q is None else q.probs.cpu().numpy()
    subtitle = ("the enum guide samples no z: its q(z|x) is p(z|x) exactly" if q is None else
                f"mean KL(q(z|x) ‖ p(z|x)) over these x: "
                f"{posterior_kl(model, guide, x, site):.4f} nats")
    fig, ax = plt.subplots(figsize=(8, 4.5) if data.data_dim == 1 else (6, 6))
    if data.data_dim == 1:
        _responsibility_curves(ax, x[:, 0].cpu().numpy(), exact, q_probs)
    else:
        _responsibility_scatter(ax, exact, q_probs)
    ax.set_title(f"q(z|x) against the exact posterior p(z|x)\n{subtitle}", fontsize=10)
    return save_figure(fig, path)


def _responsibility_curves(ax, x: np.ndarray, exact: np.ndarray, q: Optional[np.ndarray]) -> None:
    for n in range(exact.shape[1]):
        ax.plot(x, exact[:, n], color=component_color(n), linewidth=2,
                label=f"p(z={n + 1}|x), exact")
        if q is not None:
            ax.plot(x, q[:, n], color=component_color(n), linestyle="--", linewidth=1.5,
                    label=f"q(z={n + 1}|x), guide")
    ax.set_xlabel("x")
    ax.set_ylabel("probability of component n")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _responsibility_scatter(ax, exact: np.ndarray, q: Optional[np.ndarray]) -> None:
    q = exact if q is None else q
    for n in range(exact.shape[1]):
        ax.scatter(exact[:, n], q[:, n], s=6, alpha=0.5, color=component_color(n),
                   label=f"component {n + 1}")
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, label="q = p")
    ax.set_xlabel("exact p(z = n | x) at a test point")
    ax.set_ylabel("guide q(z = n | x)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
