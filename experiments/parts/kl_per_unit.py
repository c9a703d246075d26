"""The KL term unit by unit: where KL(q(z|x) ‖ p(z)) splits into one term per latent
coordinate, KL = Σ_j KL(q(z_j|x) ‖ p(z_j)) (q and p both factorized Gaussians), which the
collapse diagnostics report and ``--free-bits`` clamps. Read off built parts, so both the
compatibility rules and the evaluation use it."""
from typing import Optional

import torch
from torch.distributions import Independent, Normal, kl_divergence


def collapse_applies(model) -> bool:
    """A model with one continuous latent site and a prior it gives (``model.prior(x)``): its
    active units, mean KL(q(z|x) ‖ p(z)) and KL per unit are defined, the prior unconditional
    (the vae) or conditional, p(z|x_v) (the cvae, where each point's KL is against its own
    prior). A hierarchy (the hvae) is left out here: its KL against p(z₁|z₂) p(z₂) splits by
    unit only by Monte Carlo and E_q[z₂|x] is an integral over z₁, so it has its own
    diagnostics, layer by layer (``experiments.evaluation.hierarchy_collapse``)."""
    sites = list(model.latent_sites.values())
    return len(sites) == 1 and not sites[0].discrete and callable(getattr(model, "prior", None))


def surgery_applies(model) -> bool:
    """A model whose mean KL splits into I(x; z) + KL(q(z) ‖ p(z)) (the ELBO surgery): one
    prior p(z) shared by every point. A conditional prior p(z|x_v) (the cvae) differs from
    point to point, so there is no p(z) for the aggregate posterior q(z) to be compared with."""
    return collapse_applies(model) and not getattr(model, "conditional", False)


def kl_per_point_and_dimension(q, prior) -> Optional[torch.Tensor]:
    """KL(q(z_j|x_n) ‖ p(z_j)), (N, d), where q and p are both diagonal Gaussians (then the KL
    is the sum over j); None for other pairs, whose KL does not split by coordinate."""
    if not all(isinstance(d, Independent) and isinstance(d.base_dist, Normal)
               for d in (q, prior)):
        return None
    return kl_divergence(q.base_dist, prior.base_dist.expand(q.base_dist.batch_shape))
