"""
Load a finished run and sample from it with Pyro's Predictive
=============================================================

``experiments.load(run_dir)`` gives a finished run back, its trained model and guide, without
reading its data. Every model draws x when it is given none, so Pyro's own ``Predictive``
gives ancestral samples (z ~ p(z), then x ~ p(x|z)), and with ``poutine.uncondition`` (the
model's observed x becomes a draw while the guide reads the given x) posterior-predictive
reconstructions (z ~ q(z|x), then x ~ p(x|z)).
"""
import argparse
from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
from pyro import poutine
from pyro.infer import Predictive

from experiments import Config, load
from experiments.data.datasets import binarize, load_dataset
from experiments.training.end_to_end import run

OUT = Path("runs/examples/my-vae")  # under the folder it runs in


def main(epochs: int = 10, num_train: Optional[int] = None, iwae_samples: int = 100) -> dict:
    run(Config(model="vae", guide="normal", data="digits", epochs=epochs, num_train=num_train,
               iwae_samples=iwae_samples, out=str(OUT), progress=False), force=True)

    trained = load(OUT)                       # or OUT / "checkpoint.pt"; device="cpu" to move it
    print(trained.config.model, trained.config.likelihood, trained.epochs, "epochs")
    print(trained.data)

    ancestral = Predictive(trained.model, num_samples=16)()          # x: (16, 1, 64)
    x = binarize(load_dataset("digits").x_test[:4], seed=0)         # as the run saw its data
    posterior = Predictive(poutine.uncondition(trained.model), guide=trained.guide,
                           num_samples=3)(x)                          # x: (3, 4, 64)
    print("ancestral", tuple(ancestral["x"].shape), "reconstructions",
          tuple(posterior["x"].shape))
    _show(trained.samples(16)["x_mean"], x, trained.reconstructions(x, num_samples=1)["x_mean"])
    return {"ancestral": ancestral, "posterior": posterior}


def _show(means, x, recon) -> None:
    """Top: E[x|z] at 16 draws of p(z); bottom: 4 test digits over their reconstructions."""
    fig, axes = plt.subplots(3, 8, figsize=(8, 3.2))
    images = list(means) + list(x) + list(recon[0])
    for ax, image in zip(axes.flat, images):
        ax.imshow(image.reshape(8, 8).detach(), cmap="gray_r")
        ax.axis("off")
    fig.suptitle("samples (top two rows); test digits and their reconstructions (bottom)")
    fig.tight_layout()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Load a finished run and sample from it with Pyro's Predictive")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--iwae-samples", type=int, default=100)
    main(**vars(parser.parse_args()))
    plt.show()
