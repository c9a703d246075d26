"""What every run's figures share: saving atomically, and the curves per epoch."""
import itertools
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from experiments.common.files import write_atomically
from experiments.evaluation.metrics import TEST_METRICS

#: the legend of each column that figures draw: the test metrics' own, and two more
LABELS = {"train_elbo": "train ELBO", **{name: m.legend for name, m in TEST_METRICS.items()},
          "iwae_gap": "log p(x) − IWAE"}
LINE_STYLES = ("-", "--", ":", "-.")


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG through a temporary file, then close it."""
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110,
                                                 bbox_inches="tight"), binary=True)
    plt.close(fig)
    return path


#: the bounds figure's colour of each quantity, the same in every run's figure whichever
#: quantities a model has (a gap takes the colour of what the bound is compared with)
BOUND_COLORS = {"test_exact_log_likelihood": "tab:blue", "test_iwae": "tab:orange",
                "test_elbo": "tab:green", "test_gap": "tab:blue",
                "test_posterior_kl": "tab:orange", "iwae_gap": "tab:green"}


def plot_columns(ax: plt.Axes, metrics: List[Dict[str, float]], columns: Sequence[str],
                 colors: Optional[Dict[str, str]] = None,
                 labels: Optional[Dict[str, str]] = None) -> None:
    """One line per metric column against the epoch (whole epochs on the axis), each in its
    own dash pattern so that lines lying on top of each other (an exact bound) stay visible,
    in the colour ``colors`` gives it (else the next of matplotlib's cycle), named as
    ``labels`` (else ``LABELS``) says; columns without values are left out."""
    epochs = [row["epoch"] for row in metrics]
    for column, style in zip(columns, itertools.cycle(LINE_STYLES)):
        values = [row[column] for row in metrics if row.get(column) not in (None, "")]
        if values:
            ax.plot(epochs[-len(values):], values, marker="o" if len(values) < 30 else None,
                    markersize=3, linestyle=style,
                    label={**LABELS, **(labels or {})}.get(column, column),
                    color=(colors or {}).get(column))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend()


def plot_training_curves(metrics: List[Dict[str, float]], path: Path,
                         columns: Sequence[str] = ("train_elbo", "test_elbo"),
                         title: str = "ELBO per epoch", objective: str = "ELBO") -> Path:
    """One line per metric column against the epoch, in nats per example (higher is better);
    the train column named after the ``objective`` it holds (``EstimatorTraits.objective``)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_columns(ax, metrics, columns, labels={"train_elbo": f"train {objective}"})
    ax.set_ylabel("nats per example (higher is better)")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_bounds(metrics: List[Dict[str, float]], path: Path,
                ceiling: Optional[float] = None) -> Path:
    """Above, the test ELBO and IWAE bounds under the exact log p(x) per epoch, and the
    ``ceiling`` log p*(x) of the generating distribution where it is known; below, their gaps,
    log p(x) − ELBO = mean KL(q(z|x) ‖ p(z|x)) and log p(x) − IWAE, on their own scale."""
    gaps = [{"epoch": row["epoch"], "test_gap": row["test_gap"],
             "iwae_gap": row["test_exact_log_likelihood"] - row["test_iwae"],
             "test_posterior_kl": row.get("test_posterior_kl")} for row in metrics]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    if ceiling is not None:
        top.axhline(ceiling, color="0.4", linestyle="--", linewidth=1,
                    label="true log p*(x) of the data's\ngenerating distribution")
    plot_columns(top, metrics, ("test_exact_log_likelihood", "test_iwae", "test_elbo"),
                 BOUND_COLORS)
    top.set_xlabel("")
    top.set_ylabel("nats per test example")
    top.set_title("bounds on the test log-likelihood per epoch")
    plot_columns(bottom, gaps, ("test_gap", "test_posterior_kl", "iwae_gap"), BOUND_COLORS)
    bottom.axhline(0.0, color="black", linewidth=0.8)
    bottom.set_ylabel("gap below log p(x), nats")
    for ax in (top, bottom):                # beside the curves, never over them
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return save_figure(fig, path)
