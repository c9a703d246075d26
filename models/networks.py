"""The networks every encoder and decoder in ELBO Lab is built from: an MLP, or for images a
convolutional encoder and a transposed-convolution decoder, all on flat vectors (…, C·H·W);
and the Gaussian layer that turns a network's output into a diagonal normal."""
import math
from typing import List, Optional, Sequence, Tuple, Type

import pyro.distributions as dist
import torch
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.nn.functional import relu, softplus

NETWORKS = ("mlp", "conv")
CONV_CHANNELS = (32, 64, 128)     # one stride-2 convolution per entry, at most
SMALLEST_SIDE = 4                 # halve the image while its shorter side is above this


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int,
        activation: Type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear → activation → … → Linear, converted in place to a ``PyroModule``.

    ``mlp(784, [400], 40)`` is ``Linear(784, 400) → ReLU → Linear(400, 40)``. The layers keep
    PyTorch's default initialization; being a ``PyroModule``, the weights are Pyro parameters of
    whichever model or guide owns the network.
    """
    dims = [in_dim, *hidden_dims]
    layers = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out), activation()]
    layers.append(nn.Linear(dims[-1], out_dim))
    network = nn.Sequential(*layers)
    to_pyro_module_(network)
    return network


def make_network(in_dim: int, hidden_dims: Sequence[int], out_dim: int, network: str = "mlp",
                 image_shape: Optional[Sequence[int]] = None) -> nn.Module:
    """The network from R^in_dim to R^out_dim that a model or guide asks for by name.

    ``"mlp"`` is ``mlp(in_dim, hidden_dims, out_dim)`` (``image_shape`` unused). ``"conv"``
    needs ``image_shape`` = (C, H, W) (or (H, W) for one channel): the side of size C·H·W is
    the image, read by a ``ConvEncoder`` (in_dim = C·H·W) or written by a ``ConvDecoder``
    (out_dim = C·H·W), with ``hidden_dims`` as the dense layers between the convolutions and
    the vector. Refused with a ``ValueError``: an unknown name, a missing or mismatched shape.
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}: choose one of {', '.join(NETWORKS)}")
    if network == "mlp":
        return mlp(in_dim, hidden_dims, out_dim)
    shape = image_channels_first(image_shape)
    size = math.prod(shape)
    if (in_dim == size) == (out_dim == size):
        raise ValueError(f"a convolutional network maps an image of shape {shape} ({size} values) "
                         f"to a vector or back, and this one maps {in_dim} to {out_dim} values")
    module = (ConvEncoder(shape, hidden_dims, out_dim) if in_dim == size
              else ConvDecoder(in_dim, hidden_dims, shape))
    to_pyro_module_(module)
    return module


def image_channels_first(image_shape: Optional[Sequence[int]]) -> Tuple[int, int, int]:
    """(C, H, W) from (C, H, W) or (H, W); a ``ValueError`` in one sentence otherwise."""
    if image_shape is None:
        raise ValueError("the conv network needs image data, and no image shape (C, H, W) was "
                         "given (the data are flat vectors: use the mlp network)")
    shape = tuple(int(n) for n in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"an image shape is (C, H, W) or (H, W) of positive sizes, not "
                         f"{tuple(image_shape)}")
    return shape


def conv_sides(height: int, width: int) -> List[Tuple[int, int]]:
    """The (H, W) before and after each stride-2 convolution: halved (rounding up) while the
    shorter side is above ``SMALLEST_SIDE``, at most ``len(CONV_CHANNELS)`` times, at least once.
    (28, 28) → [(28, 28), (14, 14), (7, 7), (4, 4)]; (7, 9) → [(7, 9), (4, 5)]."""
    sides = [(height, width)]
    while len(sides) == 1 or (min(sides[-1]) > SMALLEST_SIDE
                              and len(sides) <= len(CONV_CHANNELS)):
        h, w = sides[-1]
        sides.append(((h + 1) // 2, (w + 1) // 2))
    return sides


class ConvEncoder(nn.Module):
    """Flat images (…, C·H·W) → (…, out_dim): stride-2 3×3 convolutions with ReLU (32, 64, 128
    channels, as many as ``conv_sides`` gives), flattened, then ``mlp(·, hidden_dims, out_dim)``.

    :param image_shape: (C, H, W).
    :param hidden_dims: widths of the dense layers after the convolutions.
    :param out_dim: the size of the output vector.
    """

    def __init__(self, image_shape: Tuple[int, int, int], hidden_dims: Sequence[int],
                 out_dim: int):
        super().__init__()
        self.image_shape = image_shape
        sides = conv_sides(*image_shape[1:])
        channels = [image_shape[0], *CONV_CHANNELS[:len(sides) - 1]]
        layers = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.dense = mlp(channels[-1] * math.prod(sides[-1]), hidden_dims, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]
        h = self.convs(x.reshape(-1, *self.image_shape))                 # (n, c, h, w)
        return self.dense(h.flatten(1)).reshape(*batch, -1)              # (…, out_dim)


class ConvDecoder(nn.Module):
    """(…, in_dim) → flat images (…, C·H·W), the ``ConvEncoder`` run backwards:
    ``mlp(in_dim, hidden_dims, c·h·w)`` and ReLU, then stride-2 3×3 transposed convolutions,
    each with the output padding that restores the encoder's side exactly (odd or even), ReLU
    between them and none after the last (its outputs are the likelihood's parameters).

    :param in_dim: the size of the input vector (z).
    :param hidden_dims: widths of the dense layers before the convolutions.
    :param image_shape: (C, H, W).
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int],
                 image_shape: Tuple[int, int, int]):
        super().__init__()
        sides = conv_sides(*image_shape[1:])
        channels = [image_shape[0], *CONV_CHANNELS[:len(sides) - 1]]
        self.start = (channels[-1], *sides[-1])                          # (c, h, w) of the smallest
        self.dense = mlp(in_dim, hidden_dims, math.prod(self.start))
        layers = []
        for i in reversed(range(len(sides) - 1)):                        # smallest side first
            (h, w), (h_in, w_in) = sides[i], sides[i + 1]
            padding = (h - (2 * h_in - 1), w - (2 * w_in - 1))             # 0 for odd, 1 for even
            layers += [nn.ConvTranspose2d(channels[i + 1], channels[i], kernel_size=3, stride=2,
                                          padding=1, output_padding=padding), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers[:-1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = relu(self.dense(z)).reshape(-1, *self.start)                 # (n, c, h, w)
        return self.deconvs(h).reshape(*batch, -1)                       # (…, C·H·W)


def diagonal_normal(out: torch.Tensor) -> dist.TorchDistribution:
    """N(μ, diag σ²) with event shape (d,) from a network's output (…, 2d) = (μ, σ̃), and
    σ = softplus(σ̃) + 1e-6: positive without the overflow of exp. The Gaussian layer of the
    amortized guides' q(z|x) and of the hierarchical prior p(z₁|z₂)."""
    loc, raw_scale = out.chunk(2, dim=-1)                                # (…, d) each
    return dist.Normal(loc, softplus(raw_scale) + 1e-6).to_event(1)
