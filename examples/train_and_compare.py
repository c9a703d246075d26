"""
Train two estimators from Python and compare them point by point
=================================================================

``run(Config(...))`` is what ``python -m experiments.train`` does, in-process: it trains, writes
the run's folder and returns its summary, its per-epoch metrics and its trained parts. Two runs
with the same seed share the initial parameters and the data order, so their difference is the
estimator's alone; scored on the same test points, the difference is paired, and its standard
error is free of the spread between points.
"""
import argparse
import csv
from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import torch

from experiments import Config
from experiments.training.end_to_end import run

OUT = Path("runs/examples/compare")  # under the folder it runs in


def per_point(run_dir: Path, column: str) -> torch.Tensor:
    """One column of the run's test_points.csv: each test point's ELBO or IWAE estimate."""
    with open(run_dir / "test_points.csv") as f:
        return torch.tensor([float(row[column]) for row in csv.DictReader(f)])


def main(epochs: int = 10, num_train: Optional[int] = None, iwae_samples: int = 100) -> dict:
    base = Config(model="vae", guide="normal", data="digits", epochs=epochs, num_train=num_train,
                  iwae_samples=iwae_samples, progress=False)
    estimators = {"trace": base.replace(elbo="trace"),
                  "iwae K=5": base.replace(elbo="iwae", num_particles=5,
                                           vectorize_particles=True)}
    results = {name: run(config.replace(out=str(OUT / name.replace(" ", "-"))), force=True)
               for name, config in estimators.items()}
    for name, result in results.items():
        print(f"{name:9s} test ELBO {result.summary['test_elbo']:8.3f}   "
              f"test IWAE {result.summary['test_iwae']:8.3f}")
    # paired: the same test points, each estimator's log p̂(x_i)
    diff = (per_point(results["iwae K=5"].run_dir, "test_iwae")
            - per_point(results["trace"].run_dir, "test_iwae"))
    stderr = diff.std().item() / len(diff) ** 0.5
    print(f"iwae K=5 − trace, test IWAE per point: {diff.mean().item():+.3f} ± {stderr:.3f} "
          "nats (paired over the test points)")
    _plot(results)
    return {"paired_diff": diff.mean().item(), "stderr": stderr}


def _plot(results) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, result in results.items():
        epochs = [row["epoch"] for row in result.metrics]
        ax.plot(epochs, [row["test_elbo"] for row in result.metrics], label=name)
    ax.set(xlabel="epoch", ylabel="test ELBO (nats)", title="one seed, same start")
    ax.legend()
    fig.tight_layout()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Train two estimators from Python and compare them point by point")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--iwae-samples", type=int, default=100)
    main(**vars(parser.parse_args()))
    plt.show()
