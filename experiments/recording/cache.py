"""Recorded programs kept between runs: a cache on disk, keyed by what a recording depends on.

A signature costs a run two recordings and one rewrite (``svi``: about 0.3 s of CPU for a
784-400-20 VAE), every run again. ``RecordingCache`` keeps each signature's final program — the
functional, simplified ``program.Program`` a replay runs — in one file, and a later run of the
same program loads it instead of recording, as PyTorch's compile caches do. The file's name is
the SHA-256 of what the program depends on (``cache_key.material``); the file holds the program
as plain data (``cache_entry``).

Writes go to a temporary file renamed over the entry (``os.replace``: a reader sees the old file
or the new one); an entry that cannot be read, or whose material differs from its name's, is ignored
with one line (``logging``, ``experiments.recording.cache``) and recorded anew.

Where: ``$ELBO_LAB_RECORDING_CACHE`` (a folder, or ``off``), else
``$XDG_CACHE_HOME/elbo-lab/recordings``, else ``~/.cache/elbo-lab/recordings``; a run's
``--recording-cache`` overrides both. At most ``MAX_ENTRIES`` files are kept, the least
recently used dropped first.
"""
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from experiments.common.recording_folder import ENVIRONMENT, cache_folder  # noqa: F401

log = logging.getLogger(__name__)

#: entries kept, at most (each a few hundred kB for a VAE)
MAX_ENTRIES = 256


class Uncacheable(Exception):
    """This program cannot be found again by another run (the message says why)."""


class RecordingCache:
    """Programs in files named by the SHA-256 of their material (see the module's docstring)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, material: str) -> Path:
        return self.folder / f"{hashlib.sha256(material.encode()).hexdigest()}.pt"

    def load(self, material: str) -> Optional[dict]:
        """The entry stored for ``material``, or None (none, or one that cannot be used)."""
        path = self.path(material)
        try:
            entry = torch.load(path, weights_only=True)
            if not isinstance(entry, dict) or entry.get("material") != material:
                raise ValueError("it was stored for another program or version")
            os.utime(path)                   # recently used: kept longest
            return entry
        except FileNotFoundError:
            return None
        except Exception as error:           # a file on disk: anything may be wrong with it
            log.warning("recording cache: ignored %s (%s: %s); recording anew", path,
                        type(error).__name__, str(error).splitlines()[0] if str(error) else "")
            return None

    def store(self, material: str, entry: dict) -> None:
        """Write the entry atomically (a temporary file renamed over it); a cache that cannot
        be written is left alone (one line)."""
        path = self.path(material)
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    torch.save({**entry, "material": material}, file)
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
            self._prune()
        except OSError as error:
            log.warning("recording cache: cannot write %s (%s)", path, error)

    def forget(self, material: str) -> None:
        try:
            self.path(material).unlink()
        except OSError:
            pass

    def _prune(self) -> None:
        """Drop the least recently used entries beyond ``MAX_ENTRIES``."""
        entries = sorted(self.folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        for path in entries[:max(0, len(entries) - MAX_ENTRIES)]:
            path.unlink(missing_ok=True)
