"""Measurements of M2 (``--model ssvae``) against its classifier alone, per epoch.

    python -m experiments.results.m2_measure OUT VARIANT[,VARIANT…] [--seeds 0,1] [--epochs 8]
        [--data digits28] [--labels 100] [--num-train N]

trains each named variant (``VARIANTS``: the ssvae's defaults with some options changed) for
each seed, into OUT/<data>-<labels>/<variant>-seed<s>/, and prints each run's test accuracy of
argmax q(y|x) by epoch beside that of the same network trained on the labeled points alone
(the baseline); ``m2_tables.py`` makes the tables from the folders. Nothing here reads the
test labels to choose anything: the runs only report them.
"""
import argparse
import sys
from pathlib import Path

from experiments.config.config import Config
from experiments.training.end_to_end import run

#: what each variant changes of the ssvae's defaults (``models.ssvae.SSVAE.defaults``)
VARIANTS = {
    "defaults": {},
    "lesson7": dict(aux_weight=46.0, likelihood="continuous-bernoulli", latent_dim=8,
                    hidden_dims=(128,), batch_size=64, lr=2e-3, labeled_batch=0),
    "aux-0": dict(aux_weight=0.0, labeled_batch=0),
    "aux-460": dict(aux_weight=460.0, labeled_batch=0),
    "aux-4600": dict(aux_weight=4600.0, labeled_batch=0),
    "aux-563": dict(aux_weight=563.5),            # 46 · 784/64: α grown with the pixels
    "labeled-16-aux-46": dict(aux_weight=46.0, labeled_batch=16),
    "cli-defaults": dict(aux_weight=46.0, likelihood="bernoulli", latent_dim=2,
                         hidden_dims=(400,), batch_size=128, lr=1e-3, labeled_batch=0),
}


def measure(out: Path, variant: str, seed: int, args) -> list:
    """Train one run; its metrics, one row per epoch."""
    folder = out / f"{args.data}-{args.labels}" / f"{variant}-seed{seed}"
    config = Config(model="ssvae", data=args.data, labels=args.labels, epochs=args.epochs,
                    num_train=args.num_train, seed=seed, iwae_samples=2, progress=False,
                    out=str(folder), **VARIANTS[variant])
    return run(config, force=True).metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("variants", type=lambda s: s.split(","))
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--data", default="digits28")
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--num-train", type=int, default=None)
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {', '.join(unknown)}: choose among {', '.join(VARIANTS)}")
    for variant in args.variants:
        for seed in args.seeds:
            rows = measure(args.out, variant, seed, args)
            last = rows[-1]
            print(f"{variant} seed {seed}: " + " ".join(
                f"{r['test_accuracy']:.3f}" for r in rows)
                + f" | baseline {last['baseline_accuracy']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
