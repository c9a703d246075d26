"""``--data digits28``: the 8×8 digits at MNIST's size, each a shifted copy of one 8×8 digit of
the same split and label, found again by undoing its shift."""
import pytest
import torch
from torch.nn.functional import interpolate, pad

from experiments.data.datasets import load_dataset
from experiments.data.digits28 import BOX, COPIES, MAX_SHIFT, SIZE

SHIFTS = [(dy, dx) for dy in range(-MAX_SHIFT, MAX_SHIFT + 1)
          for dx in range(-MAX_SHIFT, MAX_SHIFT + 1)]


def _framed(small: torch.Tensor) -> torch.Tensor:
    """The 8×8 rows as 28×28 images before any shift, (N, 28, 28)."""
    box = interpolate(small.reshape(-1, 1, 8, 8), size=(BOX, BOX), mode="bilinear").clamp(0, 1)
    return pad(box, (4, 4, 4, 4)).reshape(-1, SIZE, SIZE)


def _sources(images: torch.Tensor, framed: torch.Tensor):
    """For each 28×28 image, the index of the unshifted image it is a shift of (−1: none)."""
    found = []
    for image in images.reshape(-1, SIZE, SIZE):
        hits = [int(i) for s in SHIFTS
                for i in torch.nonzero((framed - image.roll((-s[0], -s[1]), (0, 1)))
                                       .abs().amax(dim=(1, 2)) < 1e-6)]
        found.append(hits[0] if hits else -1)
    return found


@pytest.mark.slow
def test_digits28_are_shifted_copies_of_the_8x8_digits_of_the_same_split_and_label():
    small, large = load_dataset("digits"), load_dataset("digits28")
    assert large.image_shape == (1, 28, 28) and large.data_dim == 784
    assert (len(large.x_train), len(large.x_test)) == (COPIES * len(small.x_train),
                                                       COPIES * len(small.x_test))
    assert 0 <= large.x_train.min() and large.x_train.max() <= 1
    train, test = _framed(small.x_train), _framed(small.x_test)
    rows = torch.arange(0, len(large.x_train), 97)
    sources = _sources(large.x_train[rows], train)
    assert -1 not in sources
    assert large.y_train[rows].tolist() == small.y_train[sources].tolist()
    # no test image is a shifted copy of a training digit
    assert set(_sources(large.x_test[:40], train)) == {-1}
    assert -1 not in _sources(large.x_test[:40], test)


def test_digits28_are_the_same_set_on_every_load_and_every_digit_has_its_copies():
    a, b = load_dataset("digits28"), load_dataset("digits28")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    small = load_dataset("digits")
    assert torch.equal(a.y_train.bincount(), COPIES * small.y_train.bincount())
    unshifted = _framed(small.x_train)
    # the copies are moved: not every one sits where the unshifted image does
    moved = (a.x_train[:50].reshape(-1, SIZE, SIZE)[:, None] - unshifted[None]).abs() \
        .amax(dim=(2, 3)).min(dim=1).values
    assert (moved > 1e-6).sum() > 25
