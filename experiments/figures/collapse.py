"""kl_per_dimension.png: which latent units a run uses (``experiments.evaluation.collapse``; beside
a class ``experiments.evaluation.label_collapse``; layer by layer for a hierarchy
``experiments.evaluation.hierarchy_collapse``)."""
import math
from pathlib import Path
from typing import List

import matplotlib.pyplot as plt

from experiments.data.datasets import Dataset
from experiments.evaluation.collapse import ACTIVE_THRESHOLD
from experiments.evaluation.collapse_by_kind import diagnostics_of
from experiments.evaluation.hierarchy_collapse import LAYERS, hierarchy_applies
from experiments.figures.common import save_figure

#: units at most with a tick each; wider layers get a tick every ⌈d / MAX_TICKS⌉ units
MAX_TICKS = 20


def plot_kl_per_dimension(model, guide, data: Dataset, run_dir: Path) -> List[Path]:
    """The mean KL(q(z_j|x) ‖ p(z_j)) of each coordinate j over the test set, largest first,
    for a model with one continuous latent site whose q and p are factorized (beside a class y,
    the mean over q(y|x) of KL(q(z_j|x, y) ‖ p(z_j))); the title gives the active units and the
    ELBO surgery's split of the KL term (where it applies). For the hvae, one panel per layer
    (``plot_layers``)."""
    diagnostics = diagnostics_of(model)
    if diagnostics is None:
        return []
    found = diagnostics(model, guide, data.x_test)
    if hierarchy_applies(model):
        return [plot_layers(found, run_dir)]
    if "kl_per_dimension" not in found:
        return []
    kl = found["kl_per_dimension"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(kl) + 2), 3.2))
    ylabel = ("mean E_q(y|x) KL(q(z_j|x,y) ‖ p(z_j)), nats" if "label_information" in found
              else "mean KL(q(z_j|x) ‖ p(z_j)), nats")
    _bars(ax, kl, ylabel, "latent dimension j")
    ax.set_title(f"{found['active_units']} of {len(kl)} units active (Cov_x E_q[z_j] > "
                 f"{ACTIVE_THRESHOLD});\n{_split(found)}", fontsize=8)
    return [save_figure(fig, run_dir / "kl_per_dimension.png")]


def plot_layers(found: dict, run_dir: Path) -> Path:
    """The KL per unit of z₁ and of z₂ side by side, each titled with its active units and
    KL term; the overall title the top layer's surgery (``hierarchy_diagnostics``' keys)."""
    widths = [len(found[f"kl_per_dimension_{layer}"]) for layer in LAYERS]
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 0.25 * sum(widths) + 4), 3.4),
                             layout="constrained",
                             gridspec_kw={"width_ratios": [max(w, 3) for w in widths]})
    ylabels = ("E_q[log q(z₁,j|x) − log p(z₁,j|z₂)]", "E_q[KL(q(z₂,j|z₁) ‖ N(0, 1))]")
    for ax, layer, width, ylabel in zip(axes, LAYERS, widths, ylabels):
        _bars(ax, found[f"kl_per_dimension_{layer}"], f"{ylabel}, nats", f"unit j of {layer}")
        ax.set_title(f"{layer}: {found[f'active_units_{layer}']} of {width} units active; "
                     f"KL term {found[f'kl_{layer}']:.2f}", fontsize=8)
    fig.suptitle(f"KL of z2 {found['kl_z2']:.2f} = I(z1; z2) {found['mutual_information_z2']:.2f}"
                 f" + KL(q(z2) ‖ p(z2)) {found['marginal_kl_z2']:.2f}", fontsize=8)
    return save_figure(fig, run_dir / "kl_per_dimension.png")


def _bars(ax, kl: List[float], ylabel: str, unit: str) -> None:
    """The KL of each unit as a bar, largest first."""
    kl = sorted(kl, reverse=True)
    ax.bar(range(1, len(kl) + 1), kl, color="tab:blue")
    ax.set_xticks(unit_ticks(len(kl)))
    ax.set_xlim(0.4, len(kl) + 0.6)
    ax.set_xlabel(f"{unit}, by KL (largest first)")
    ax.set_ylabel(ylabel, fontsize=7)


def unit_ticks(width: int) -> List[int]:
    """Ticks on units 1 … ``width`` only: every unit up to ``MAX_TICKS``, else unit 1 and every
    ⌈width / MAX_TICKS⌉-th."""
    step = math.ceil(width / MAX_TICKS)
    return sorted({1, *range(step, width + 1, step)})


def _split(found: dict) -> str:
    """The ELBO surgery of the KL term, or under a conditional prior the KL alone."""
    if "mutual_information" not in found:
        return f"KL(q(z|x) ‖ p(z|x_v)) {found['kl']:.2f} (a prior per point: no surgery)"
    if "label_information" in found:
        return (f"KL term {found['kl']:.2f} = I(x; z) {found['mutual_information']:.2f} + "
                f"I(y; z | x) {found['label_information']:.2f} + KL(q(z) ‖ p(z)) "
                f"{found['marginal_kl']:.2f}")
    return (f"KL {found['kl']:.2f} = I(x; z) {found['mutual_information']:.2f} + "
            f"KL(q(z) ‖ p(z)) {found['marginal_kl']:.2f}")
