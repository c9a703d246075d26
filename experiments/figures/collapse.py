"""kl_per_dimension.png: which latent units a run uses (``experiments.evaluation.collapse``)."""
from pathlib import Path
from typing import List

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from experiments.data.datasets import Dataset
from experiments.evaluation.collapse import ACTIVE_THRESHOLD, collapse_diagnostics
from experiments.figures.common import save_figure
from experiments.parts.kl_per_unit import collapse_applies


def plot_kl_per_dimension(model, guide, data: Dataset, run_dir: Path) -> List[Path]:
    """The mean KL(q(z_j|x) ‖ p(z_j)) of each coordinate j over the test set, largest first,
    for a model with one continuous latent site whose q and p are factorized; the title gives
    the active units and the ELBO surgery's split of the KL term (where it applies)."""
    if not collapse_applies(model):
        return []
    found = collapse_diagnostics(model, guide, data.x_test)
    if "kl_per_dimension" not in found:
        return []
    kl = sorted(found["kl_per_dimension"], reverse=True)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(kl) + 2), 3.2))
    ax.bar(range(1, len(kl) + 1), kl, color="tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))           # dimensions are whole
    ax.set_xlabel("latent dimension j, by KL (largest first)")
    ax.set_ylabel("mean KL(q(z_j|x) ‖ p(z_j)), nats")
    ax.set_title(f"{found['active_units']} of {len(kl)} units active (Cov_x E_q[z_j] > "
                 f"{ACTIVE_THRESHOLD});\n{_split(found)}", fontsize=8)
    return [save_figure(fig, run_dir / "kl_per_dimension.png")]


def _split(found: dict) -> str:
    """The ELBO surgery of the KL term, or under a conditional prior the KL alone."""
    if "mutual_information" not in found:
        return f"KL(q(z|x) ‖ p(z|x_v)) {found['kl']:.2f} (a prior per point: no surgery)"
    return (f"KL {found['kl']:.2f} = I(x; z) {found['mutual_information']:.2f} + "
            f"KL(q(z) ‖ p(z)) {found['marginal_kl']:.2f}")
