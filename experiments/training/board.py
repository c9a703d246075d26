"""``--tensorboard``: a run watched in TensorBoard, its event files in RUN_DIR/tensorboard/
(``torch.utils.tensorboard.SummaryWriter``; with ``--restarts``, in each restart's folder).

Per epoch, at step = the epoch: every number of the epoch's row of metrics.csv (``train/elbo``,
``test/elbo``, and where the model has them ``test/iwae``, ``test/exact_log_likelihood``,
``test/gap``, …; ``train/seconds``, ``test/seconds``), the test ELBO's two terms
``test/reconstruction`` = E_q[log p(x|z)] and ``test/kl`` = KL(q(z|x) ‖ p(z)) (Monte Carlo,
where the guide samples z), ``train/grad_norm`` (the mean over the epoch's steps of ‖∇‖₂ over
every parameter), and for a model with a decoder on image data the images ``samples`` (E[x|z],
z ~ p(z)) and ``reconstructions`` (eight test images over E[x|z], z ~ q(z|x)). Everything
drawn for the board comes from a random stream of its own: a run with ``--tensorboard`` trains
exactly as one without.

    tensorboard --logdir runs/
"""
import importlib
from pathlib import Path

import torch

from experiments.common.errors import UserError
from experiments.common.rng import isolated_rng
from experiments.data.datasets import Dataset
from experiments.evaluation.bounds import reconstruction_and_kl
from experiments.evaluation.likelihood import EVAL_SEED
from experiments.figures.images import posterior_samples

INSTALL = "pip install -e .[tensorboard]"
SAMPLES, RECONSTRUCTIONS = 64, 8                     # images per epoch


def require_tensorboard() -> None:
    """Refuse ``--tensorboard`` in one line, before any work, where tensorboard is missing."""
    try:
        importlib.import_module("tensorboard")
    except ImportError:
        raise UserError(f"--tensorboard needs the tensorboard package, which is not installed: "
                        f"{INSTALL} (in the project's folder)") from None


def tag_of(key: str) -> str:
    """The board's name for a column of metrics.csv: ``test_elbo`` → ``test/elbo``,
    ``seconds`` → ``train/seconds``, ``eval_seconds`` → ``test/seconds``."""
    if key == "eval_seconds":
        return "test/seconds"
    if key.startswith(("train_", "test_")):
        return key.replace("_", "/", 1)
    return f"train/{key}"


class Board:
    """The event files of one training folder, written after each epoch.

    :param folder: the folder whose ``tensorboard/`` receives the events.
    :param optim: the run's ``JointOptim``, which collects each step's gradient norm.
    """

    def __init__(self, folder: Path, optim):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(folder) / "tensorboard"))
        self.optim = optim
        optim.grad_norms = []

    def epoch(self, row: dict, model, guide, data: Dataset) -> None:
        """The numbers of ``row`` (an epoch of metrics.csv) and what the model and the guide
        that scores the test set show at its end."""
        step = row["epoch"]
        scalars = {tag_of(k): v for k, v in row.items() if k != "epoch" and v is not None}
        terms = reconstruction_and_kl(model, guide, data.x_test)
        scalars.update({f"test/{k}": v for k, v in (terms or {}).items()})
        if self.optim.grad_norms:
            scalars["train/grad_norm"] = torch.stack(self.optim.grad_norms).mean().item()
            self.optim.grad_norms.clear()
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        if model.has_decoder and data.image_shape is not None:
            self._images(model, guide, data, step)
        self.writer.flush()

    def _images(self, model, guide, data: Dataset, step: int) -> None:
        shape = tuple(data.image_shape)
        shape = (1, *shape) if len(shape) == 2 else shape              # (C, H, W)
        x = data.x_test[:RECONSTRUCTIONS]
        site = next(iter(model.latent_sites))                          # the site x is drawn from
        with torch.no_grad(), isolated_rng(EVAL_SEED, x.device):
            samples = model.ancestral_means(x, SAMPLES)
            recon = model.decode(posterior_samples(guide, x, site)[0])
        as_images = lambda t: t.clamp(0, 1).reshape(-1, *shape).cpu()
        self.writer.add_images("samples", as_images(samples), step)
        self.writer.add_images("reconstructions", as_images(torch.cat([x, recon])), step)

    def close(self) -> None:
        self.writer.close()
        self.optim.grad_norms = None
