"""
Train with RecordedSVI in a loop of your own
============================================

``experiments.build`` returns a model, a guide and an estimator ready for ``pyro.infer.SVI``.
``RecordedSVI`` is ``SVI`` with the same ``step``: after Pyro's first steps it records the
training step (guide, model, loss and backward) once per minibatch shape and replays it, with
the loss, gradients and random draws of Pyro's own step. A model that cannot be recorded trains
through Pyro's step instead, and ``on_fallback`` hears why.
"""
import argparse

import pyro
import torch
from pyro.optim import Adam

from experiments import build
from experiments.data.datasets import binarize, load_dataset
from experiments.evaluation.likelihood import mean_elbo
from experiments.recording.svi import RecordedSVI


def main(epochs: int = 5, batch_size: int = 128, seed: int = 0) -> list:
    pyro.set_rng_seed(seed)
    data = load_dataset("digits")
    x_train, x_test = binarize(data.x_train, seed=seed), binarize(data.x_test, seed=seed + 1)
    n = len(x_train)
    parts = build("vae", "normal", "trace", data_dim=data.data_dim, num_data=n)
    svi = RecordedSVI(parts.model, parts.guide, Adam({"lr": 1e-3}), parts.elbo,
                      on_fallback=lambda reason: print("Pyro's step:", reason))
    history = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n)
        losses = [svi.step(x_train[index], index, n)          # −ELBO estimate, scaled by N/B
                  for index in order.split(batch_size)]                   # index: (B,)
        test = mean_elbo(parts.model, parts.guide, x_test)
        history.append(test)
        print(f"epoch {epoch:2d}  train ELBO {-sum(losses) / len(losses) / n:8.3f}  "
              f"test ELBO {test:8.3f}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Train with RecordedSVI in a loop of your own")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    main(**vars(parser.parse_args()))
