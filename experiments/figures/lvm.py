"""Figures of a model with a decoder and a continuous z of one or two dimensions (``lvm``,
``ppca``): the learned curve f(z) and samples against two-dimensional data, where p(x|z) is
always Gaussian, and q(z|x) against p(z|x), where the posterior is exact."""
from pathlib import Path
from typing import List

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D

from experiments.common.rng import isolated_rng
from experiments.data.datasets import Dataset
from experiments.evaluation.likelihood import EVAL_SEED, guide_distribution
from experiments.figures.common import save_figure
from models.vae import VAE

Z_SPAN = 3.0   # f(z) is drawn over [−3, 3]^d, where p(z) puts 99.7% of each coordinate's mass
MOMENT_SAMPLES = 4000   # draws of q(z|x) behind the mean and spread that frame each panel


def plot_lvm_figures(model: VAE, guide, data: Dataset, run_dir: Path) -> List[Path]:
    """curve.png (two-dimensional data, p(x|z) = N(f(z), σ² I)) and posterior.png (an exact
    posterior), for a model with a decoder and a continuous z of dimension 1 or 2."""
    if not model.has_decoder or len(model.latent_sites) != 1:
        return []
    (site,) = model.latent_sites.values()
    if site.discrete or site.size > 2:
        return []
    written = []
    if data.data_dim == 2 and model.fixed_likelihood == "gaussian":
        written.append(plot_curve(model, data, run_dir / "curve.png"))
    if model.has_exact_posterior and model.has_exact_log_likelihood:
        written.append(plot_posteriors(model, guide, data.x_test[:4], run_dir / "posterior.png"))
    return written


def plot_curve(model: VAE, data: Dataset, path: Path, num_samples: int = 2000) -> Path:
    """Left, the test data with the learned mean f(z) over a grid of z (a curve for d = 1, a
    warped mesh for d = 2); right, the data with samples z ~ p(z), x ~ N(f(z), σ² I)."""
    x = data.x_test.cpu().numpy()
    with torch.no_grad(), isolated_rng(EVAL_SEED, data.x_test.device):
        z = model.prior(data.x_test).sample((num_samples,))
        samples = model.likelihood(model.decoder(z)).sample().cpu().numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5), sharex=True, sharey=True)
    for ax in (left, right):
        ax.scatter(x[:, 0], x[:, 1], s=4, color="0.7", label=f"test data ({len(x)} points)")
        ax.set_aspect("equal")
        ax.set_xlabel("x₁")
        ax.grid(alpha=0.3)
    left.set_ylabel("x₂")
    _draw_decoder(left, model, data.x_test)
    left.set_title(f"learned mean f(z) for z in [−{Z_SPAN:g}, {Z_SPAN:g}]"
                   + ("" if model.latent_dim == 1 else "²"))
    right.scatter(samples[:, 0], samples[:, 1], s=4, color="tab:blue", alpha=0.5,
                  label=f"model samples ({num_samples})")
    sigma = model.likelihood.scale.item()
    right.set_title(f"samples: z ~ p(z), x ~ N(f(z), σ²I), σ = {sigma:.3f}")
    right.legend(loc="upper right", fontsize=8, markerscale=3)
    return save_figure(fig, path)


def _draw_decoder(ax, model: VAE, like: torch.Tensor, points: int = 400, lines: int = 13) -> None:
    """f over a line of z coloured by z (d = 1), or over lines of constant z₁ and of constant z₂
    (d = 2)."""
    axis = torch.linspace(-Z_SPAN, Z_SPAN, points, dtype=like.dtype, device=like.device)
    with torch.no_grad():
        if model.latent_dim == 1:
            f = model.decoder(axis.unsqueeze(-1)).cpu().numpy()
            ax.scatter(f[:, 0], f[:, 1], c=axis.cpu().numpy(), cmap="viridis", s=6,
                       label=f"f(z), purple at z = −{Z_SPAN:g} to yellow at z = {Z_SPAN:g}")
            ax.legend(loc="upper right", fontsize=8, markerscale=3)
            return
        for k, level in enumerate(torch.linspace(-Z_SPAN, Z_SPAN, lines).tolist()):
            for fixed, color in ((0, "tab:orange"), (1, "tab:purple")):
                z = torch.stack([axis, axis], dim=-1)
                z[:, fixed] = level
                f = model.decoder(z).cpu().numpy()
                ax.plot(f[:, 0], f[:, 1], color=color, linewidth=0.9, alpha=0.8)
    ax.legend(handles=[Line2D([], [], marker="o", linestyle="", color="0.7", label="test data"),
                       Line2D([], [], color="tab:orange", label="f(z) along z₂, z₁ fixed"),
                       Line2D([], [], color="tab:purple", label="f(z) along z₁, z₂ fixed")],
              loc="upper right", fontsize=8)


