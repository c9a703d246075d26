"""Which model × guide × estimator combinations can work, and why the others cannot.

Each part states what it is: a model its latent sites (``LatentSite``), a guide what it covers
and how it samples (``guides.base.Guide``), an estimator what it needs
(``experiments.estimators.traits``). The rules below read only those statements, so a new
part is checked without touching this module; ``tests/test_compatibility.py`` runs the whole
matrix to keep the statements honest.
"""
from typing import Dict, List, Optional

import torch

from experiments.common.errors import UserError
from experiments.estimators import ELBOS
from experiments.parts.kl_per_unit import collapse_applies, kl_per_point_and_dimension
from experiments.parts.registries import construct
from guides import GUIDES
from models import MODELS, LatentVariableModel


def incompatibility(model_name: str, model: LatentVariableModel, guide_name: str,
                    elbo_name: str) -> Optional[str]:
    """Why ``guide_name`` and ``elbo_name`` cannot fit ``model``, or None if they can."""
    guide, estimator = GUIDES[guide_name], ELBOS[elbo_name]
    misfit = guide.fit_error(model)
    if misfit:
        return f"the {guide_name} guide cannot serve {model_name}: {misfit}"
    if estimator.enumerates and not any(s.discrete for s in model.latent_sites.values()):
        return f"{elbo_name} sums out discrete latent sites, and {model_name} has none"
    if estimator.enumerates and not guide.enumerates:
        return (f"{elbo_name} sums discrete sites out exactly, but the {guide_name} guide "
                "samples them (use --guide enum)")
    if guide.enumerates and not estimator.enumerates:
        return (f"the enum guide leaves {model_name}'s discrete z to be summed out, which "
                f"{elbo_name} cannot do (use --elbo enum)")
    if estimator.reparameterized and not guide.reparameterized:
        return (f"{elbo_name} needs reparameterized samples, and the {guide_name} guide's "
                "are discrete")
    if estimator.detaches_samples and guide.straight_through:
        return (f"{elbo_name} would score the {guide_name} guide's hard samples with the density "
                "of relaxed ones (use --guide categorical)")
    if estimator.path_derivative and guide.straight_through:
        return (f"{elbo_name} rescores q at its own samples, and the {guide_name} guide's are hard "
                "one-hot values where the relaxed density degenerates (use --elbo trace or iwae)")
    if estimator.closed_form_kl and not guide.closed_form_kl:
        return (f"{elbo_name} needs KL(q(z|x) ‖ p(z)) in closed form, which the {guide_name} "
                "guide does not have")
    return None


def option_error(elbo_name: str, num_particles: int, vectorize_particles: bool,
                 alpha: float = 0.5) -> Optional[str]:
    """Why these particle options (or α) do not suit ``elbo_name``, or None."""
    estimator = ELBOS[elbo_name]
    if estimator.vectorized and (num_particles < 2 or not vectorize_particles):
        return (f"{elbo_name} needs --num-particles 2 or more and --vectorize-particles "
                f"(got {num_particles}{'' if vectorize_particles else ', not vectorized'})")
    if elbo_name == "renyi" and alpha == 1.0:
        return "renyi with --alpha 1 is the ELBO itself: use --elbo trace, or another --alpha"
    return None


def weighting_error(guide_name: str, elbo_name: str, beta: float = 1.0,
                    kl_warmup: int = 0, free_bits: float = 0.0) -> Optional[str]:
    """Why ``--beta``/``--kl-warmup``/``--free-bits`` cannot weight the latent terms with this
    guide and estimator, or None. The first two scale the log-densities of the latent sites of
    model and guide (``experiments.training.weighting``), which is the β-weighted objective
    E_q[log p(x|z)] − β KL(q ‖ p(z)) and its gradient only where every draw of q is
    reparameterized and every site is averaged on its own; free bits adds a term beside the
    ELBO (``experiments.training.free_bits``), which holds on the same conditions."""
    if beta == 1 and not kl_warmup and not free_bits:
        return None
    if free_bits and (beta != 1 or kl_warmup):
        return ("--free-bits sets the KL term to Σ_j max(λ, KL_j) itself: leave --beta at 1 "
                "and --kl-warmup at 0 with it")
    estimator, guide = ELBOS[elbo_name], GUIDES[guide_name]
    flag = "--beta" if beta != 1 else "--kl-warmup" if kl_warmup else "--free-bits"
    if estimator.k_sample:
        return (f"{flag} reweights the latent terms alone, and {elbo_name}'s K-sample bound "
                "needs one scale on every site (it has no β-weighted or free-bits form)")
    if estimator.enumerates or guide.enumerates:
        return (f"{flag} weights log p(z) − log q(z|x), and {elbo_name} with the {guide_name} "
                "guide sums discrete sites out inside log Σ_z, where no such term exists")
    if estimator.detaches_samples or not guide.reparameterized:
        why = (f"{elbo_name} draws q's samples without their path gradient"
               if estimator.detaches_samples else f"the {guide_name} guide's samples are discrete")
        return (f"{flag} would scale q's score-function gradient too, which is then not the "
                f"weighted objective's ({why})")
    return None


