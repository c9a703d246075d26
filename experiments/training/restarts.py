"""Several starting points (``--restarts``): train each, keep the one whose final train ELBO,
the objective itself, is best."""
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch

from experiments.common.console import log
from experiments.common.files import copy_file
from experiments.common.ranks import leader
from experiments.data.datasets import Dataset
from experiments.training.loop import Attempt, fit, start_attempt


def fit_restarts(first: Attempt, data: Dataset, device: torch.device, run_dir: Path,
                 restarts: int, on_epoch: Optional[Callable[[dict], None]] = None
                 ) -> Tuple[Attempt, dict]:
    """With one start, ``first`` trained in ``run_dir``. With ``restarts`` > 1, restart r is the
    run with seed ``seed + r`` (``first`` is r = 0), trained in ``run_dir/restarts/seed-<s>/``;
    the one with the best final train ELBO is copied into ``run_dir`` and returned, with every
    restart's final train ELBO for the summary."""
    if restarts == 1:
        return fit(first, data, run_dir, on_epoch), {}
    best, finals = None, []
    for r in range(restarts):
        attempt = first if r == 0 else start_attempt(
            first.config.replace(seed=first.config.seed + r), data, device)
        log(attempt.config, f"restart {r + 1}/{restarts}: seed {attempt.config.seed}")
        folder = run_dir / "restarts" / f"seed-{attempt.config.seed}"
        if leader():
            folder.mkdir(parents=True, exist_ok=True)
        finals.append(fit(attempt, data, folder, on_epoch).metrics[-1]["train_elbo"])
        if best is None or finals[-1] > best.metrics[-1]["train_elbo"]:
            best, best_folder = attempt, folder
    for name in ("metrics.csv", "checkpoint.pt") if leader() else ():
        copy_file(best_folder / name, run_dir / name)
    log(best.config, f"kept seed {best.config.seed}: final train ELBO "
                     f"{best.metrics[-1]['train_elbo']:.3f}, the best of {restarts} restarts")
    return best, {"restarts": restarts, "restart_train_elbos": finals,
                  "best_seed": best.config.seed}
