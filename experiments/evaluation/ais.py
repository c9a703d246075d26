"""Annealed importance sampling (AIS) of log p(x) for a model with continuous latent sites.

AIS (Neal 2001) moves C chains per data point along a geometric path of densities from a
normalized base f_0(z) (the guide's q(z|x), or the prior p(z)) to the unnormalized target
f_T(z) = p(x, z), through β_0 = 0 < β_1 < … < β_T = 1:

    f_t(z) = f_0(z)^{1 − β_t} p(x, z)^{β_t} = f_0(z) exp(β_t ℓ(z)),  ℓ = log p(x, z) − log f_0(z)

Each chain draws z ~ f_0, and for t = 1 … T adds the increment (β_t − β_{t−1}) ℓ(z) to its
log-weight, then moves z by a Hamiltonian Monte Carlo transition that leaves f_t invariant
(Pyro's ``velocity_verlet`` integrator, then a Metropolis–Hastings correction). Each weight w_c is
an unbiased estimate of p(x), so

    log p̂(x) = log (1/C) Σ_c w_c,          E[log p̂(x)] ≤ log p(x)   (Jensen)

a stochastic lower bound that tightens as T grows, whatever C. Its Monte Carlo error over the
chains is the IWAE estimate's, by the delta method (``likelihood.delta_method_variance``).

Run backwards, from an exact posterior sample z ~ p(z|x) along β_T = 1 → β_0 = 0, the same
increments give weights whose mean estimates 1/p(x), so −log (1/C) Σ_c w_c is a stochastic upper
bound (Grosse et al. 2015): ``experiments.evaluation.bdmc`` sandwiches log p(x) between the two.

The step size ε of each data point's chains adapts after every transition to keep their mean
acceptance rate near 0.65, ε ← ε · exp(ā − 0.65), as Wu et al. (2017) adapt theirs; the
annealing schedule is Grosse et al.'s sigmoid. Evaluation has no side effects: every chunk of
points draws from its own seeded stream (``likelihood.over_chunks``), as IWAE does.

References: Neal (2001) Annealed importance sampling; Grosse, Ghahramani & Adams (2015) Sandwiching
the marginal likelihood using bidirectional Monte Carlo; Wu, Burda, Salakhutdinov & Grosse
(2017) On the quantitative analysis of decoder-based generative models.
"""
import math
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Tuple

import pyro
import torch
from pyro import poutine
from pyro.ops.integrator import potential_grad, velocity_verlet
from tqdm import tqdm

from experiments.evaluation.likelihood import (
    CHUNK_ELEMENTS,
    EVAL_SEED,
    IWAEEstimate,
    delta_method_variance,
    over_chunks,
)

BASES = ("guide", "prior")
TARGET_ACCEPTANCE = 0.65
INITIAL_STEP_SIZE = 0.05
STEP_SIZE_RANGE = (1e-4, 1.0)
SIGMOID_SHARPNESS = 4.0          # δ of Grosse et al.'s sigmoid schedule

Latents = Dict[str, torch.Tensor]        # site → (chains, points, size)


@dataclass
class AISEstimate(IWAEEstimate):
    """The AIS estimate of the mean log p(x): ``per_point`` log p̂(x_i) and its Monte Carlo
    variance over the ``num_samples`` chains; ``num_steps`` intermediate distributions;
    ``acceptance`` the mean HMC acceptance rate; ``upper`` for a reverse run (−log of the mean
    of weights that estimate 1/p(x))."""

    num_steps: int = 0
    acceptance: float = math.nan
    upper: bool = False


def unsupported(model) -> Optional[str]:
    """Why AIS cannot evaluate ``model`` (its discrete latent sites, which HMC cannot move), or
    None."""
    discrete = [site.name for site in model.latent_sites.values() if site.discrete]
    if discrete:
        return (f"AIS moves the latent sites by Hamiltonian Monte Carlo, which needs them "
                f"continuous, and {', '.join(discrete)} {'is' if len(discrete) == 1 else 'are'} "
                "discrete (the IWAE estimate of the run's summary.json applies)")
    return None


def sigmoid_schedule(num_steps: int, sharpness: float = SIGMOID_SHARPNESS) -> torch.Tensor:
    """β_0 = 0 < … < β_T = 1, T = ``num_steps``, denser at both ends (Grosse et al. 2015):
    β̃_t = σ(δ (2t/T − 1)), rescaled so the first is 0 and the last 1; shape (T + 1,)."""
    tilde = torch.sigmoid(sharpness * torch.linspace(-1.0, 1.0, num_steps + 1,
                                                     dtype=torch.float64))
    return (tilde - tilde[0]) / (tilde[-1] - tilde[0])


