"""A run's folder: where it goes, one writer at a time, and checkpoints that can be resumed.

Every file is written atomically (``experiments.common.files``). Checkpoints hold state dicts,
the optimizer's state, the random state and the config, never a pickled module; they load with
``torch.load(weights_only=True)``.
"""
import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Iterator, List, Optional

import torch

from experiments.common.distributed import world
from experiments.common.errors import UserError
from experiments.common.files import make_folder, write_atomically
from experiments.common.processes import alive
from experiments.config.config import Config
from experiments.data.datasets import DataShape
from experiments.parts.namespaces import local_names

CHECKPOINT_FORMAT = "elbo-lab-checkpoint/1"
RUN_FILES = ("config.json", "metrics.csv", "summary.json", "checkpoint.pt")


def default_run_dir(config: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.model}-{config.guide}-{config.elbo}"


def prepare_run_dir(out: Path, force: bool) -> Path:
    """Create ``out``, refusing a folder that already holds a run unless ``force``."""
    out = Path(out)
    held = [name for name in RUN_FILES if out.is_dir() and (out / name).exists()]
    if held and not force:
        raise UserError(f"--out {out} already holds a run ({', '.join(held)}); pass --force to "
                        f"overwrite it, --resume {out} to continue it, or choose another --out")
    return make_folder(out, "--out")


def remove_run(run_dir: Path) -> None:
    """Remove the files of the run that ``run_dir`` held (``--force``), so that nothing of it
    (a checkpoint above all) is taken for the new run's; call it holding the folder."""
    for name in RUN_FILES:
        (Path(run_dir) / name).unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (our process id) while a run writes the folder: a second run
    pointed at the same folder is refused instead of interleaving its files. A lock left by a
    process that no longer exists is taken over."""
    lock = Path(run_dir) / ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is None:                   # created, its owner not yet written
                time.sleep(0.1)
                owner = _lock_owner(lock)
            if owner is not None and owner != os.getpid() and alive(owner):
                raise UserError(f"{run_dir} is being written by another run (process {owner}); "
                                "wait for it to finish or choose another --out") from None
            lock.unlink(missing_ok=True)
        except OSError as exc:                  # a read-only folder, or a read-only disk
            raise UserError(f"cannot write into {run_dir}: {exc.strerror}; choose another "
                            "--out") from None
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> Optional[int]:
    try:
        return int(lock.read_text().strip() or -1)
    except (OSError, ValueError):
        return None


def save_checkpoint(path: Path, *, config: Config, epoch: int, model, guide, optim,
                    metrics: List[dict], data: Optional[DataShape] = None) -> None:
    """The state of a run after ``epoch`` epochs, with the shape of its ``data``, so that the
    run can be resumed, and loaded without its data (``experiments.training.trained``)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        **({} if data is None else {"data": data.to_dict()}),
        "epoch": epoch,
        "world_size": world().size,     # its global batch: world_size × config's batch_size
        "threads": torch.get_num_threads(),     # kept by a resume under --threads auto
        "model": model.state_dict(),
        "guide": guide.state_dict(),
        "optim": local_names(optim.get_state()),     # names as before namespaces
        # training draws its randomness (z ~ q, dynamic binarization) from torch's stream only
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "metrics": metrics,
    }
    write_atomically(path, lambda f: torch.save(state, f), binary=True)


def run_folder_of(path: Path) -> Path:
    """The run folder that ``path`` names: ``path`` itself, or the folder of a checkpoint.pt."""
    path = Path(path)
    return path.parent if path.name == "checkpoint.pt" and path.is_file() else path


def load_checkpoint(run_dir: Path, option: str = "--resume") -> dict:
    """The checkpoint of ``run_dir`` (or the checkpoint.pt it names), refused with one line
    (naming the ``option`` that gave the folder) if missing, corrupt or foreign."""
    run_dir = run_folder_of(run_dir)
    path = Path(run_dir) / "checkpoint.pt"
    if Path(run_dir).is_file():
        raise UserError(f"{option} {run_dir} is a file; pass the run folder that holds "
                        "checkpoint.pt")
    if not Path(run_dir).is_dir():
        raise UserError(f"{option} {run_dir}: no such run folder")
    if not path.exists():
        raise UserError(f"{option} {run_dir}: it holds no checkpoint.pt")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # torch's own notes on foreign pickles
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{option} {run_dir}: checkpoint.pt is corrupt or not an ELBO Lab "
                        f"checkpoint ({type(exc).__name__}); start a new run instead") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{option} {run_dir}: checkpoint.pt is not an ELBO Lab checkpoint "
                        f"(expected format {CHECKPOINT_FORMAT})")
    return state


def checkpoint_epoch(run_dir: Path) -> int:
    """The epoch of ``run_dir``'s checkpoint, 0 if it has none that loads."""
    try:
        return int(load_checkpoint(run_dir)["epoch"])
    except UserError:
        return 0


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def load_parts(run_dir: Path, state: dict, parts) -> None:
    """The trained parameters of the checkpoint ``state`` into ``parts``' model and guide,
    refused in one line where they do not fit."""
    try:
        parts.model.load_state_dict(state["model"])
        parts.guide.load_state_dict(state["guide"])
    except (RuntimeError, KeyError) as exc:
        raise UserError(f"{run_dir}: the checkpoint does not fit this model and guide "
                        f"({str(exc).splitlines()[0]})") from None
