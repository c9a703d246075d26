"""Data loading: the bundled digits, MNIST-style folders, user files, splits and binarization."""
import struct

import numpy as np
import pytest
import torch

from experiments.common.errors import UserError
from experiments.data.datasets import DATASETS, binarize, load_array_file, load_dataset


def test_digits_are_8x8_grey_levels_with_labels_and_a_fixed_split():
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert a.image_shape == (1, 8, 8) and a.data_dim == 64
    assert len(a.x_train) + len(a.x_test) == 1797
    assert len(a.x_test) == round(1797 * 0.2)
    assert 0.0 <= a.x_train.min() and a.x_train.max() == 1.0
    assert torch.equal(a.x_test, b.x_test)           # the split does not depend on the run
    assert set(a.y_train.tolist()) == set(range(10))


def test_num_train_and_num_test_keep_the_first_examples():
    full = load_dataset("digits")
    cut = load_dataset("digits", num_train=100, num_test=7)
    assert torch.equal(cut.x_train, full.x_train[:100])
    assert torch.equal(cut.y_test, full.y_test[:7])


def test_npz_with_x_is_split_and_uint8_is_scaled(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(50, 5, 4), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x=x, y=np.arange(50) % 3)
    data = load_array_file(str(tmp_path / "mine.npz"), test_fraction=0.2)
    assert data.image_shape == (1, 5, 4) and data.data_dim == 20
    assert len(data.x_train) == 40 and len(data.x_test) == 10
    together = torch.cat([data.x_train, data.x_test]).sort(dim=0).values
    expected = torch.as_tensor(x.reshape(50, -1) / 255.0, dtype=torch.float32).sort(dim=0).values
    assert torch.allclose(together, expected)


def test_npz_with_its_own_test_split_and_npy_vectors(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "split.npz", x_train=rng.random((30, 6)), x_test=rng.random((9, 6)),
             y_train=np.zeros(30, dtype=int), y_test=np.ones(9, dtype=int))
    data = load_dataset(str(tmp_path / "split.npz"))
    assert (len(data.x_train), len(data.x_test)) == (30, 9)
    assert data.image_shape is None and data.y_test.tolist() == [1] * 9
    np.save(tmp_path / "vectors.npy", rng.random((20, 3)))
    assert load_dataset(str(tmp_path / "vectors.npy")).data_dim == 3


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.array([[0.1, np.nan], [0.2, 0.3], [0.1, 0.1]])}, "NaN or infinite"),
    ({"x": np.array([[0.1, np.inf], [0.2, 0.3], [0.1, 0.1]])}, "NaN or infinite"),
    ({"x": np.zeros((4, 2, 2, 2, 2))}, "expected (N, D) vectors, (N, H, W) images or (N, C"),
    ({"x": np.zeros(5)}, "expected (N, D) vectors"),
    ({"x": np.zeros((0, 3))}, "holds no values"),
    ({"x": np.array([["a", "b"]])}, "expected numbers"),
    ({"x": np.zeros((5, 3)), "y": np.zeros(4, dtype=int)}, "one label per example"),
    ({"x": np.zeros((5, 3)), "y": np.zeros(5)}, "integer class labels"),
    ({"images": np.zeros((5, 3))}, "expected an array named x"),
    ({"x": np.zeros((1, 3))}, "cannot be split"),
])
def test_bad_user_files_get_one_line_naming_the_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=None) as info:
        load_dataset(str(path))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_corrupt_and_unknown_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere.npz"))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match="not a readable .npz/.npy file"):
        load_dataset(str(tmp_path / "corrupt.npz"))
    with pytest.raises(UserError, match="unknown data set 'cifar'.*digits, mnist, fashion-mnist"):
        load_dataset("cifar")


def _write_idx(path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: magic (0, 0, dtype 0x08, ndim), sizes, bytes."""
    header = (struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
              + struct.pack(f">{array.ndim}I", *array.shape))
    with open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_is_read_from_a_local_folder_without_network(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", rng.integers(0, 10, 12))
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 5))
    data = load_dataset("mnist", data_dir=str(tmp_path))
    assert data.x_train.shape == (12, 784) and data.x_test.shape == (5, 784)
    assert data.image_shape == (1, 28, 28) and 0 <= data.x_train.min() <= data.x_train.max() <= 1


def test_mnist_offline_without_files_names_the_folder_and_files(tmp_path, monkeypatch):
    import torchvision

    def no_network(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", no_network)
    with pytest.raises(UserError) as info:
        DATASETS["fashion-mnist"](data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "--data-dir" in message


def test_binarize_with_a_seed_is_reproducible_and_leaves_the_global_stream_alone():
    x = torch.rand(100, 10)
    state = torch.get_rng_state()
    a, b = binarize(x, seed=3), binarize(x, seed=3)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(torch.get_rng_state(), state)
    # each pixel is on with probability x: the mean of many draws approaches x
    draws = torch.stack([binarize(x) for _ in range(2000)]).mean(0)
    assert (draws - x).abs().max() < 0.05


def test_a_text_file_named_npz_gets_our_own_line_not_numpys_pickle_advice(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(UserError) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert message.startswith(f"data file {path} is not a NumPy file")
    assert "numpy.save" in message and "pickle" not in message and "\n" not in message


@pytest.mark.parametrize("other", ["x_train", "x_test"])
def test_x_beside_x_train_or_x_test_is_ambiguous_and_refused(tmp_path, other):
    path = tmp_path / "both.npz"
    np.savez(path, x=np.zeros((10, 3)), **{other: np.ones((4, 3))},
             **({"x_test": np.ones((2, 3))} if other == "x_train" else {}))
    with pytest.raises(UserError, match=f"holds both x and {other}, so which examples to use "
                                        "is ambiguous"):
        load_dataset(str(path))


def test_every_data_set_is_listed_with_a_description():
    from experiments.list import registries

    listed = registries().split("data sets:\n")[1].strip().splitlines()
    assert len(listed) == len(DATASETS)
    for line in listed:
        name, _, description = line.strip().partition(" ")
        assert name in DATASETS and description.strip(), line
