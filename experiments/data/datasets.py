"""Data sets as in-memory tensors: the bundled digits, MNIST-style image sets, synthetic sets
with ground truth (``experiments.data.synthetic``), and user files.

Every loader returns a ``Dataset`` of float32 rows (N, D) in a fixed train/test split; images
keep their shape (C, H, W), D = C·H·W, for the convolutional networks and the figures. Nothing
here trains or downloads at import time.
"""
import contextlib
import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import torch

from experiments.common.errors import UserError
from experiments.data.digits28 import SHIFT_SEED, SIZE, enlarged
from experiments.data.synthetic import TRUTHS, describe, draw

SPLIT_SEED = 0          # one test split for every run, so test numbers compare across seeds
BINARIZE_SEED = 12345   # the test set is binarized once, identically for every run


@dataclass
class Dataset:
    """A train/test split of N examples as float32 tensors of shape (N, D).

    ``image_shape`` is (C, H, W) for images (C = 1 for grey levels), None for plain vectors;
    ``y_*`` are integer labels or None (−1 where a label is withheld,
    ``experiments.data.labels``); ``truth`` is the generating distribution of a synthetic data
    set, if known.
    """

    name: str
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: Optional[torch.Tensor] = None
    y_test: Optional[torch.Tensor] = None
    image_shape: Optional[Tuple[int, int, int]] = None
    truth: Optional[object] = None

    @property
    def data_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def num_classes(self) -> Optional[int]:
        """C = 1 + the largest label of either split (labels withheld as −1 do not count),
        None without labels."""
        labels = [y.max() for y in (self.y_train, self.y_test) if y is not None and len(y)]
        return int(max(labels)) + 1 if labels else None

    def to(self, device) -> "Dataset":
        move = lambda t: None if t is None else t.to(device)
        return Dataset(self.name, move(self.x_train), move(self.x_test), move(self.y_train),
                       move(self.y_test), self.image_shape, self.truth)

    @property
    def shape(self) -> "DataShape":
        return DataShape(self.name, self.data_dim, len(self.x_train), len(self.x_test),
                         self.image_shape, self.num_classes)


@dataclass(frozen=True)
class DataShape:
    """What the parts of a run need to know of its data, and what a checkpoint records of it,
    so that a finished run loads without the data: its name, D, the numbers of training and
    test examples, the shape of one image (None for plain vectors) and the number of classes
    of its labels (None without labels)."""

    name: str
    data_dim: int
    num_train: int
    num_test: int
    image_shape: Optional[Tuple[int, ...]] = None
    num_classes: Optional[int] = None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self),
                "image_shape": None if self.image_shape is None else list(self.image_shape)}

    @classmethod
    def from_dict(cls, values: dict) -> "DataShape":
        shape = values.get("image_shape")
        return cls(**{**values, "image_shape": None if shape is None else tuple(shape)})


def load_dataset(name: str, data_dir: str = "data", num_train: Optional[int] = None,
                 num_test: Optional[int] = None, test_fraction: float = 0.2) -> Dataset:
    """The data set called ``name`` (a key of ``DATASETS``, or a path to a .npz/.npy file),
    keeping the first ``num_train`` training and ``num_test`` test examples."""
    if name in DATASETS:
        data = DATASETS[name](data_dir=data_dir, test_fraction=test_fraction,
                              num_train=num_train, num_test=num_test)
    elif name.endswith((".npz", ".npy")) or Path(name).exists():
        data = load_array_file(name, test_fraction)
    else:
        raise UserError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}, "
                        "or give the path of a .npz/.npy file")
    return _truncate(data, num_train, num_test)


def _truncate(data: Dataset, num_train: Optional[int], num_test: Optional[int]) -> Dataset:
    cut = lambda t, n: t if t is None or n is None else t[:n]
    return Dataset(data.name, cut(data.x_train, num_train), cut(data.x_test, num_test),
                   cut(data.y_train, num_train), cut(data.y_test, num_test),
                   data.image_shape, data.truth)


def held_out(data: Dataset, n: int) -> Dataset:
    """``data`` for choosing settings without its test set: its last ``n`` training examples
    become the examples scored (``x_test``, ``y_test``: a validation split), the others stay the
    training set, and the test set is dropped, so that nothing chosen on the result has seen a
    test image or label."""
    if not 0 < n < len(data.x_train):
        raise UserError(f"--validation {n}: hold out between 1 and {len(data.x_train) - 1} of "
                        f"the {len(data.x_train)} training examples")
    train, scored = slice(None, -n), slice(-n, None)
    part = lambda t, rows: None if t is None else t[rows]
    return Dataset(data.name, data.x_train[train], data.x_train[scored],
                   part(data.y_train, train), part(data.y_train, scored), data.image_shape,
                   data.truth)


