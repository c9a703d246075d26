"""The whole model × guide × estimator matrix: what is allowed runs, what is refused says why."""
import math

import pyro
import pytest
import torch

from experiments.common.errors import UserError
from experiments.estimators import ELBOS
from experiments.parts.build import build
from experiments.parts.compatibility import check_combination, matrix, option_error

MODEL_OPTIONS = dict(latent_dim=2, hidden_dims=(8,))
ROWS = matrix(**MODEL_OPTIONS)
VALID = [r for r in ROWS if r["ok"]]
INVALID = [r for r in ROWS if not r["ok"]]


def _options(elbo: str) -> dict:
    vectorized = ELBOS[elbo].vectorized
    return dict(MODEL_OPTIONS, num_particles=3 if vectorized else 1,
                vectorize_particles=vectorized)


@pytest.mark.parametrize("row", VALID, ids=lambda r: f"{r['model']}-{r['guide']}-{r['elbo']}")
def test_every_valid_combination_trains_with_validation_on(row):
    x = torch.rand(6, 5).bernoulli()        # binary data suits every likelihood
    parts = build(row["model"], row["guide"], row["elbo"], data_dim=5, num_data=6,
                  **_options(row["elbo"]))
    svi = pyro.infer.SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 1e-2}), parts.elbo)
    before = {k: v.clone() for k, v in parts.guide.state_dict().items()}
    for _ in range(3):
        loss = svi.step(x, torch.arange(6), 6)
        assert math.isfinite(loss) or not ELBOS[row["elbo"]].has_loss
    after = parts.guide.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before) or not before


@pytest.mark.parametrize("row", INVALID, ids=lambda r: f"{r['model']}-{r['guide']}-{r['elbo']}")
def test_every_invalid_combination_is_refused_with_its_reason(row):
    with pytest.raises(UserError) as info:
        build(row["model"], row["guide"], row["elbo"], data_dim=5, num_data=6,
              **_options(row["elbo"]))
    message = str(info.value)
    assert row["reason"] in message and "\n" not in message
    assert message.startswith(f"{row['model']} + {row['guide']} + {row['elbo']} cannot work")


def test_refusals_name_alternatives_that_work():
    with pytest.raises(UserError) as info:
        check_combination("vae", "flow", "meanfield")
    message = str(info.value)
    assert "no" not in message or "closed form" in message
    assert "with --guide flow: --elbo trace" in message
    assert "with --elbo meanfield: --guide normal, local" in message
    assert not [r for r in VALID if r["model"] == "vae" and r["guide"] == "flow"
                and r["elbo"] == "meanfield"]


def test_particle_options_are_checked():
    assert "needs --num-particles 2 or more" in option_error("tail-adaptive", 1, True)
    assert "--vectorize-particles" in option_error("tail-adaptive", 8, False)
    assert option_error("tail-adaptive", 8, True) is None
    assert "renyi with --alpha 1" in option_error("renyi", 2, False, alpha=1.0)


def test_the_matrix_covers_every_registered_part_once():
    from guides import GUIDES
    from models import MODELS

    keys = [(r["model"], r["guide"], r["elbo"]) for r in ROWS]
    assert len(keys) == len(set(keys)) == len(MODELS) * len(GUIDES) * len(ELBOS)
    for model in MODELS:      # every model trains with at least one guide and estimator
        assert any(r["model"] == model for r in VALID)
