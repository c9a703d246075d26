"""The bundled digits at MNIST's size (``--data digits28``), made offline: scikit-learn's 8×8
digits enlarged to 28×28 and shifted, so that what depends on the number of pixels (the weight of a
784-pixel likelihood against a classifier's term, lesson 7's M2) can be measured without a download.

MNIST centres each digit's 20×20 box in a 28×28 frame; here each 8×8 image is enlarged to
20×20 (bilinear), framed the same way, and copied ``COPIES`` times, each copy moved by a random
shift of up to ``MAX_SHIFT`` pixels each way (seeded, so the set is the same on every machine).
The train/test split is that of the 8×8 digits, made before copying, so no test image is a
shifted copy of a training one. The images stay grey levels in [0, 1], smoother than MNIST's
strokes.
"""
import torch
from torch.nn.functional import interpolate, pad

SIZE, BOX = 28, 20          # MNIST's frame and the box its digits are scaled into
COPIES, MAX_SHIFT = 3, 2    # shifted copies of each 8×8 digit, and their largest shift
SHIFT_SEED = 28             # one set of shifts for every run


def enlarged(x: torch.Tensor, y: torch.Tensor, seed: int):
    """The 8×8 images ``x`` (N, 64) as ``COPIES`` shifted 28×28 copies each, (COPIES·N, 784),
    with their labels, in a seeded random order (so ``--num-train`` keeps a random subset)."""
    side = int(len(x[0]) ** 0.5)
    box = interpolate(x.reshape(-1, 1, side, side), size=(BOX, BOX), mode="bilinear",
                      align_corners=False).clamp(0, 1)                    # (N, 1, 20, 20)
    margin = (SIZE - BOX) // 2
    framed = pad(box, (margin,) * 4)                                       # (N, 1, 28, 28)
    shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (COPIES, len(x), 2),
                           generator=torch.Generator().manual_seed(seed))
    copies = [torch.stack([image.roll(tuple(s.tolist()), dims=(-2, -1))
                           for image, s in zip(framed, shift)]) for shift in shifts]
    order = torch.randperm(COPIES * len(x), generator=torch.Generator().manual_seed(seed))
    return torch.cat(copies).reshape(-1, SIZE * SIZE)[order], y.repeat(COPIES)[order]
