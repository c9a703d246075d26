"""The figure of a conditional model (``conditional``): the hidden parts of test images as its
baseline and its samples complete them."""
from pathlib import Path
from typing import List

import matplotlib.pyplot as plt
import torch

from experiments.data.datasets import Dataset
from experiments.figures.common import save_figure
from experiments.figures.images import _image_grid, _show
from experiments.figures.labels import name_rows

#: hidden pixels in the "visible part" row
HIDDEN_GREY = 0.5


def plot_completion_figures(model, guide, data: Dataset, run_dir: Path) -> List[Path]:
    """completions.png for a conditional model on image data."""
    if not model.conditional or data.image_shape is None:
        return []
    return [plot_completions(model, data.x_test[:10], data.image_shape,
                             run_dir / "completions.png")]


def plot_completions(model, x: torch.Tensor, shape, path: Path, samples: int = 3) -> Path:
    """Columns: test images. Rows: the visible part (hidden pixels grey), the truth, the
    baseline's prediction ŷ in the hidden part, and ``samples`` completions by the model,
    E[x_h | z, x_v] for z ~ p(z | x_v, ŷ)."""
    visible, _ = model.split(x)
    with torch.no_grad():
        rows = [model.merge(visible, torch.full_like(model.split(x)[1], HIDDEN_GREY)), x,
                model.baseline_completion(x), *model.predict(x, samples)]
    images = torch.stack(rows).clamp(0, 1)                                        # (R, N, D)
    fig, ax = plt.subplots(figsize=(0.6 * len(x) + 1.6, 0.6 * len(rows) + 0.9))
    _show(ax, _image_grid(images.reshape(-1, x.shape[-1]).cpu().numpy(), len(rows), len(x),
                          shape),
          "hidden part of test images: the truth, the baseline ŷ,\nand E[x_h | z, x_v] at "
          "draws z ~ p(z | x_v, ŷ)")
    name_rows(ax, shape, ["visible part", "truth", "baseline ŷ",
                           *(f"sample {s + 1}" for s in range(samples))])
    return save_figure(fig, path)
