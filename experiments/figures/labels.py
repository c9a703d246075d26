"""Figures of a model with labels (``takes_labels``): its test accuracy per epoch beside the
baseline's, and a style-transfer grid."""
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from experiments.data.datasets import Dataset
from experiments.figures.common import plot_columns, save_figure
from experiments.figures.images import _image_grid, _show


def plot_accuracy(metrics: List[Dict[str, float]], path: Path) -> Path:
    """The test accuracy of q(y|x) per epoch, beside the same network trained on the labeled
    points alone (the baseline, one value per run)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_columns(ax, metrics, ("test_accuracy", "baseline_accuracy"))
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy per epoch")
    return save_figure(fig, path)


def plot_label_figures(model, guide, data: Dataset, run_dir: Path) -> List[Path]:
    """style.png for a model with labels on image data: the first test image of each class
    (the first 10 test images where the test set has no labels)."""
    if not model.takes_labels or data.image_shape is None:
        return []
    rows = torch.arange(min(10, len(data.x_test)))
    if data.y_test is not None:
        rows = torch.stack([torch.nonzero(data.y_test == c)[0, 0]
                            for c in data.y_test.unique()])
    return [plot_style_transfer(model, guide, data.x_test[rows.to(data.x_test.device)],
                                data.image_shape, run_dir / "style.png")]


def plot_style_transfer(model, guide, x: torch.Tensor, shape, path: Path) -> Path:
    """Each row: a test image, then E[x | y, z] for every class y at the one z of that image,
    the mean of q(z | x, ŷ) with ŷ the class q(y|x) gives it: the style held, the class
    changed."""
    classes = torch.arange(model.num_classes, device=x.device)
    with torch.no_grad():
        y_hat = guide.classify(x).argmax(-1)                                          # (R,)
        z = guide.latent_posterior(x, y_hat).mean                                    # (R, d)
        grid = model.decode(z[:, None], classes[None])                               # (R, C, D)
    images = torch.cat([x[:, None], grid], dim=1).clamp(0, 1)                     # (R, 1+C, D)
    rows, cols = images.shape[:2]
    fig, ax = plt.subplots(figsize=(0.55 * cols + 0.8, 0.55 * rows + 0.9))
    _show(ax, _image_grid(images.reshape(rows * cols, -1).cpu().numpy(), rows, cols, shape),
          "style transfer: z from each test image (left), decoded with every class y")
    name_columns(ax, shape, ["test image", *map(str, classes.tolist())])
    return save_figure(fig, path)


def _centres(count: int, side: int, gap: int = 1) -> np.ndarray:
    """The pixel centres of ``count`` tiles of ``side`` pixels, ``gap`` pixels apart."""
    return np.arange(count) * (side + gap) + (side - 1) / 2


def name_columns(ax, shape: Sequence[int], names: Sequence[str]) -> None:
    """Name the columns of a mosaic of tiles of ``shape`` (``images._image_grid``)."""
    ax.set_xticks(_centres(len(names), shape[-1]), names, fontsize=8)
    ax.tick_params(length=0)


def name_rows(ax, shape: Sequence[int], names: Sequence[str]) -> None:
    """Name the rows of a mosaic of tiles of ``shape``."""
    ax.set_yticks(_centres(len(names), shape[-2]), names, fontsize=8)
    ax.tick_params(length=0)
