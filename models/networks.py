"""The multilayer perceptron that every encoder and decoder in ELBO Lab is built from."""
from typing import Sequence, Type

from pyro.nn.module import to_pyro_module_
from torch import nn


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
