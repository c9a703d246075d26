"""Figures of a model with a decoder (``has_decoder``): on image data, reconstructions,
ancestral samples and, for a continuous z ∈ R², the decoded manifold; on any data, its codes
z on the test set."""
from pathlib import Path
from typing import Callable, List, Optional

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from pyro import poutine
from scipy.stats import norm
from sklearn.decomposition import PCA

from experiments.data.datasets import Dataset
from experiments.figures.common import save_figure
from models.networks import image_channels_first


def posterior_samples(guide: Callable, x: torch.Tensor, site: str,
                      num_samples: int = 1) -> torch.Tensor:
    """z ~ q(z|x) for every row of x, shape (num_samples, N, *event_shape), for any guide."""
    with torch.no_grad(), pyro.plate("figure_particles", num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(x)
    value = trace.nodes[site]["value"]
    return value.expand(num_samples, *value.shape[-(1 + len(trace.nodes[site]["fn"].event_shape)):])


def plot_image_figures(model, guide, data: Dataset, run_dir: Path) -> List[Path]:
    """reconstructions.png and samples.png for a model with a decoder on image data, and
    manifold.png where z is continuous in two dimensions."""
    if not model.has_decoder or data.image_shape is None:
        return []
    x_test, image_shape = data.x_test, data.image_shape
    site = next(iter(model.latent_sites.values()))            # the code x is drawn from
    written = [plot_reconstructions(model, guide, x_test[:10], site.name, image_shape,
                                    run_dir / "reconstructions.png"),
               plot_samples(model, image_shape, run_dir / "samples.png", x_test)]
    if len(model.latent_sites) == 1 and site.size == 2 and not site.discrete:
        written.append(plot_manifold(model, image_shape, run_dir / "manifold.png", x_test))
    return written


def plot_latent_codes(model, guide, data: Dataset, run_dir: Path) -> List[Path]:
    """latent.png for a model with a decoder: the means of q(z|x) on the test set."""
    if not model.has_decoder:
        return []
    site = next(iter(model.latent_sites.values()))            # the code x is drawn from
    z_mean = posterior_samples(guide, data.x_test[:2000], site.name, num_samples=16).mean(0)
    z_mean = z_mean.flatten(1)                  # one-hot codes (N, L, C) are read as L·C numbers
    labels = None if data.y_test is None else data.y_test[:2000]
    return [plot_latent(z_mean, labels, run_dir / "latent.png")]


def _image_grid(images: np.ndarray, rows: int, cols: int, shape, gap: int = 1) -> np.ndarray:
    """(rows·cols, C·H·W) images of ``shape`` (C, H, W) or (H, W) → one mosaic of rows × cols
    images, ``gap`` grey pixels between them: (rows·(H+gap) − gap, cols·(W+gap) − gap) for grey
    levels, with a last axis of 3 for RGB (C = 3); any other C shows its channels side by side,
    grey."""
    c, h, w = image_channels_first(shape)
    tiles = images.reshape(rows, cols, c, h, w)
    if c != 3:                                    # channels side by side: (…, 1, H, C·W)
        tiles = tiles.transpose(0, 1, 3, 2, 4).reshape(rows, cols, 1, h, c * w)
    tiles = tiles.transpose(0, 1, 3, 4, 2)                               # (rows, cols, H, W', C')
    tiles = np.pad(tiles, ((0, 0), (0, 0), (0, gap), (0, gap), (0, 0)), constant_values=0.5)
    height, width, depth = tiles.shape[2:]
    mosaic = tiles.transpose(0, 2, 1, 3, 4).reshape(rows * height, cols * width, depth)
    mosaic = mosaic[:-gap, :-gap] if gap else mosaic
    return mosaic[..., 0] if depth == 1 else mosaic


def _show(ax, mosaic: np.ndarray, title: str) -> None:
    """A mosaic of probabilities in [0, 1]: grey levels (2-d) or RGB (3-d)."""
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_reconstructions(model, guide, x: torch.Tensor, site: str, shape, path: Path) -> Path:
    """Test images (top) over E[x|z] with z ~ q(z|x) (bottom)."""
    with torch.no_grad():
        z = posterior_samples(guide, x, site)[0]
        recon = model.decode(z)
    pair = torch.cat([x, recon]).clamp(0, 1).cpu().numpy()
    fig, ax = plt.subplots(figsize=(1.0 * len(x), 2.4))
    _show(ax, _image_grid(pair, 2, len(x), shape),
          "test images (top) and reconstructions E[x|z], z ~ q(z|x) (bottom)")
    return save_figure(fig, path)


def plot_samples(model, shape, path: Path, like: torch.Tensor, n: int = 8) -> Path:
    """Ancestral samples: z ~ p(z) (top-down through a hierarchy), then the decoder's mean
    E[x|z]."""
    with torch.no_grad():
        images = model.ancestral_means(like, n * n).clamp(0, 1).cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 5.3))
    _show(ax, _image_grid(images, n, n, shape), "samples: z ~ p(z), then E[x|z]")
    return save_figure(fig, path)


def plot_manifold(model, shape, path: Path, like: torch.Tensor, n: int = 15) -> Path:
    """E[x|z] over a grid of z ∈ R² at the normal quantiles 0.05 … 0.95 of each coordinate."""
    q = torch.as_tensor(norm.ppf(np.linspace(0.05, 0.95, n)), dtype=like.dtype, device=like.device)
    z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=-1)
    with torch.no_grad():
        images = model.decode(z).clamp(0, 1).cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 6.3))
    _show(ax, _image_grid(images, n, n, shape),
          "decoded manifold: E[x|z] on a grid of z (normal quantiles 5%–95%)")
    ax.set_xlabel("z₁ →")
    ax.set_ylabel("z₂ →")
    return save_figure(fig, path)


def plot_latent(z_mean: torch.Tensor, labels: Optional[torch.Tensor], path: Path) -> Path:
    """Means of q(z|x) on the test set, coloured by label; a PCA projection when d > 2."""
    z = z_mean.cpu().numpy()
    title = "means of q(z|x) on the test set"
    axis_names = ("z₁", "z₂")
    if z.shape[1] > 2:
        pca = PCA(n_components=2).fit(z)
        z = pca.transform(z)
        share = pca.explained_variance_ratio_.sum()
        title += f" (PCA of d={z_mean.shape[1]}, {share:.0%} of variance)"
        axis_names = ("principal component 1", "principal component 2")
    elif z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], axis=1)
        axis_names = ("z", "")
    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=6, alpha=0.6, label="test points")
        ax.legend(loc="best")
    else:
        y = labels.cpu().numpy()
        cmap = plt.get_cmap("tab10" if y.max() < 10 else "tab20")
        for k in np.unique(y):
            ax.scatter(z[y == k, 0], z[y == k, 1], s=6, alpha=0.7, color=cmap(k % cmap.N),
                       label=str(k))
        ax.legend(title="label", markerscale=3, fontsize=8, loc="center left",
                  bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