def plot_posteriors(model: VAE, guide, x: torch.Tensor, path: Path, points: int = 200) -> Path:
    """For each row x_i of x, the exact p(z | x_i) = p(x_i, z) / p(x_i) and the guide's
    q(z | x_i), on a grid spanning both (mean ± 4 standard deviations of each); for z ∈ R² a
    square window with equal scales on z₁ and z₂, so that shapes and tilts read true."""
    site = next(iter(model.latent_sites))
    with torch.no_grad(), isolated_rng(EVAL_SEED, x.device):
        exact, q = model.exact_posterior(x), guide_distribution(guide, x, site)
        log_px = model.exact_log_likelihood(x)
        q_draws = q.sample((MOMENT_SAMPLES,))    # q's moments, also where it has no closed form
    fig, axes = plt.subplots(1, len(x), figsize=(4.2 * len(x), 4.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        centres = torch.stack([exact.mean[i], q_draws[:, i].mean(0)])            # (2, d)
        spreads = 4 * torch.stack([exact.variance[i].sqrt(), q_draws[:, i].std(0)])
        low, high = (centres - spreads).min(0).values, (centres + spreads).max(0).values
        middle, half = (low + high) / 2, ((high - low) / 2).max()      # the widest span, for all
        low, high = middle - half, middle + half
        axes_z = [torch.linspace(lo, hi, points, dtype=x.dtype, device=x.device)
                  for lo, hi in zip(low.tolist(), high.tolist())]
        z = torch.stack([a.reshape(-1) for a in torch.meshgrid(*axes_z, indexing="xy")], -1)
        with torch.no_grad():
            p_density = (model.log_joint(x[i:i + 1], z)[0] - log_px[i]).exp().cpu()
            q_density = q.log_prob(z.unsqueeze(-2))[:, i].exp().cpu()
        if model.latent_dim == 1:
            ax.plot(axes_z[0].cpu(), p_density, color="black", linewidth=2, label="exact p(z|x)")
            ax.plot(axes_z[0].cpu(), q_density, color="tab:orange", linestyle="--",
                    linewidth=2, label="guide q(z|x)")
            ax.set_xlabel("z")
            ax.set_ylabel("density")
            ax.legend(fontsize=8)
        else:
            a, b = axes_z[0].cpu(), axes_z[1].cpu()
            density = p_density.reshape(points, points)
            levels = density.max().item() * np.linspace(0.02, 1.0, 12)     # white below 2%
            ax.contourf(a, b, density, levels=levels, cmap="Blues")
            q_grid = q_density.reshape(points, points)
            ax.contour(a, b, q_grid, levels=q_grid.max().item() * np.linspace(0.1, 0.9, 5),
                       colors="tab:orange", linewidths=1.2)      # 10% … 90% of q's peak
            ax.set_aspect("equal")
            ax.set_xlabel("z₁")
            ax.set_ylabel("z₂")
            ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="tab:blue", alpha=0.6,
                                             label="exact p(z|x)"),
                               Line2D([], [], color="tab:orange", label="guide q(z|x)")],
                      fontsize=8, loc="upper right")
        shown = ", ".join(f"{v:.2f}" for v in x[i].tolist()[:3])
        ax.set_title(f"x = ({shown}{', …' if x.shape[1] > 3 else ''})\n"
                     f"log p(x) = {log_px[i].item():.3f}", fontsize=10)
    fig.suptitle("exact posterior p(z|x) against the guide's q(z|x) at test points", y=1.02)
    fig.tight_layout()
    return save_figure(fig, path)
