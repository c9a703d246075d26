"""Property-based attack on the user-file loader: any array a user can save either loads into
a correct data set or is refused with one line naming the problem; never a traceback, never a
silent wrong result."""
import io
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from experiments.common.errors import UserError
from experiments.data.datasets import load_dataset

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

dtypes = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                   hnp.boolean_dtypes(), hnp.complex_number_dtypes(), hnp.byte_string_dtypes(),
                   hnp.unicode_string_dtypes())
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))


def _expected_rows(x: np.ndarray) -> np.ndarray:
    """What a correct loader must produce: (N, D) float32, uint8 scaled by 1/255."""
    rows = x.reshape(len(x), -1).astype(np.float32)
    return rows / 255.0 if x.dtype == np.uint8 else rows


def _load_or_refuse(path):
    try:
        return load_dataset(str(path), test_fraction=0.25)
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message and path.name in message
        return None


@SETTINGS
@given(x=arrays)
def test_any_saved_array_loads_correctly_or_is_refused_in_one_line(tmp_path, x):
    path = tmp_path / "data.npy"
    np.save(path, x)
    data = _load_or_refuse(path)
    if data is None:
        return
    # it loaded: then it was a sensible array, and nothing was lost or changed
    assert x.dtype.kind in "biuf" and x.ndim in (2, 3, 4) and x.size > 0 and len(x) >= 2
    rows = _expected_rows(x)
    assert np.isfinite(rows).all()
    loaded = np.concatenate([data.x_train.numpy(), data.x_test.numpy()])
    assert loaded.shape == rows.shape
    assert np.array_equal(np.sort(loaded, axis=0), np.sort(rows, axis=0))
    assert data.image_shape == (None if x.ndim == 2 else (1,) * (4 - x.ndim) + x.shape[1:])


@SETTINGS
@given(n=st.integers(1, 8), d=st.integers(1, 4), labels=st.integers(0, 10),
       label_dtype=st.sampled_from(["int64", "uint8", "float32", "bool"]),
       poison=st.sampled_from([None, np.nan, np.inf, -np.inf]))
def test_labels_and_non_finite_values(tmp_path, n, d, labels, label_dtype, poison):
    x = np.random.default_rng(0).random((n, d))
    if poison is not None:
        x[n // 2, 0] = poison
    y = np.zeros(labels, dtype=label_dtype)
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    data = _load_or_refuse(path)
    if data is not None:
        assert poison is None and labels == n and label_dtype != "float32" and n >= 2
        assert len(data.y_train) + len(data.y_test) == n


@SETTINGS
@given(cut=st.integers(0, 400), kind=st.sampled_from(["npy", "npz"]))
def test_truncated_files_are_refused_never_half_read(tmp_path, cut, kind):
    buffer = io.BytesIO()
    x = np.random.default_rng(1).random((20, 5))
    if kind == "npy":
        np.save(buffer, x)
    else:
        np.savez(buffer, x=x)
    raw = buffer.getvalue()
    path = tmp_path / f"data.{kind}"
    path.write_bytes(raw[: min(cut, len(raw) - 1)])
    assert _load_or_refuse(path) is None


@SETTINGS
@given(junk=st.binary(min_size=0, max_size=200))
def test_files_that_are_not_numpy_at_all(tmp_path, junk):
    path = tmp_path / "data.npz"
    path.write_bytes(junk)
    assert _load_or_refuse(path) is None


def test_a_zip_of_something_else(tmp_path):
    path = tmp_path / "data.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")
    assert _load_or_refuse(path) is None
