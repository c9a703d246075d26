"""Files written atomically: each goes to a temporary name in the same folder and is renamed
over the old one (``os.replace`` is atomic on POSIX), so a crash mid-write leaves the previous
version intact. They get the mode a plain ``open`` gives, 0666 less the umask (0644 under the
usual 022), not the 0600 of a temporary file."""
import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, List

from experiments.common.errors import UserError


def write_atomically(path: Path, write: Callable[[io.IOBase], None], binary: bool = False) -> None:
    """Write ``path`` through ``write(file)`` into a temporary sibling, then rename it over."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:              # a read-only or vanished folder: the user's to fix
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_folder(path: Path, option: str = "--out") -> Path:
    """``path`` as a folder to write into, created with its parents where missing; refused in
    one line (naming the ``option`` that gave it) where it is a file or cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {path} ({option}): {exc.strerror}; "
                        f"choose another {option}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path} is not writable; choose another {option}")
    return path


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def copy_file(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` byte for byte."""
    write_atomically(path, lambda f: f.write(Path(source).read_bytes()), binary=True)


def write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text))


def write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: List[Dict[str, object]]) -> None:
    """One row per dict; the columns are every key of any row, in the order they first appear
    (a row without a column leaves its cell empty)."""
    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)

    write_atomically(path, write)
