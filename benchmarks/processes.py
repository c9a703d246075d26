"""Target 6: one run on several processes (torchrun + DistributedDataParallel, gloo on the CPU).

Training: ``python -m experiments.train`` in one process, and under ``torchrun --standalone
--nproc_per_node 2``, each process with the same number of threads (``OMP_NUM_THREADS``, the
cores shared out between the two processes); two processes of half the batch make the same
global minibatch (the same optimization) as one, two of the full batch a global minibatch
twice as large. Throughput is the training set over the median epoch's training time (the
first epoch, which warms up, left out; evaluation is not counted).

Evaluation: ``iwae_log_likelihood`` with 5,000 samples per image on the same images, by one
process and shared by two ranks (``experiments.common.distributed.shared_work``), the best of a
few rounds; the estimate must be the same number.

With two or more GPUs the same rows are measured with ``--device cuda`` (NCCL), one GPU per
process.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pyro
import torch

from benchmarks.report import Section, Target, paragraphs, table
from experiments.config.config import Config
from experiments.evaluation.likelihood import iwae_log_likelihood

SAMPLES = 5000
ROOT = Path(__file__).resolve().parent.parent
SPEED_UP_GOAL = 1.3          # two processes of half the batch against one, images per second


def _environment(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT),
            "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}


def _launch(processes: int, module: str, args: List[str], threads: int) -> None:
    """``python -m module args`` alone, or under torchrun with ``processes`` ranks."""
    prefix = [sys.executable] + ([] if processes == 1 else [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)])
    done = subprocess.run(prefix + ["-m", module, *args], env=_environment(threads),
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{module} on {processes} process(es) failed: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")


def _train(config: Config, processes: int, batch_size: int, epochs: int, threads: int,
           device: str, folder: Path) -> Dict[str, float]:
    out = folder / f"train-{device}-{processes}x{batch_size}"
    _launch(processes, "experiments.train", [
        "--data", config.data, "--data-dir", config.data_dir, "--latent-dim",
        str(config.latent_dim), "--hidden-dims", ",".join(map(str, config.hidden_dims)),
        "--lr", str(config.lr), "--seed", str(config.seed), "--batch-size", str(batch_size),
        "--epochs", str(epochs), "--num-test", "100", "--iwae-samples", "10", "--device", device,
        "--no-progress", "--out", str(out)], threads)
    with open(out / "metrics.csv") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)][1:]
    summary = json.loads((out / "summary.json").read_text())
    return {"images_per_second": summary["num_train"] / statistics.median(seconds),
            "test_elbo": summary["test_elbo"]}


def _evaluate(config: Config, x: torch.Tensor, processes: int, rounds: int, threads: int,
              device: str, folder: Path) -> dict:
    images, out = folder / "iwae-images.pt", folder / f"iwae-{device}-{processes}.json"
    torch.save(x, images)
    _launch(processes, "benchmarks.processes", [
        "--iwae", str(images), "--config", json.dumps(config.to_dict()), "--rounds", str(rounds),
        "--device", device, "--out", str(out)], threads)
    return json.loads(out.read_text())


def benchmark(config: Config, x_iwae: torch.Tensor, epochs: int, rounds: int) -> Section:
    threads = max(1, (os.cpu_count() or 2) // 2)
    devices = ["cpu"] + (["cuda"] if torch.cuda.device_count() >= 2 else [])
    training_rows, evaluation_rows, targets = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            trained = {(p, b): _train(config, p, b, epochs, threads, device, Path(tmp))
                       for p, b in ((1, 128), (2, 64), (2, 128))}
            alone = trained[(1, 128)]["images_per_second"]
            training_rows += [(device, p, b, p * b, f"{t['images_per_second']:.0f}",
                               f"{t['images_per_second'] / alone:.2f}×", f"{t['test_elbo']:.2f}")
                              for (p, b), t in trained.items()]
            evaluated = {p: _evaluate(config, x_iwae, p, rounds, threads, device, Path(tmp))
                         for p in (1, 2)}
            evaluation_rows += [(device, p, f"{e['seconds']:.2f}",
                                 f"{evaluated[1]['seconds'] / e['seconds']:.2f}×",
                                 f"{e['estimate']:.4f}") for p, e in evaluated.items()]
            speed_up = trained[(2, 64)]["images_per_second"] / alone
            targets += [
                Target(f"6. training on 2 processes ({device}), global batch 128",
                       f"{speed_up:.2f}× the images per second of 1",
                       f"≥ {SPEED_UP_GOAL}× on a machine with the cores free", None),
                Target(f"6. IWAE-{SAMPLES} shared by 2 ranks ({device})",
                       f"{evaluated[1]['seconds'] / evaluated[2]['seconds']:.2f}× faster, "
                       "estimate " + ("identical" if evaluated[1]["estimate"] ==
                                      evaluated[2]["estimate"] else "**different**"),
                       "the same estimate as one process",
                       evaluated[1]["estimate"] == evaluated[2]["estimate"])]
    body = "\n\n".join([
        paragraphs(__doc__),
        f"{threads} thread(s) per process, {os.cpu_count()} cores visible; training "
        f"{epochs} epochs of `{config.data}` (784-{config.hidden_dims[0]}-{config.latent_dim} "
        f"VAE, `trace`):",
        table(["device", "processes", "batch per process", "global batch", "images / s",
               "× 1 process", f"test ELBO after {epochs} epochs"], training_rows),
        f"IWAE with {SAMPLES} samples on {len(x_iwae)} images, best of {rounds} round(s):",
        table(["device", "ranks", "seconds", "× 1 rank", "estimate"], evaluation_rows)])
    return Section("6. Processes: torchrun + DistributedDataParallel", body, targets)


def _iwae_worker(images: Path, config: Config, rounds: int, device: str,
                 out: Optional[Path]) -> None:
    """One rank of the evaluation benchmark (rank 0 writes ``out``)."""
    from experiments.common.distributed import joined, shared_work
    from experiments.common.ranks import leader
    from experiments.parts.build import build_parts

    with joined("nccl" if device == "cuda" else "gloo", timeout=3600) as here:
        where = torch.device("cuda", here.local_rank) if device == "cuda" else torch.device("cpu")
        x = torch.load(images).to(where)
        torch.manual_seed(config.seed)
        pyro.clear_param_store()
        parts = build_parts(config, x.shape[1], len(x), where)
        best = float("inf")
        for _ in range(rounds):
            if here.size > 1:
                torch.distributed.barrier()
            start = time.perf_counter()
            with shared_work():
                estimate, stderr = iwae_log_likelihood(parts.model, parts.guide, x, SAMPLES)
            best = min(best, time.perf_counter() - start)
        if leader() and out is not None:
            out.write_text(json.dumps({"seconds": best, "estimate": estimate,
                                       "stderr": stderr}))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="one rank of the evaluation benchmark")
    p.add_argument("--iwae", type=Path, required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    _iwae_worker(a.iwae, Config.from_dict(json.loads(a.config)), a.rounds, a.device, a.out)
