"""The AIS column of a comparison (``--ais-points N``): every run's log p(x) by annealed
importance sampling on its first N test points, beside its IWAE estimate on the same points.

Off by default, as AIS costs hundreds of model evaluations per chain and point; refused before
any run starts for a model whose latent sites are not all continuous (HMC cannot move them).
"""
from typing import Optional

from experiments.data.datasets import Dataset
from experiments.evaluation.ais import ais_estimate, unsupported
from experiments.evaluation.likelihood import iwae_estimate
from experiments.evaluation.metrics import scoring_guide
from experiments.parts.build import Parts
from experiments.parts.compatibility import probe_model

#: the annealing of every run's AIS: the settings of docs/results/evaluation.md
SETTINGS = {"num_steps": 200, "num_chains": 8, "leapfrog_steps": 5}


def ais_column_error(model_name: str, **options) -> Optional[str]:
    """Why ``--ais-points`` cannot score the model ``model_name`` with ``options``, or None."""
    reason = unsupported(probe_model(model_name, **options))
    return f"--ais-points: the {model_name} model cannot be scored by AIS: {reason}" \
        if reason else None


def ais_beside_iwae(parts: Parts, data: Dataset, points: int, iwae_samples: int) -> dict:
    """Mean log p(x) over the first ``points`` test points by AIS (``SETTINGS``, from the
    guide's q(z|x)) and by IWAE with ``iwae_samples`` samples, each with its Monte Carlo
    standard error: AIS ≥ IWAE in expectation where q is not the posterior."""
    x = data.x_test[:points]
    guide = scoring_guide(parts, x, final=True)
    ais = ais_estimate(parts.model, guide, x, **SETTINGS)
    iwae = iwae_estimate(parts.model, guide, x, iwae_samples,
                         max_plate_nesting=parts.model.max_plate_nesting)
    return {"points": len(x), "ais": ais.value, "ais_mc_stderr": ais.mc_stderr,
            "iwae": iwae.value, "iwae_mc_stderr": iwae.mc_stderr, **SETTINGS}