def split(name: str, x: np.ndarray, y: Optional[np.ndarray], test_fraction: float,
          image_shape=None) -> Dataset:
    """A seeded random split (seed ``SPLIT_SEED``) holding out ``test_fraction`` of the rows."""
    n = len(x)
    num_test = int(round(n * test_fraction))
    if n < 2 or num_test < 1 or num_test >= n:
        raise UserError(f"{name}: {n} example(s) cannot be split into a training and a test "
                        f"set with --test-fraction {test_fraction}; give more examples, or "
                        "x_train and x_test in the .npz")
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    test, train = order[:num_test], order[num_test:]
    pick = lambda a, i: None if a is None else torch.as_tensor(a[i])
    return Dataset(name, pick(x, train), pick(x, test), pick(y, train), pick(y, test),
                   image_shape)


def load_digits(test_fraction: float = 0.2, **_) -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, grey levels 0–16 → [0, 1])."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    return split("digits", x, bunch.target.astype(np.int64), test_fraction,
                 image_shape=(1, 8, 8))


def load_digits28(test_fraction: float = 0.2, **_) -> Dataset:
    """The 8×8 digits enlarged to 28×28, 3 copies each shifted ±2 pixels (5,391 images, offline)

    (``experiments.data.digits28``); split as the 8×8 digits are, before copying."""
    small = load_digits(test_fraction)
    x_train, y_train = enlarged(small.x_train, small.y_train, seed=SHIFT_SEED)
    x_test, y_test = enlarged(small.x_test, small.y_test, seed=SHIFT_SEED + 1)
    return Dataset("digits28", x_train, x_test, y_train, y_test, image_shape=(1, SIZE, SIZE))


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _torchvision_images(name: str, folder: str) -> Callable[..., Dataset]:
    def load(data_dir: str = "data", **_) -> Dataset:
        import torchvision

        cls = getattr(torchvision.datasets, folder)
        sets = {}
        for train in (True, False):
            try:
                sets[train] = cls(data_dir, train=train, download=False)
            except RuntimeError:
                raw = Path(data_dir) / folder / "raw"
                try:
                    with _undone_on_failure(raw):
                        sets[train] = cls(data_dir, train=train, download=True)
                except Exception as exc:  # no network, a proxy, a half-written file…
                    raise UserError(
                        f"{name}: not found in {raw} and could not be downloaded "
                        f"({type(exc).__name__}); put {', '.join(MNIST_FILES)} (or their .gz) "
                        f"there, or pass --data-dir to the folder that holds {folder}/raw"
                    ) from None
        as_x = lambda s: (s.data.reshape(len(s.data), -1).float() / 255.0)
        return Dataset(name, as_x(sets[True]), as_x(sets[False]), sets[True].targets.long(),
                       sets[False].targets.long(), image_shape=(1, 28, 28))

    load.__doc__ = (f"torchvision's {folder}: 28×28 grey-level images, 60,000 for training and "
                    "10,000 for testing")
    return load


