"""The K-sample estimators under minibatches, on the lvm and the ring
(docs/design/pyro-renyi-subsampling.md).

    .venv/bin/python -m experiments.results.k_sample_minibatch         # about 25 minutes on 2 cores

Trains the lvm (d = 2, hidden 400, normal guide, lr 3e-3, K = 10 vectorized) on 1,797 points of
the ring with minibatches of 128 and with the full batch, for ``iwae``, ``renyi`` (α = 0.5) and
``dreg``, with Pyro's ``RenyiELBO`` as the "before", and ``trace`` as a reference estimator that
was never wrong. For each run it prints the train bound as the training loop reports it (the
mean of −loss / N over the last epoch), the exact log p(x) of the training set, and the bound at
the final parameters minus the exact log p(x), paired over every minibatch of two passes (mean
± standard error): a lower bound must stay under zero.
"""
import json
import math
import time

import pyro
import torch
from pyro.infer import RenyiELBO

from experiments.data.datasets import load_dataset
from experiments.parts.build import build

RUNS = [  # (estimator, batch, steps, Pyro's RenyiELBO instead of ELBO Lab's)
    ("iwae", 128, 1500, True), ("iwae", 128, 1500, False), ("iwae", None, 1500, False),
    ("renyi", 128, 1500, True), ("renyi", 128, 1500, False), ("renyi", None, 1500, False),
    ("dreg", 128, 1500, False), ("dreg", None, 1500, False),
    ("trace", 128, 1500, False), ("trace", None, 1500, False),
    ("iwae", 128, 6000, False), ("renyi", 128, 6000, False), ("dreg", 128, 6000, False),
]


def run(x: torch.Tensor, name: str, batch: int, steps: int, pyro_renyi: bool, seed: int = 0):
    n = len(x)
    pyro.set_rng_seed(seed)
    parts = build("lvm", "normal", name, data_dim=2, latent_dim=2, hidden_dims=(400,),
                  num_particles=10, vectorize_particles=True, alpha=0.5, num_data=n)
    elbo = RenyiELBO(alpha=0.5 if name == "renyi" else 0.0, num_particles=10,
                     vectorize_particles=True, max_plate_nesting=1) if pyro_renyi else parts.elbo
    svi = pyro.infer.SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 3e-3}), elbo)
    order, start, step, last = torch.Generator().manual_seed(seed), time.time(), 0, []
    while step < steps:
        last = []
        for index in torch.randperm(n, generator=order).split(batch):
            last.append(svi.step(x[index], index, n))
            step += 1
            if step == steps:
                break
    with torch.no_grad():
        exact = parts.model.exact_log_likelihood(x)
        gaps = torch.tensor([-parts.elbo.loss(parts.model, parts.guide, x[i], i, n) / n
                             - exact[i].mean().item()
                             for _ in range(2)
                             for i in torch.randperm(n, generator=order).split(batch)])
    return {"estimator": name + (" (Pyro's RenyiELBO)" if pyro_renyi else ""),
            "batch": batch, "steps": steps, "train_bound": -sum(last) / (len(last) * n),
            "exact": exact.mean().item(), "bound_minus_exact": gaps.mean().item(),
            "stderr": gaps.std().item() / math.sqrt(len(gaps)) if len(gaps) > 1 else 0.0,
            "seconds": time.time() - start}


def main():
    torch.set_num_threads(1)
    x = load_dataset("ring", "data", 1797, 500, 0.2).x_train
    for name, batch, steps, pyro_renyi in RUNS:
        print(json.dumps(run(x, name, batch or len(x), steps, pyro_renyi)), flush=True)


if __name__ == "__main__":
    main()
