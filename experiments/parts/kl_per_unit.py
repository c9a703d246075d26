"""The KL term unit by unit: where KL(q(z|x) ‖ p(z)) splits into one term per latent
coordinate, KL = Σ_j KL(q(z_j|x) ‖ p(z_j)) (q and p both factorized Gaussians), which the
collapse diagnostics report and ``--free-bits`` clamps. Read off built parts, so both the
compatibility rules and the evaluation use it."""
from typing import Optional

import torch
from torch.distributions import Independent, Normal, kl_divergence


def collapse_applies(model) -> bool:
    """A model with one continuous latent site and a prior p(z) of its own that it gives
    (``model.prior(x)``), the only kind these quantities are defined for here: a hierarchy's
    units would be counted per layer, and a conditional prior p(z|x_v) (the cvae) has no
    aggregate posterior to compare with."""
    sites = list(model.latent_sites.values())
    return (len(sites) == 1 and not sites[0].discrete and callable(getattr(model, "prior", None))
            and not getattr(model, "conditional", False))


def kl_per_point_and_dimension(q, prior) -> Optional[torch.Tensor]:
    """KL(q(z_j|x_n) ‖ p(z_j)), (N, d), where q and p are both diagonal Gaussians (then the KL
    is the sum over j); None for other pairs, whose KL does not split by coordinate."""
    if not all(isinstance(d, Independent) and isinstance(d.base_dist, Normal)
               for d in (q, prior)):
        return None
    return kl_divergence(q.base_dist, prior.base_dist.expand(q.base_dist.batch_shape))
