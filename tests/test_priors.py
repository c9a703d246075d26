"""The vae's swappable priors against hand-written mixtures: the MoG prior's density, the
VampPrior's as the mean of the encoder's Gaussians at the pseudo-inputs (under the iaf, its
base Gaussians there); runs that train and resume; one-line refusals where a prior cannot go."""
import math

import pytest
import torch

from experiments import train
from experiments.parts.build import build
from experiments.training.end_to_end import run


def log_normal(z, loc, scale):
    """Σ_j log N(z_j | loc_j, scale_j²), written out."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_the_mog_prior_is_the_weighted_sum_of_its_gaussians():
    model = build("vae", "normal", data_dim=6, latent_dim=2, prior="mog", components=3).model
    prior = model.learned_prior
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        prior.raw_scales.normal_()
    z = torch.randn(5, 2)
    scales = torch.nn.functional.softplus(prior.raw_scales) + 1e-6
    weights = prior.logits.exp() / prior.logits.exp().sum()
    by_hand = torch.log(sum(weights[k] * log_normal(z, prior.locs[k], scales[k]).exp()
                            for k in range(3)))
    assert torch.allclose(model.prior(z).log_prob(z), by_hand, atol=1e-5)


def test_the_vampprior_is_the_mean_of_the_encoders_gaussians_at_the_pseudo_inputs():
    parts = build("vae", "normal", data_dim=6, latent_dim=2, hidden_dims=(8,), prior="vamp",
                  pseudo_inputs=4)
    u = parts.model.learned_prior.pseudo_inputs
    out = parts.guide.encoder(u)                                        # (K, 2d)
    loc, scale = out[:, :2], torch.nn.functional.softplus(out[:, 2:]) + 1e-6
    z = torch.randn(5, 2)
    by_hand = torch.log(sum(log_normal(z, loc[k], scale[k]).exp() for k in range(4)) / 4)
    assert torch.allclose(parts.model.prior(z).log_prob(z), by_hand, atol=1e-5)


def test_the_vampprior_of_an_iaf_guide_mixes_its_base_gaussians_at_the_pseudo_inputs():
    parts = build("vae", "iaf", data_dim=6, latent_dim=3, hidden_dims=(8,), prior="vamp",
                  pseudo_inputs=4)
    u = parts.model.learned_prior.pseudo_inputs
    out = parts.guide.encoder(u)                                        # (K, 2d + context)
    loc, scale = out[:, :3], torch.nn.functional.softplus(out[:, 3:6]) + 1e-6
    z = torch.randn(5, 3)
    by_hand = torch.log(sum(log_normal(z, loc[k], scale[k]).exp() for k in range(4)) / 4)
    assert torch.allclose(parts.model.prior(z).log_prob(z), by_hand, atol=1e-5)
    flows = [parts.guide.posterior(u[k:k + 1]).log_prob(z) for k in range(4)]
    assert not torch.allclose(torch.stack(flows).logsumexp(0) - math.log(4), by_hand, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_a_learned_prior_trains_and_resumes(quick_config, prior):
    settings = dict(prior=prior, pseudo_inputs=10, components=4, latent_dim=3)
    first = run(quick_config(epochs=1, **settings))
    start = {k: v.clone() for k, v in first.parts.model.learned_prior.state_dict().items()}
    resumed = run(quick_config(epochs=2, **settings), resume=first.run_dir)
    assert resumed.summary["epochs"] == 2
    after = resumed.parts.model.learned_prior.state_dict()
    assert any(not torch.equal(start[k], after[k]) for k in start)      # it learns
    assert "kl_per_dimension" not in resumed.summary        # a mixture does not split by unit
    assert resumed.summary["test_mutual_information"] >= 0


@pytest.mark.parametrize("flags, says", [
    (["--model", "lvm", "--prior", "vamp"],
     "--prior vamp: the lvm model keeps its own p(z) (its exact log p(x) needs it); --prior "
     "applies to vae"),
    (["--prior", "mog", "--elbo", "meanfield"], "meanfield needs KL(q(z|x) ‖ p(z)) in closed form"),
    (["--prior", "vamp", "--guide", "local"], "--prior vamp mixes the encoder's q(z|u_k)"),
    (["--prior", "mog", "--free-bits", "1"], "--free-bits needs the KL per latent unit"),
])
def test_a_prior_is_refused_in_one_line_where_it_cannot_go(capsys, tmp_path, flags, says):
    assert train.main([*flags, "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {says}") and "\n" not in err
    assert not (tmp_path / "r").exists()
