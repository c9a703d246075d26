"""The yardstick: ELBO Lab's Bernoulli VAE written in plain PyTorch, without Pyro.

This is the network, objective and training loop of ``--model vae --guide normal --elbo trace``
written as one would by hand, independently of ELBO Lab's code on purpose (it checks ELBO Lab
rather than repeating it):

    q(z|x) = N(μ, diag σ²),  (μ, ρ) = encoder(x),  σ = softplus(ρ) + 1e-6
    p(z) = N(0, I_d),  p(x|z) = Π_j Bernoulli(x_j | sigmoid(decoder(z)_j))
    log w = log p(x|z) + log p(z) − log q(z|x),   z = μ + σ ε,  ε ~ N(0, I)

encoder D → 400 → 2d and decoder d → 400 → D (``nn.Linear`` with PyTorch's default
initialization, ReLU between), trained by Adam on minibatches x ~ Bernoulli(grey levels) drawn
afresh each time (dynamic binarization), each minibatch of B out of N examples scaled by N / B.
"""
import math
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers = []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class ReferenceVAE(nn.Module):
    def __init__(self, data_dim: int, latent_dim: int = 20, hidden_dims: Sequence[int] = (400,)):
        super().__init__()
        self.encoder = _mlp([data_dim, *reversed(hidden_dims), 2 * latent_dim])
        self.decoder = _mlp([latent_dim, *hidden_dims, data_dim])

    def log_weights(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """log w_ki for K = ``num_samples`` draws z_ki ~ q(z|x_i); shape (K, B)."""
        loc, raw_scale = self.encoder(x).chunk(2, dim=-1)                    # (B, d) each
        scale = F.softplus(raw_scale) + 1e-6
        eps = torch.randn((num_samples, *loc.shape), dtype=x.dtype, device=x.device)
        z = loc + scale * eps                                                 # (K, B, d)
        log_q = (-0.5 * eps ** 2 - scale.log() - HALF_LOG_2PI).sum(-1)
        log_prior = (-0.5 * z ** 2 - HALF_LOG_2PI).sum(-1)
        logits = self.decoder(z)                                              # (K, B, D)
        log_lik = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                      reduction="none").sum(-1)
        return log_lik + log_prior - log_q

    @torch.no_grad()
    def iwae_log_likelihood(self, x: torch.Tensor, num_samples: int,
                            chunk_elements: int) -> torch.Tensor:
        """log p̂(x_i) = log (1/K) Σ_k w_ki, shape (N,), in chunks of about ``chunk_elements``
        (sample, point) pairs combined by log-sum-exp."""
        points = max(1, chunk_elements // num_samples)
        samples = min(num_samples, chunk_elements)
        estimates = []
        for x_chunk in x.split(points):
            running = x_chunk.new_full((len(x_chunk),), -math.inf)
            for start in range(0, num_samples, samples):
                log_w = self.log_weights(x_chunk, min(samples, num_samples - start))
                running = torch.logaddexp(running, log_w.logsumexp(0))
            estimates.append(running - math.log(num_samples))
        return torch.cat(estimates)


def elbo_loss(num_particles: int = 1) -> Callable:
    """−(N/B) Σ_i (1/K) Σ_k log w_ki: the minibatch estimate of −ELBO (``trace``)."""
    def loss(vae: ReferenceVAE, x: torch.Tensor, num_data: int) -> torch.Tensor:
        return -vae.log_weights(x, num_particles).mean(0).sum() * (num_data / len(x))

    return loss


def iwae_loss(num_particles: int) -> Callable:
    """−(N/B) Σ_i log (1/K) Σ_k w_ki: the minibatch estimate of −IWAE (Burda et al. 2016)."""
    def loss(vae: ReferenceVAE, x: torch.Tensor, num_data: int) -> torch.Tensor:
        log_w = vae.log_weights(x, num_particles)
        return -(log_w.logsumexp(0) - math.log(num_particles)).sum() * (num_data / len(x))

    return loss


def training_steps(vae: ReferenceVAE, optimizer: torch.optim.Optimizer, x_train: torch.Tensor,
                   batch_size: int, loss_fn: Callable = elbo_loss()) -> Iterator[float]:
    """One pass over ``x_train`` in shuffled minibatches, one step per ``next()``, each
    yielding its loss."""
    n = len(x_train)
    for index in torch.randperm(n, device=x_train.device).split(batch_size):
        x = torch.bernoulli(x_train[index])
        loss = loss_fn(vae, x, n)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        yield loss.item()


@torch.no_grad()
def test_elbo(vae: ReferenceVAE, x: torch.Tensor) -> float:
    """(1/N) Σ_i log w_i with one z_i ~ q(z|x_i): the test ELBO in nats per example."""
    return vae.log_weights(x, 1).mean().item()
