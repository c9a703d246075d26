"""The executable lessons of the documentation site (docs/lessons/run_lesson*.py): a lesson's
runs trained at the settings its reader chose, measured as the lesson measures them
(``measures.Lessons``), its numbers printed and its figures shown, in minutes on a laptop."""
import math
from pathlib import Path
from typing import Dict

import matplotlib.image
import matplotlib.pyplot as plt

from experiments.lessons.measures import Lessons
from experiments.lessons.runs import COMPARISONS, Budget, train_all

OUT = Path("runs/lessons-live")          # under the folder it runs in (docs build: docs/lessons/)


def run_lesson(number: int, runs: Dict[str, dict], comparisons: Dict[str, tuple] = COMPARISONS,
               jobs: int = 1) -> Dict[str, float]:
    """Train ``runs`` (name → settings), in this process or in ``jobs`` processes (not from a
    script run as a file: each worker would import it again), then measure lesson ``number``
    on them; every number it measures, printed and returned."""
    budget = Budget(quick=False, laptop=True)
    train_all({name: budget.config(settings, OUT / name) for name, settings in runs.items()},
              jobs)
    lessons = Lessons(OUT, OUT / "figures", budget, jobs, comparisons)
    numbers = getattr(lessons, f"lesson{number}")()
    for name, value in numbers.items():
        shown = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else value
        print(f"{name:<45} {shown}")
    return numbers


def show(*names: str) -> None:
    """The lesson's figures ``OUT/figures/<name>.png``, stacked in one figure."""
    show_file(*(OUT / "figures" / f"{name}.png" for name in names))


def show_file(*paths) -> None:
    """The PNG files ``paths`` stacked in one figure, each at the page's full width (a notebook
    or the site shows it as one picture)."""
    images = [matplotlib.image.imread(path) for path in paths]
    heights = [image.shape[0] / image.shape[1] for image in images]      # height per width
    fig, axes = plt.subplots(len(images), 1, figsize=(8, 8 * sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, image in zip(axes[:, 0], images):
        ax.imshow(image)
        ax.axis("off")
    fig.subplots_adjust(left=0, right=1, top=1, bottom=0, hspace=0.02)
