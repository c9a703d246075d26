"""Measurements of M2 (``--model ssvae``) against its classifier alone, per epoch.

    python -m experiments.results.m2_measure OUT VARIANT[,VARIANT…] [--seeds 0,1] [--epochs 10]
        [--data digits28] [--labels 100] [--num-train N] [--validation N]

trains each named variant (``VARIANTS``: the ssvae's defaults with some options changed) for
each seed, into OUT/<data>-<labels>/<variant>-seed<s>/ (its config.json, and a metrics.csv of
the test accuracy of argmax q(y|x) by epoch beside that of the same network trained on the
labeled points alone, the baseline); ``m2_tables.py`` makes the tables from the folders. The
steps and the baseline are those of ``elbolab train`` (``experiments.training.loop``); the
bounds it also evaluates every epoch are left out, which is what makes these runs short (and
draws the training's random numbers in another order than a ``train`` run of the same seed).
Nothing here reads the test labels to choose anything: the runs only report them.

With ``--validation N`` the runs score N held-out training images instead of the test set,
which they never load into the run: the N after the ``--num-train`` trained on (the last N of
the training images without ``--num-train``, the rest trained on), their labels used only to
score. Their metrics.csv then has ``validation_accuracy`` (argmax q(y|x), by epoch) beside
``baseline_accuracy`` (the classifier alone, on the same images), and the folders go to
OUT/<data>-<labels>-validation/; ``m2_tables.py --validation`` chooses the defaults from them.
"""
import argparse
import sys
from pathlib import Path

import torch

from experiments.common.files import write_csv, write_json
from experiments.config.config import Config, resolve
from experiments.evaluation.baselines import accuracy
from experiments.training.loop import (
    labeled_test_inputs,
    start_attempt,
    stepper,
    training_steps,
)
from experiments.training.prepare import prepare_data

#: what each variant changes of the ssvae's defaults (``models.ssvae.SSVAE.defaults``)
VARIANTS = {
    "lesson7": dict(aux_weight=46.0, hidden_dims=(128,), labeled_batch=0),
    "labeled-16-aux-46": dict(aux_weight=46.0, hidden_dims=(128,)),
    "hidden-128": dict(hidden_dims=(128,)),       # the defaults before the width was measured
    "hidden-128-aux-6000": dict(hidden_dims=(128,), aux_weight=6000.0),
    "hidden-128-labeled-64": dict(hidden_dims=(128,), labeled_batch=64),
    "hidden-128-latent-2": dict(hidden_dims=(128,), latent_dim=2),
    "hidden-128-latent-32": dict(hidden_dims=(128,), latent_dim=32),
    "hidden-1024": dict(hidden_dims=(1024,)),
    "aux-46": dict(aux_weight=46.0),
    "labeled-alike": dict(labeled_batch=0),        # labeled and unlabeled rows drawn alike
    "labeled-64": dict(labeled_batch=64),
    "defaults": {},
}


def scored(args) -> str:
    """Which images the runs score: the held-out training images ("validation") or the test
    set ("test")."""
    return "validation" if args.validation else "test"


def measure(out: Path, variant: str, seed: int, args) -> list:
    """Train one run, writing its folder as it goes; its metrics, one row per epoch."""
    setting = f"{args.data}-{args.labels}" + ("-validation" if args.validation else "")
    folder = out / setting / f"{variant}-seed{seed}"
    config = resolve(Config(model="ssvae", data=args.data, labels=args.labels,
                            epochs=args.epochs, num_train=args.num_train, seed=seed,
                            progress=False, out=str(folder), **VARIANTS[variant]).validate())
    device = torch.device("cpu")
    data = prepare_data(config, device, args.validation)       # x_test: the images scored
    attempt = start_attempt(config, data, device)
    classifier = labeled_test_inputs(attempt.parts, data, config)["classifier"]
    with torch.no_grad():
        baseline = accuracy(classifier(data.x_test), data.y_test)
    svi = stepper(attempt.parts, attempt.optim, config)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", config.record())
    rows = []
    for epoch in range(1, config.epochs + 1):
        for _ in training_steps(svi, attempt.parts.elbo, data, config, epoch):
            pass
        rows.append({"epoch": epoch, "baseline_accuracy": baseline, f"{scored(args)}_accuracy":
                     accuracy(attempt.parts.guide.classify(data.x_test), data.y_test)})
        write_csv(folder / "metrics.csv", rows)       # a run cut short counts with its epochs
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("variants", type=lambda s: s.split(","))
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data", default="digits28")
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--num-train", type=int, default=None)
    p.add_argument("--validation", type=int, default=0, metavar="N",
                   help="score N held-out training images instead of the test set")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {', '.join(unknown)}: choose among {', '.join(VARIANTS)}")
    for variant in args.variants:
        for seed in args.seeds:
            rows = measure(args.out, variant, seed, args)
            print(f"{variant} seed {seed}, {scored(args)}: " + " ".join(
                f"{r[scored(args) + '_accuracy']:.3f}" for r in rows)
                + f" | baseline {rows[-1]['baseline_accuracy']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