@contextlib.contextmanager
def _undone_on_failure(folder: Path) -> Iterator[None]:
    """Where the block fails, remove what it made in ``folder`` (files that were not there
    before) and the folders it created on the way there that are left empty: a failed
    download leaves the data folder as it found it."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]           # deepest first
    before = set(folder.iterdir()) if folder.is_dir() else set()
    try:
        yield
    except BaseException:
        for path in set(folder.iterdir()) - before if folder.is_dir() else ():
            if path.is_file():
                path.unlink()
        for path in made:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"     # how a .npy and a .npz begin


def load_array_file(path: str, test_fraction: float = 0.2) -> Dataset:
    """A user's .npz (``x``, or ``x_train`` and ``x_test``, never both; optional
    ``y``/``y_train``/``y_test``) or .npy file of (N, D) vectors, (N, H, W) grey-level images or
    (N, C, H, W) images (channels first); uint8 0–255 is scaled to [0, 1]."""
    name = Path(path).name
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
        if not head.startswith((NPY_MAGIC, ZIP_MAGIC)):
            raise UserError(f"data file {path} is not a NumPy file (a .npy starts with "
                            f"{NPY_MAGIC!r}, a .npz is a zip; this one starts with {head!r}); "
                            "write it with numpy.save or numpy.savez")
        loaded = np.load(path, allow_pickle=False)
        arrays = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else {"x": loaded}
    except FileNotFoundError:
        raise UserError(f"data file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"data file {path} is a folder; give a .npz or .npy file") from None
    except PermissionError:
        raise UserError(f"data file {path} cannot be read (permission denied)") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"data file {path} is not a readable .npz/.npy file "
                        f"({type(exc).__name__}: {exc})") from None
    if "x" in arrays and ("x_train" in arrays or "x_test" in arrays):
        other = "x_train" if "x_train" in arrays else "x_test"
        raise UserError(f"{name} holds both x and {other}, so which examples to use is "
                        "ambiguous: keep x (split by --test-fraction) or x_train and x_test")
    if "x_train" in arrays and "x_test" in arrays:
        x_train, shape = _examples(arrays["x_train"], f"{name}: x_train")
        x_test, test_shape = _examples(arrays["x_test"], f"{name}: x_test")
        if x_train.shape[1] != x_test.shape[1] or shape != test_shape:
            raise UserError(f"{name}: x_train and x_test differ in shape per example "
                            f"({arrays['x_train'].shape[1:]} vs {arrays['x_test'].shape[1:]})")
        y_train = _labels(arrays.get("y_train"), len(x_train), f"{name}: y_train")
        y_test = _labels(arrays.get("y_test"), len(x_test), f"{name}: y_test")
        as_t = lambda a: None if a is None else torch.as_tensor(a)
        return Dataset(name, as_t(x_train), as_t(x_test), as_t(y_train), as_t(y_test), shape)
    if "x" not in arrays:
        raise UserError(f"{name} holds {', '.join(sorted(arrays)) or 'no arrays'}; expected "
                        "an array named x, or x_train and x_test")
    x, shape = _examples(arrays["x"], f"{name}: x")
    y = _labels(arrays.get("y"), len(x), f"{name}: y")
    return split(name, x, y, test_fraction, image_shape=shape)


def _examples(array: np.ndarray, what: str
              ) -> Tuple[np.ndarray, Optional[Tuple[int, int, int]]]:
    """(N, D) float32 rows from (N, D) vectors, (N, H, W) or (N, C, H, W) images, with the
    image shape (C, H, W)."""
    if array.dtype.kind not in "biuf":
        raise UserError(f"{what} has dtype {array.dtype}; expected numbers (uint8 or float)")
    if array.ndim not in (2, 3, 4):
        raise UserError(f"{what} has shape {array.shape}; expected (N, D) vectors, (N, H, W) "
                        "images or (N, C, H, W) images with their channels first")
    if min(array.shape) < 1:
        raise UserError(f"{what} has shape {array.shape}: it holds no values")
    image_shape = None if array.ndim == 2 else (1,) * (4 - array.ndim) + tuple(array.shape[1:])
    if array.dtype == np.uint8:
        rows = array.reshape(len(array), -1).astype(np.float32) / 255.0
    else:
        rows = array.reshape(len(array), -1)
        bad = ~np.isfinite(rows)
        if bad.any():
            first = int(np.argwhere(bad)[0, 0])
            raise UserError(f"{what} has {int(bad.sum())} NaN or infinite value(s) "
                            f"(the first in example {first}); remove or impute them")
        if np.abs(rows).max() > np.finfo(np.float32).max:
            raise UserError(f"{what} has values beyond ±{np.finfo(np.float32).max:.3g}, the "
                            "float32 range; rescale the data")
        rows = rows.astype(np.float32)
    return rows, image_shape


def _labels(labels: Optional[np.ndarray], n: int, what: str) -> Optional[np.ndarray]:
    if labels is None:
        return None
    if labels.ndim != 1 or len(labels) != n:
        raise UserError(f"{what} has shape {labels.shape}; expected one label per example ({n},)")
    if labels.dtype.kind not in "biu":
        raise UserError(f"{what} has dtype {labels.dtype}; expected integer class labels")
    return labels.astype(np.int64)


def binarize(x: torch.Tensor, seed: Optional[int] = None) -> torch.Tensor:
    """x_b ~ Bernoulli(x) elementwise: grey levels in [0, 1] read as pixel-on probabilities.

    With ``seed`` the draw is reproducible and leaves the global random state untouched.
    """
    if seed is None:
        return torch.bernoulli(x)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=generator)


def _synthetic(name: str) -> Callable[..., Dataset]:
    def load(num_train: Optional[int] = None, num_test: Optional[int] = None, **_) -> Dataset:
        x_train, x_test = draw(name, num_train, num_test)
        return Dataset(name, x_train, x_test, truth=TRUTHS[name])

    load.__doc__ = describe(TRUTHS[name])
    return load


DATASETS: Dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": _torchvision_images("mnist", "MNIST"),
    "fashion-mnist": _torchvision_images("fashion-mnist", "FashionMNIST"),
    "digits28": load_digits28,
    **{name: _synthetic(name) for name in TRUTHS},
}