class AnnealingPath:
    """log f_0(z) and log p(x, z) for C chains at each of a chunk's points, read off the traces
    of the guide and the model conditioned on z (``poutine.condition``) inside a plate of
    chains left of the data plate: the densities of any model and guide, none re-derived."""

    def __init__(self, model, guide, x: torch.Tensor, num_chains: int, base: str = "guide",
                 index: Optional[torch.Tensor] = None, num_data: Optional[int] = None):
        self.model, self.guide, self.x, self.base = model, guide, x, base
        self.args = (x, index, num_data)          # a per-point guide finds its rows by index
        self.chains = pyro.plate("ais_chains", num_chains, dim=-(model.max_plate_nesting + 1))

    def initial(self) -> Latents:
        """z ~ f_0 for every chain and point."""
        with torch.no_grad(), self.chains:
            trace = (poutine.trace(self.guide).get_trace(*self.args) if self.base == "guide"
                     else poutine.trace(self.model).get_trace(None, None, len(self.x)))
        return {name: trace.nodes[name]["value"].detach() for name in self.model.latent_sites}

    def log_densities(self, z: Latents) -> Tuple[torch.Tensor, torch.Tensor]:
        """(log f_0(z), log p(x, z)), each of shape (chains, points)."""
        with self.chains:
            model = poutine.trace(poutine.condition(self.model, data=z)).get_trace(*self.args)
        log_prior, log_likelihood = _summed_log_probs(model, self.model.latent_sites)
        if self.base == "prior":
            return log_prior, log_prior + log_likelihood
        with self.chains:
            guide = poutine.trace(poutine.condition(self.guide, data=z)).get_trace(*self.args)
        return _summed_log_probs(guide, z)[0], log_prior + log_likelihood