def free_bits_error(model: LatentVariableModel, guide) -> Optional[str]:
    """Why ``--free-bits`` cannot split this guide's KL by latent dimension, or None: it needs
    q(z|x) a diagonal Gaussian and p(z) a factorized Gaussian (the KL per unit in closed
    form), read off the built parts at a probe input."""
    probe = model.like(None).new_zeros(2, model.data_dim)
    posterior = getattr(guide, "posterior", None) if guide.amortized else None
    if posterior is not None and collapse_applies(model):
        with torch.no_grad():
            if kl_per_point_and_dimension(posterior(probe), model.prior(probe)) is not None:
                return None
    return ("--free-bits needs the KL per latent unit in closed form: a diagonal Gaussian "
            "q(z|x) (--guide normal) and a factorized Gaussian p(z) (a model with one "
            "continuous latent site, --prior standard)")


def probe_model(model_name: str, **options) -> LatentVariableModel:
    """A small instance of the model, to read its latent sites before any data is loaded; its
    networks are MLPs, which fit any data (a conv network needs the data's image shape)."""
    options.update(network="mlp", image_shape=None)
    return construct(MODELS[model_name], data_dim=4, **options)


def check_combination(model_name: str, guide_name: str, elbo_name: str,
                      model: Optional[LatentVariableModel] = None, **options) -> None:
    """Raise a one-line ``UserError`` naming the reason and the alternatives that would work."""
    model = model if model is not None else probe_model(model_name, **options)
    reason = incompatibility(model_name, model, guide_name, elbo_name)
    if reason:
        guides = [g for g in GUIDES if not incompatibility(model_name, model, g, elbo_name)]
        elbos = [e for e in ELBOS if not incompatibility(model_name, model, guide_name, e)]
        hints = []
        if elbos:
            hints.append(f"with --guide {guide_name}: --elbo {', '.join(elbos)}")
        if guides:
            hints.append(f"with --elbo {elbo_name}: --guide {', '.join(guides)}")
        raise UserError(f"{model_name} + {guide_name} + {elbo_name} cannot work: {reason}"
                        + (f"; {model_name} works {' or '.join(hints)}" if hints else ""))
    weighting = weighting_error(guide_name, elbo_name, options.get("beta", 1.0),
                                options.get("kl_warmup", 0), options.get("free_bits", 0.0))
    if weighting:
        elbos = [e for e in ELBOS if not incompatibility(model_name, model, guide_name, e)
                 and not weighting_error(guide_name, e, 0.5)]
        raise UserError(f"{weighting}; " + (
            f"with --guide {guide_name} use --elbo {', '.join(elbos)}" if elbos else
            f"with the {guide_name} guide no estimator can: use a reparameterized guide"))
    problem = option_error(elbo_name, options.get("num_particles", 1),
                           options.get("vectorize_particles", False), options.get("alpha", 0.5))
    if problem:
        raise UserError(problem)


def matrix(**options) -> List[Dict[str, object]]:
    """Every registered combination as {"model", "guide", "elbo", "ok", "reason"}, for models
    built with ``options`` (the latent dimension and the like only change the wording)."""
    rows = []
    for model_name in MODELS:
        model = probe_model(model_name, **options)
        for guide_name in GUIDES:
            for elbo_name in ELBOS:
                reason = incompatibility(model_name, model, guide_name, elbo_name)
                rows.append({"model": model_name, "guide": guide_name, "elbo": elbo_name,
                             "ok": reason is None, "reason": reason or ""})
    return rows
