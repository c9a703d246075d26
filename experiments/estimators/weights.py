"""Log importance weights per data point, the quantity every K-sample bound is built from.

For a minibatch of B of the N data points and K draws z_ik ~ q(z|x_i),

    log w_ik = log p_θ(x_i, z_ik) − log q_φ(z_ik|x_i),

the *unscaled* log-densities of the model's and the guide's sites, summed over every dimension
but the data plate (and the particle plate, where particles are vectorized). The minibatch
scale s = N/B that ``pyro.plate("data", N, subsample=…)`` attaches to every site is returned
apart: a K-sample bound is a log-mean-exp over k *per data point*, and only the sum over i is
scaled, Σ_i → s Σ_i. Pyro's ``RenyiELBO`` sums the scaled log-densities instead, which puts s
inside the log-mean-exp (docs/design/pyro-renyi-subsampling.md).
"""
from typing import Iterable, List, Tuple

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine import Trace

#: the plate Pyro's ELBOs open around model and guide to vectorize the K particles
PARTICLE_PLATE = "num_particles_vectorized"
#: the plate over data points that every model and guide opens (``models.plates.data_plate``)
DATA_PLATE = "data"


def point_log_weights(model_trace: Trace, guide_trace: Trace, estimator: str,
                      data_plate: str = DATA_PLATE) -> Tuple[torch.Tensor, float]:
    """(log w, s): log w_ik as above, shape (K, B) with vectorized particles, else (B,); and the
    minibatch scale s shared by all sites.

    Sites must have log-densities computed (``compute_log_prob`` or ``compute_score_parts``), and
    the guide's ``unscaled_log_prob`` is what it contributes (the path-derivative estimators
    rewrite it). Refused with a ``ValueError`` naming ``estimator``: a sample site outside the
    data plate (a global latent has no per-point weight), or sites of different scales (a
    per-site ``poutine.scale``, under which no K-sample bound is defined).
    """
    log_w, scales = 0.0, set()
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for name, site in _sample_sites(trace):
            keep = [f.dim for f in site["cond_indep_stack"] if f.name == PARTICLE_PLATE]
            data = [f.dim for f in site["cond_indep_stack"] if f.name == data_plate]
            if not data:
                raise ValueError(f"{estimator} bounds log p(x_i) point by point, but site {name!r} "
                                 f"lies outside the data plate {data_plate!r}")
            scales.add(float(site["scale"]))
            log_p = scale_and_mask(site["unscaled_log_prob"], mask=site["mask"])
            log_w = log_w + sign * _keep_dims(log_p, keep + data)
    if len(scales) != 1:
        raise ValueError(f"{estimator} needs one minibatch scale N/B on every site, found "
                         f"{sorted(scales)}: a site scaled on its own (poutine.scale, β) has no "
                         "K-sample bound")
    return log_w, scales.pop()


def _sample_sites(trace: Trace) -> Iterable:
    return ((name, site) for name, site in trace.nodes.items() if site["type"] == "sample")


def _keep_dims(log_p: torch.Tensor, dims: list) -> torch.Tensor:
    """``log_p`` summed over every dimension but ``dims`` (negative, outermost first), shaped as
    those dims alone: (K, B) for [particle dim, data dim], (B,) for [data dim]."""
    rank = max(-min(dims), log_p.dim())
    log_p = log_p.reshape((1,) * (rank - log_p.dim()) + log_p.shape)
    others = [d for d in range(-rank, 0) if d not in dims]
    if others:
        log_p = log_p.sum(others, keepdim=True)
    return log_p.reshape([log_p.shape[d] for d in dims])


def check_reparameterized(model_trace: Trace, guide_trace: Trace, estimator: str) -> None:
    """Refuse what a reparameterized gradient cannot differentiate: a latent site of the model
    that the guide does not draw (left to enumeration or to the prior), or a guide site drawn
    without ``rsample`` (discrete, or forced to the score function)."""
    for name in model_trace.stochastic_nodes:
        if name not in guide_trace.nodes:
            raise ValueError(f"{estimator} needs every latent site drawn by the guide, but the "
                             f"guide has no site {name!r}; use trace, tracegraph or enum")
    for name, site in guide_trace.iter_stochastic_nodes():
        if not site["fn"].has_rsample:
            raise ValueError(f"{estimator} needs reparameterized guide sites z = T_φ(ε), but "
                             f"the guide samples site {name!r} without rsample (a discrete "
                             f"site, or one forced to the score function); use trace or tracegraph")


def particle_log_weights(elbo, model, guide, args: tuple, kwargs: dict
                         ) -> Tuple[torch.Tensor, float]:
    """(log w, s) for the K particles that ``elbo`` draws (``elbo._get_traces``): log w_ik as
    (K, B), every guide site reparameterized, and the minibatch scale s = N/B."""
    name, particles = type(elbo).__name__, []
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, kwargs):
        check_reparameterized(model_trace, guide_trace, name)
        particles.append(point_log_weights(model_trace, guide_trace, name))
    return stack_particles([w for w, _ in particles]), particles[0][1]


def stack_particles(per_particle: List[torch.Tensor]) -> torch.Tensor:
    """One (K, B) tensor from what the particles gave: one (K, B) tensor when vectorized, else
    K tensors of shape (B,)."""
    return torch.cat([t if t.dim() == 2 else t.unsqueeze(0) for t in per_particle])