def _summed_log_probs(trace, latent: Iterable[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Σ log-density of the sample sites of ``trace`` named in ``latent``, and of the others
    (the observed x: ``poutine.condition`` marks the latent sites observed too)."""
    trace.compute_log_prob()
    sums = [0.0, 0.0]
    for name, site in trace.nodes.items():
        if site["type"] == "sample":
            part = name not in latent
            sums[part] = sums[part] + site["unscaled_log_prob"]
    return sums[0], sums[1]


class Potential:
    """U_β(z) = −log f_β(z) = −log f_0(z) − β ℓ(z) summed over chains and points, as Pyro's
    integrator wants it (one scalar whose gradient moves every chain); ``energy`` keeps its
    value per chain and point, (chains, points), from the last call."""

    def __init__(self, path: AnnealingPath, beta: float):
        self.path, self.beta = path, beta
        self.energy = self.log_ratio = None

    def __call__(self, z: Latents) -> torch.Tensor:
        with torch.enable_grad():
            log_base, log_joint = self.path.log_densities(z)
            log_ratio = log_joint - log_base                                # ℓ(z)
            energy = -(log_base + self.beta * log_ratio)
        self.energy, self.log_ratio = energy.detach(), log_ratio.detach()
        return energy.sum()


def _kinetic(r: Latents) -> torch.Tensor:
    """½ |r|² per chain and point, (chains, points)."""
    return sum(0.5 * (v ** 2).sum(-1) for v in r.values())


def _kinetic_grad(r: Latents) -> Latents:
    return dict(r)


def hmc_transition(z: Latents, potential: Potential, grads: Latents, step_size: torch.Tensor,
                   leapfrog_steps: int) -> Tuple[Latents, torch.Tensor]:
    """One HMC move of every chain, leaving f_β invariant: momenta r ~ N(0, I), ``leapfrog_steps``
    steps of ``velocity_verlet`` with each point's ε (``step_size``, (points,)), then accept with
    probability min(1, exp(H(z, r) − H(z', r'))), H = U_β + ½|r|². ``potential`` must have just
    been evaluated at z, with gradient ``grads``. Returns the new z and the acceptance
    probabilities, (chains, points)."""
    r = {name: torch.randn_like(value) for name, value in z.items()}
    start_energy = potential.energy + _kinetic(r)
    proposal, r_end, _, _ = velocity_verlet(z, r, potential, _kinetic_grad,
                                            step_size.reshape(1, -1, 1), leapfrog_steps, grads)
    # a trajectory that diverged (inf or nan energy) is rejected
    end_energy = torch.nan_to_num(potential.energy + _kinetic(r_end), nan=math.inf)
    accept_prob = (start_energy - end_energy).clamp(max=0.0).exp()
    accept = torch.rand_like(accept_prob) < accept_prob                  # (chains, points)
    moved = {name: torch.where(accept.unsqueeze(-1), proposal[name], value).detach()
             for name, value in z.items()}
    return moved, accept_prob


def adapted(step_size: torch.Tensor, accept_prob: torch.Tensor) -> torch.Tensor:
    """Each point's ε moved towards a mean acceptance of ``TARGET_ACCEPTANCE`` over its chains:
    ε · exp(ā − 0.65), kept within ``STEP_SIZE_RANGE``."""
    rate = accept_prob.mean(0).to(step_size.dtype)                                  # (points,)
    return (step_size * torch.exp(rate - TARGET_ACCEPTANCE)).clamp(*STEP_SIZE_RANGE)


def anneal(path: AnnealingPath, z: Latents, betas: torch.Tensor, leapfrog_steps: int,
           advance: Callable[[], object] = lambda: None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The log-weights Σ_t (β_t − β_{t−1}) ℓ(z_{t−1}) of chains started at z and moved by an HMC
    transition leaving f_t invariant after each increment (none after the last), along ``betas``
    (increasing: forward AIS; decreasing: reverse). Returns log w (chains, points) in float64
    and each point's mean acceptance rate (points,); ``advance()`` after every step."""
    log_w = torch.zeros(next(iter(z.values())).shape[:2], dtype=torch.float64,
                        device=path.x.device)
    step_size = path.x.new_full((path.x.shape[0],), INITIAL_STEP_SIZE)
    acceptance = torch.zeros_like(step_size)
    for t in range(1, len(betas)):
        potential = Potential(path, betas[t].item())
        grads, _ = potential_grad(potential, z)                 # sets ℓ(z) and U_β(z)
        log_w += (betas[t] - betas[t - 1]) * potential.log_ratio.double()
        if t < len(betas) - 1:
            z, accept_prob = hmc_transition(z, potential, grads, step_size, leapfrog_steps)
            step_size = adapted(step_size, accept_prob)
            acceptance += accept_prob.mean(0) / (len(betas) - 2)
        advance()
    return log_w, acceptance


def ais_estimate(model, guide, x: torch.Tensor, num_steps: int = 500, num_chains: int = 16, *,
                 base: str = "guide", leapfrog_steps: int = 10, seed: int = EVAL_SEED,
                 start: Optional[Latents] = None, chunk_elements: int = CHUNK_ELEMENTS,
                 progress: bool = False) -> AISEstimate:
    """log p̂(x_i) by AIS with ``num_chains`` chains and ``num_steps`` intermediate
    distributions per row of x, from ``base`` (the guide's q(z|x), or the prior), with
    ``leapfrog_steps`` leapfrog steps per HMC transition.

    With ``start`` ({site: (N, size)}, exact posterior samples z_i ~ p(z|x_i), as
    ``bdmc.simulate`` draws them) the chains run backwards from there and the estimate is the
    stochastic upper bound −log (1/C) Σ_c w_c. Points are taken in chunks of about
    ``chunk_elements`` chain × point pairs, each from its own seeded stream; ``progress`` shows
    a bar over the steps of every chunk on stderr."""
    if base not in BASES:
        raise ValueError(f"base must be one of {', '.join(BASES)} (got {base!r})")
    betas = sigmoid_schedule(num_steps)
    points = max(1, chunk_elements // num_chains)
    bar = tqdm(total=math.ceil(len(x) / points) * num_steps, leave=False, file=sys.stderr,
               desc=f"AIS, {num_chains} chains × {num_steps} steps", disable=not progress)

    def estimate(x_chunk: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        path = AnnealingPath(model, guide, x_chunk, num_chains, base, index, len(x))
        if start is None:
            log_w, acceptance = anneal(path, path.initial(), betas, leapfrog_steps, bar.update)
        else:
            z = {name: value[index].expand(num_chains, -1, -1).clone()
                 for name, value in start.items()}
            log_w, acceptance = anneal(path, z, betas.flip(0), leapfrog_steps, bar.update)
        sign = 1.0 if start is None else -1.0
        log_s1, log_s2 = log_w.logsumexp(0), (2 * log_w).logsumexp(0)
        return torch.stack([sign * (log_s1 - math.log(num_chains)),
                            delta_method_variance(log_s1, log_s2, num_chains),
                            acceptance.double()]).to(x.dtype)

    with bar:
        per_point, mc_var, acceptance = torch.cat(over_chunks(estimate, x, points, seed), dim=1)
    return AISEstimate(per_point, mc_var, num_chains, num_steps, acceptance.mean().item(),
                       start is not None)
