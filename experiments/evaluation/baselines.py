"""The baseline that a model with labels has to beat: its classifier q(y|x), trained on the
labeled training points alone.

Kingma et al. (2014) and Pyro's semi-supervised VAE tutorial compare M2's q(y|x) with the same
network trained by supervised learning on the labeled points only; if the unlabeled points
(through the generative model) help, M2 classifies the test set better than this classifier.
"""
import math

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from experiments.common.rng import isolated_rng


def replica(network: nn.Module) -> nn.Sequential:
    """A plain-torch network of the layers of ``network`` (a sequence of ``nn.Linear`` and
    activation layers, as ``models.networks.mlp`` builds), newly initialized. Plain torch, so
    its parameters never enter Pyro's parameter store."""
    layers = []
    for layer in network:
        if isinstance(layer, nn.Linear):
            layers.append(nn.Linear(layer.in_features, layer.out_features))
        elif not any(True for _ in layer.parameters()):
            layers.append(type(layer)())
        else:
            raise ValueError(f"cannot replicate a {type(layer).__name__} layer")
    return nn.Sequential(*layers)


def train_classifier(like: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                     batch_size: int, lr: float, seed: int, binarize: bool = False
                     ) -> nn.Module:
    """A replica of the network ``like`` (x ↦ class logits) fitted to the labeled rows (x, y)
    alone: ``steps`` Adam steps on the mean cross-entropy −log softmax(f(x))_y of minibatches
    of ``batch_size`` rows, taken epoch by epoch in shuffled orders. With ``binarize``, each
    minibatch's pixels are drawn afresh, x ~ Bernoulli(grey levels), as the model sees them
    under dynamic binarization. Initialization, order and pixels come from ``seed``; the
    caller's random stream is left alone.
    """
    with isolated_rng(seed, x.device):
        classifier = replica(like).to(device=x.device, dtype=x.dtype)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
        batches_per_epoch = math.ceil(len(x) / batch_size)
        for step in range(steps):
            if step % batches_per_epoch == 0:
                order = torch.randperm(len(x), device=x.device).split(batch_size)
            index = order[step % batches_per_epoch]
            inputs = torch.bernoulli(x[index]) if binarize else x[index]
            optimizer.zero_grad()
            cross_entropy(classifier(inputs), y[index]).backward()
            optimizer.step()
    return classifier.eval()


def accuracy(logits_or_probs: torch.Tensor, y: torch.Tensor) -> float:
    """The share of rows whose largest entry is at their label y."""
    return (logits_or_probs.argmax(-1) == y).double().mean().item()
