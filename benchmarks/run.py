"""ELBO Lab against plain PyTorch, in one run: writes ``benchmarks/RESULTS.md``.

    make bench                                        # = python -m benchmarks.run
    python -m benchmarks.run --quick --out /tmp/R.md  # fewer rounds and images, about 2 minutes
    python -m benchmarks.run --only whole-runs --out /tmp/W.md   # one part of section 1

``--data`` defaults to the largest real image set at hand: MNIST when its files are in
``--data-dir``, else scikit-learn's 8×8 digits upsampled to 28×28 (784 pixels, like MNIST).
The benchmark trains with the threads a run would take (``--threads``, default ``auto``:
``experiments.common.threads``), and says which; its runs keep their recordings
(``experiments.recording.cache``) in a temporary folder of their own, never the user's cache.
"""
import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional
from unittest import mock

import numpy as np
import pyro
import torch
from torch.nn import functional as F

from benchmarks import (
    estimators,
    evaluation,
    numpyro_peer,
    particles,
    processes,
    report,
    shared_cores,
    training,
)
from experiments.common.command import command
from experiments.common.errors import UserError
from experiments.common.threads import threads_of_run
from experiments.config.config import Config, thread_count
from experiments.data.datasets import BINARIZE_SEED, MNIST_FILES, Dataset, binarize
from experiments.recording.cache import ENVIRONMENT
from experiments.training.prepare import prepare_data

RESULTS = Path(__file__).parent / "RESULTS.md"


@dataclass(frozen=True)
class Scale:
    """How long each benchmark runs: rounds of alternation, and images for the IWAE."""

    training_rounds: int
    particle_rounds: int
    iwae_images: int
    iwae_rounds: int
    estimator_rounds: int
    process_epochs: int = 4         # training on 1 and 2 processes (the first epoch untimed)
    process_iwae_images: int = 200  # IWAE-5000 by 1 and 2 ranks
    process_rounds: int = 3
    whole_run_rounds: int = 5       # 10-epoch runs, ELBO Lab and the reference
    shared_rounds: int = 6          # turns per thread count beside busy processes


FULL = Scale(training_rounds=30, particle_rounds=10, iwae_images=1000, iwae_rounds=10,
             estimator_rounds=4)
QUICK = Scale(training_rounds=8, particle_rounds=3, iwae_images=100, iwae_rounds=2,
              estimator_rounds=2, process_epochs=2, process_iwae_images=20, process_rounds=1,
              whole_run_rounds=2, shared_rounds=2)


def default_data(data_dir: str) -> str:
    """``mnist`` if its four files are in ``data_dir``, else the path of the bundled digits
    upsampled to 28×28 (bilinear), written once into ``data_dir``."""
    raw = Path(data_dir) / "MNIST" / "raw"
    if all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in MNIST_FILES):
        return "mnist"
    path = Path(data_dir) / "digits-28x28.npz"
    if not path.exists():
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # (N, 1, 8, 8)
        images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=images[:, 0].clamp(0, 1).numpy(), y=digits.target)
    return str(path)


def iwae_images(data: Dataset, n: int) -> torch.Tensor:
    """The first ``n`` test images, topped up with training images binarized once (a fixed
    seed) where the test set is smaller."""
    if len(data.x_test) >= n:
        return data.x_test[:n]
    extra = binarize(data.x_train[:n - len(data.x_test)], seed=BINARIZE_SEED)
    return torch.cat([data.x_test, extra])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="mnist, digits, or a .npz/.npy file of 28×28 images "
                                  "(default: MNIST if in --data-dir, else upsampled digits)")
    p.add_argument("--data-dir", default="data", help="folder of MNIST/raw (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer rounds and images (a smoke run)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="intra-op threads, as a run's --threads (default: auto, one per core "
                        "left free by other processes)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write the results "
                                                             "(default: benchmarks/RESULTS.md)")
    p.add_argument("--only", choices=["whole-runs"], help="measure one part alone: whole-runs "
                   "= the first epoch and the whole 10-epoch runs, cold and warm, at batch 128 "
                   "(needs --out: RESULTS.md is the whole benchmark's)")
    return p


@command
def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.only and args.out == RESULTS:
        raise UserError(f"--only {args.only} measures one part: give --out FILE "
                        "(benchmarks/RESULTS.md is written by the whole benchmark)")
    with threads_of_run(args.threads) as threads, \
            tempfile.TemporaryDirectory(prefix="elbo-lab-bench-") as recordings, \
            mock.patch.dict(os.environ, {ENVIRONMENT: recordings}):   # its processes' too
        return _benchmarks(args, argv, f"Threads: {threads.threads} ({threads.reason}).",
                           recordings)


def _benchmarks(args: argparse.Namespace, argv: List[str], threads: str, recordings: str) -> int:
    scale = QUICK if args.quick else FULL
    config = Config(data=args.data or default_data(args.data_dir), data_dir=args.data_dir,
                    latent_dim=20, hidden_dims=(400,), lr=1e-3, seed=args.seed, progress=False,
                    recording_cache=recordings)
    data = prepare_data(config.validate(), torch.device("cpu"))
    x_iwae = iwae_images(data, scale.iwae_images)
    summary = (f"`{config.data}`: {len(data.x_train)} training and {len(data.x_test)} test "
               f"images of {data.data_dim} pixels, dynamically binarized; the IWAE benchmark "
               f"uses {len(x_iwae)} binarized images (the test set first). {threads}")
    if args.data is None and config.data != "mnist":
        summary += (f" MNIST's files are not in `{args.data_dir}/MNIST/raw` (nothing is "
                    "downloaded): the bundled 8×8 digits upsampled to 28×28 stand in; "
                    "`--data mnist --data-dir DIR` takes a local copy.")
    benchmarks = [
        ("training", lambda: training.benchmark(config, data, rounds=scale.training_rounds,
                                                whole_run_rounds=scale.whole_run_rounds)),
        ("K particles", lambda: particles.benchmark(config, data, rounds=scale.particle_rounds)),
        ("IWAE evaluation", lambda: evaluation.iwae(config, x_iwae, scale.iwae_rounds)),
        ("exact log-likelihoods", lambda: evaluation.exact(config)),
        ("estimators", lambda: estimators.benchmark(config, data,
                                                    rounds=scale.estimator_rounds)),
        ("processes", lambda: processes.benchmark(
            config, iwae_images(data, scale.process_iwae_images), scale.process_epochs,
            scale.process_rounds)),
        ("shared cores", lambda: shared_cores.benchmark(config, data, scale.shared_rounds)),
    ]
    if args.only == "whole-runs":
        benchmarks = [("whole runs", lambda: training.whole_runs_section(
            config, data, scale.whole_run_rounds))]
    if not numpyro_peer.available():
        print(numpyro_peer.MISSING, file=sys.stderr)
    sections = [report.Section("Data", summary)]
    for number, (name, benchmark) in enumerate(benchmarks, 1):
        print(f"[{number}/{len(benchmarks)}] {name} …", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        with pyro.validation_enabled(config.pyro_validation):      # as a run trains: off
            section = benchmark()
        section.body += (f"\n\nLoad average (1 min) of the machine when this benchmark started "
                         f"and ended: {load:.1f} and {os.getloadavg()[0]:.1f}.")
        sections.append(section)
    report.write(args.out, " ".join(["python -m benchmarks.run", *argv]), sections)
    print(f"results in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
