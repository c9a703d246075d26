"""
Evaluate a trained run on its test set
======================================

``load_trained(run_dir)`` gives a finished run's config, its data as it trained on them, and
its parts. The functions of ``experiments.evaluation`` then measure anything on them: the
one-sample ELBO and its two terms, E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), the IWAE estimate
log (1/K) Σ_k p(x, z_k)/q(z_k|x) for growing K (a tighter bound on log p(x) as K grows), and
per point, for paired comparisons.
"""
import argparse
from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt

from experiments import Config
from experiments.evaluation.bounds import reconstruction_and_kl
from experiments.evaluation.likelihood import iwae_log_likelihood, mean_elbo
from experiments.training.end_to_end import run
from experiments.training.trained import load_trained

OUT = Path("runs/examples/evaluate")  # under the folder it runs in


def main(epochs: int = 10, num_train: Optional[int] = None,
         ks: tuple = (1, 10, 100, 1000)) -> dict:
    run(Config(model="vae", guide="normal", data="digits", epochs=epochs, num_train=num_train,
               iwae_samples=10, out=str(OUT), progress=False), force=True)
    config, data, parts = load_trained(OUT)
    model, guide, x = parts.model, parts.guide, data.x_test                      # x: (N, 64)
    terms = reconstruction_and_kl(model, guide, x)
    print(f"ELBO {mean_elbo(model, guide, x):.3f} = E_q[log p(x|z)] {terms['reconstruction']:.3f}"
          f" − KL {terms['kl']:.3f}")
    bounds = {}
    for k in ks:
        bounds[k], stderr = iwae_log_likelihood(model, guide, x, num_samples=k)
        print(f"IWAE K={k:<5d} {bounds[k]:.3f} ± {stderr:.3f} (over test points)")
    _plot(bounds)
    return bounds


def _plot(bounds: dict) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(list(bounds), list(bounds.values()), "o-")
    ax.set(xscale="log", xlabel="K, samples per test point", ylabel="IWAE bound (nats)",
           title="L_K rises with K towards log p(x)")
    fig.tight_layout()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Evaluate a trained run on its test set")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None)
    main(**vars(parser.parse_args()))
    plt.show()
