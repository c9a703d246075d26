"""Figures of an estimator comparison: learning curves, gradient variance, SNR against K."""
from pathlib import Path
from typing import Dict, List

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from experiments.figures.common import LINE_STYLES, save_figure


def plot_comparison(results: List[dict], rows: List[dict], sweep: List[dict],
                    out: Path) -> List[Path]:
    written = [plot_curves(results, out / "curves.png"),
               plot_gradient_variance(rows, out / "gradient_variance.png")]
    if sweep:
        written.append(plot_snr_against_k(sweep, out / "snr_vs_k.png"))
    return written


#: the markers of the curves, one per estimator with its own dash pattern (``LINE_STYLES``):
#: estimators whose curves coincide (trace, meanfield, iwae K=1) stay told apart
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_curves(results: List[dict], path: Path) -> Path:
    """Test ELBO against training steps and against wall time: the mean over seeds as a line,
    each estimator in its own colour, dash pattern and marker (at staggered points, so that
    lines lying on each other stay visible), the range over seeds as a band; one legend below
    both panels."""
    by_label: Dict[str, List[dict]] = {}
    for r in results:
        by_label.setdefault(r["label"], []).append(r)
    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, (name, rs) in enumerate(by_label.items()):
        color = plt.get_cmap("tab10")(i % 10)
        elbo = np.array([[row["test_elbo"] for row in r["metrics"]]
                         for r in rs])                                      # (seeds, epochs)
        steps = np.array([row["epoch"] for row in rs[0]["metrics"]]) * rs[0]["steps_per_epoch"]
        seconds = np.mean([np.cumsum([row["seconds"] for row in r["metrics"]]) for r in rs], 0)
        every = max(1, len(steps) // 6)
        style = dict(color=color, linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                     marker=MARKERS[i % len(MARKERS)], markersize=5, markerfacecolor="none",
                     markevery=(i % every, every),
                     label=f"{name} ({len(rs)} seed{'s' if len(rs) > 1 else ''})")
        for ax, x in ((ax_steps, steps), (ax_time, seconds)):
            ax.plot(x, elbo.mean(0), **style)
            ax.fill_between(x, elbo.min(0), elbo.max(0), color=color, alpha=0.2)
    ax_steps.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_steps.set_xlabel("training steps")
    ax_time.set_xlabel("wall time of training (s)")
    ax_steps.set_ylabel("test ELBO (nats per example)")
    for ax in (ax_steps, ax_time):
        ax.grid(alpha=0.3)
    ax_steps.set_title("test ELBO against steps")
    ax_time.set_title("test ELBO against wall time")
    fig.legend(*ax_steps.get_legend_handles_labels(), loc="upper center", fontsize=8,
               ncol=min(4, len(by_label)), bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("estimators compared: line = mean over seeds, band = range")
    return save_figure(fig, path)


def plot_gradient_variance(rows: List[dict], path: Path) -> Path:
    """Total gradient variance per estimator at initialization and at the end, for the guide's
    parameters φ and the model's θ: a dot for each, joined by an arrow and labelled with its
    value, on a log axis. Dots, not bars: a bar on a log axis starts at an arbitrary floor, so
    its length misstates ratios (7% more looked like 10× more)."""
    wide = len(rows) > 4                # one panel above the other, each as wide as needed
    fig, axes = plt.subplots(2 if wide else 1, 1 if wide else 2,
                             figsize=(max(7.0, 1.5 * len(rows)), 9.0) if wide else (12, 4.6),
                             gridspec_kw={"hspace": 0.45} if wide else {"wspace": 0.3})
    names = [r["label"] for r in rows]
    colors = {"init": "tab:blue", "final": "tab:orange"}
    for ax, group, title in ((axes[0], "guide", "guide φ"), (axes[1], "model", "model θ")):
        init = [r[f"grad_var_{group}_init"] for r in rows]
        final = [r[f"grad_var_{group}"] for r in rows]
        for i, (a, b) in enumerate(zip(init, final)):
            if a == 0 and b == 0:       # no randomness in the gradient: no place on a log axis
                ax.annotate("0: exact", (i, 0.04), xycoords=("data", "axes fraction"),
                            ha="center", fontsize=8)
                continue
            ax.annotate("", xy=(i + 0.15, b), xytext=(i - 0.15, a),
                        arrowprops=dict(arrowstyle="->", color="0.5", shrinkA=5, shrinkB=5))
            for value, side, when in ((a, -1, "init"), (b, 1, "final")):
                ax.plot(i + 0.15 * side, value, "o", color=colors[when], markersize=7)
                ax.annotate(f"{value:.2g}", (i + 0.15 * side, value), textcoords="offset points",
                            xytext=(7 * side, 0), ha="left" if side > 0 else "right",
                            va="center", fontsize=8)
        positive = [v for v in init + final if v > 0]
        if positive:
            ax.set_yscale("log")
            ax.set_ylim(min(positive) / 2.5, max(positive) * 2.5)
        ax.set_xlim(-0.7, len(rows) - 0.3)
        ax.set_xticks(np.arange(len(rows)), names, rotation=30, ha="right")
        ax.set_ylabel("total gradient variance Σ_j Var[ĝ_j]")
        ax.set_title(f"gradient variance, {title}")
        ax.grid(alpha=0.3, axis="y", which="both")
    fig.legend(handles=[Line2D([], [], marker="o", linestyle="", color=colors["init"],
                               label="at initialization"),
                        Line2D([], [], marker="o", linestyle="", color=colors["final"],
                               label="at the end of training")],
               loc="lower center", ncol=2, fontsize=9,
               bbox_to_anchor=(0.5, axes[0].get_position().y1 + (0.025 if wide else 0.07)))
    return save_figure(fig, path)


def plot_snr_against_k(rows: List[dict], path: Path) -> Path:
    """Mean gradient SNR against K for each K-sample estimator at one fixed trained point,
    guide and model separately (Rainforth et al. 2018: IWAE's guide SNR falls like 1/√K, its
    model SNR rises like √K; DReG's guide SNR does not fall)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True, gridspec_kw={"wspace": 0.3})
    fig.suptitle(f"at the final parameters of the {rows[0]['at']} run, seed 0")
    for ax, group, title in ((axes[0], "guide", "guide φ"), (axes[1], "model", "model θ")):
        for elbo in dict.fromkeys(r["elbo"] for r in rows):
            rs = sorted((r for r in rows if r["elbo"] == elbo), key=lambda r: r["num_particles"])
            ax.plot([r["num_particles"] for r in rs], [r[f"grad_snr_{group}"] for r in rs],
                    marker="o", label=elbo)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K (samples per data point)")
        ax.set_ylabel("mean SNR |E ĝ| / sd ĝ")
        ax.set_title(f"gradient SNR against K, {title}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return save_figure(fig, path)
