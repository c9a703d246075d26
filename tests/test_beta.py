"""β-weighting and KL warm-up (``--beta``, ``--kl-warmup``): the loss against the β-weighted
objective written out in plain PyTorch at fixed draws, β = 1 identical to a run without the
weighting, the warm-up's β per epoch, test numbers at β = 1, and the refusals.

The reference never calls Pyro: with z_i = μ_φ(x_i) + σ_φ(x_i) ε_i read back from the guide, on
a minibatch of B = 4 of N = 12 points,

    loss = −(N/B) Σ_i [log p(x_i|z_i) + β (log p(z_i) − log q(z_i|x_i))]      (trace)
    loss = −(N/B) Σ_i [log p(x_i|z_i) − β KL(q(z|x_i) ‖ N(0, I))]             (meanfield)

with p(z) = p(z₁|z₂) p(z₂) and q = q(z₁|x) q(z₂|z₁) for the hvae.
"""
import copy
import csv
import math
import re

import pyro
import pytest
import torch
from pyro import poutine
from torch.distributions import Bernoulli, Normal
from torch.nn.functional import softplus

from experiments import train
from experiments.estimators import ELBOS
from experiments.evaluation.bounds import importance_weights
from experiments.evaluation.likelihood import mean_elbo
from experiments.parts.build import build
from experiments.parts.compatibility import matrix, weighting_error
from experiments.training import loop
from experiments.training.end_to_end import run
from experiments.training.prepare import prepare_data
from experiments.training.weighting import LatentScale

N, B, D = 12, 4, 6


def gaussian(out):
    loc, raw = out.chunk(2, dim=-1)
    return Normal(loc, softplus(raw) + 1e-6)


def weighted_loss_by_hand(name, elbo, model, guide, x, draws, beta):
    """The β-weighted loss at the draws ``draws`` (z, or (z₁, z₂)), differentiable in θ and φ."""
    scale = N / B
    q1 = gaussian(guide.encoder(x))
    z1 = q1.loc + q1.scale * ((draws[0] - q1.loc) / q1.scale).detach()       # same z, with paths
    if name == "vae":
        log_prior = Normal(0.0, 1.0).log_prob(z1).sum(-1)
        log_q = q1.log_prob(z1).sum(-1)
    else:
        q2 = gaussian(guide.chain[0](z1))
        z2 = q2.loc + q2.scale * ((draws[1] - q2.loc) / q2.scale).detach()
        log_prior = (gaussian(model.z1_decoder(z2)).log_prob(z1).sum(-1)
                     + Normal(0.0, 1.0).log_prob(z2).sum(-1))
        log_q = q1.log_prob(z1).sum(-1) + q2.log_prob(z2).sum(-1)
    log_lik = Bernoulli(logits=model.decoder(z1)).log_prob(x).sum(-1)
    if elbo == "meanfield":                                  # KL(N(m, s²) ‖ N(0, 1)) per coordinate
        m, s = q1.loc, q1.scale
        kl = (-torch.log(s) + (s ** 2 + m ** 2) / 2 - 0.5).sum(-1)
        return -scale * (log_lik - beta * kl).sum()
    return -scale * (log_lik + beta * (log_prior - log_q)).sum()


@pytest.mark.parametrize("name, guide_name, elbo, beta", [
    ("vae", "normal", "trace", 0.3), ("vae", "normal", "meanfield", 0.3),
    ("vae", "normal", "trace", 0.0), ("hvae", "chain", "trace", 2.5)])
def test_the_loss_and_its_gradients_weight_the_latent_terms_by_beta(name, guide_name, elbo,
                                                                    beta):
    parts = build(name, guide_name, elbo, data_dim=D, latent_dim=2, latent_dims=(3, 2),
                  hidden_dims=(5,))
    model, guide = parts.model.double(), parts.guide.double()
    generator = torch.Generator().manual_seed(3)
    x_all = torch.rand(N, D, generator=generator, dtype=torch.float64).round()
    index = torch.randperm(N, generator=generator)[:B]
    traced = poutine.trace(guide)
    with LatentScale(beta):                                  # as the training loop applies it
        loss = parts.elbo.loss_and_grads(model, traced, x_all[index], index, N)
    draws = [traced.trace.nodes[s]["value"].detach() for s in model.latent_sites]
    expected = weighted_loss_by_hand(name, elbo, model, guide, x_all[index], draws, beta)
    assert loss == pytest.approx(expected.item(), rel=1e-9)
    params = [p for module in (model, guide) for p in module.parameters()]
    grads = torch.autograd.grad(expected, params, allow_unused=True)
    for p, g in zip(params, grads):
        assert torch.allclose(p.grad, torch.zeros_like(p) if g is None else g, rtol=1e-7,
                              atol=1e-10)


@pytest.mark.slow
def test_beta_one_trains_exactly_as_without_the_weighting(quick_config, tmp_path, monkeypatch):
    """The run at β = 1 through ``LatentScale`` against the same run without it: the same
    numbers to the last bit, and no column added."""
    weighted = run(quick_config(out=str(tmp_path / "weighted"), beta=1.0))

    class Bare:
        scale = 1.0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(loop, "LatentScale", Bare)
    bare = run(quick_config(out=str(tmp_path / "bare")))
    drop = lambda rows: [{k: v for k, v in r.items()
                          if k not in ("seconds", "eval_seconds")} for r in rows]
    assert drop(weighted.metrics) == drop(bare.metrics)
    assert weighted.summary["test_iwae"] == bare.summary["test_iwae"]
    assert "beta" not in weighted.metrics[0] and weighted.summary["beta"] == 1.0


@pytest.mark.slow
def test_warmup_logs_beta_per_epoch_and_tests_at_beta_one(quick_config):
    """β·min(1, (e − 1)/E) for E = 3 and β = 0.5: 0, 1/6, 1/3, 1/2; the test ELBO is the true
    bound of the trained parts, recomputed here without any weighting."""
    config = quick_config(epochs=4, beta=0.5, kl_warmup=3)
    result = run(config)
    with open(result.run_dir / "metrics.csv") as f:
        logged = [float(row["beta"]) for row in csv.DictReader(f)]
    assert logged == pytest.approx([0.0, 0.5 / 3, 1.0 / 3, 0.5], abs=1e-12)
    assert (result.summary["beta"], result.summary["kl_warmup"]) == (0.5, 3)
    x_test = prepare_data(config, torch.device("cpu")).x_test
    assert result.metrics[-1]["test_elbo"] == pytest.approx(
        mean_elbo(result.parts.model, result.parts.guide, x_test), rel=1e-9)


def test_a_warmup_epoch_at_beta_zero_trains_the_reconstruction_term_alone(quick_config):
    """The training loop weights model and guide: at β = 0 (the first warm-up epoch) each step's
    loss is −(N/B) Σ_i log p(x_i|z_i), so with the parameters held (lr 1e-9) the epoch's train
    ELBO estimates the mean E_q[log p(x|z)] at the start, here computed apart with 500 draws
    per point. Within 4 standard errors of the epoch's estimate (one draw per point, the
    batches of B_b points averaged per step); unweighting the guide would add E_q[−log q], about
    2 nats, and the model E_q[log p(z)], about −2."""
    config = quick_config(epochs=1, kl_warmup=1, lr=1e-9, binarize="static", iwae_samples=2)
    starts = []
    result = run(config, on_start=lambda parts, data: starts.append(
        (copy.deepcopy(parts.model.state_dict()), copy.deepcopy(parts.guide.state_dict()))))
    model, guide = result.parts.model, result.parts.guide
    model.load_state_dict(starts[0][0]), guide.load_state_dict(starts[0][1])
    x = prepare_data(config, torch.device("cpu")).x_train
    log_lik = importance_weights(model, guide, x, 500, observed_only=True)          # (S, N)
    batches = [len(b) for b in torch.arange(len(x)).split(config.batch_size)]
    stderr = log_lik.std().item() * math.sqrt(sum(1 / b for b in batches)) / len(batches)
    assert result.metrics[0]["train_elbo"] == pytest.approx(log_lik.mean().item(),
                                                            abs=4 * stderr)
    assert 4 * stderr < 1.0


@pytest.mark.parametrize("elbo, flag", [("iwae", "--beta"), ("renyi", "--kl-warmup"),
                                        ("dreg", "--beta"), ("tail-adaptive", "--beta")])
def test_k_sample_estimators_refuse_beta_in_one_line(elbo, flag, capsys, tmp_path):
    argv = ["--elbo", elbo, "--num-particles", "3", "--vectorize-particles", flag,
            "0.5" if flag == "--beta" else "2", "--epochs", "1", "--num-train", "50",
            "--no-progress", "--out", str(tmp_path / "run")]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "K-sample bound needs one scale on every site" in err[0]
    assert "use --elbo trace, meanfield, tracegraph, stl" in err[0]
    assert not (tmp_path / "run").exists()


OPTIONS = dict(latent_dim=2, hidden_dims=(8,), beta=0.5)
CELLS = [r for r in matrix(**OPTIONS) if r["ok"]]


@pytest.mark.parametrize("row", CELLS, ids=lambda r: f"{r['model']}-{r['guide']}-{r['elbo']}")
def test_every_cell_either_trains_at_beta_or_refuses_it(row):
    """Where ``weighting_error`` allows β, three steps at β = 0.5 run with validation on and
    finite losses; elsewhere building the parts refuses it with that reason."""
    vectorized = ELBOS[row["elbo"]].vectorized
    options = dict(OPTIONS, num_particles=3 if vectorized else 1, vectorize_particles=vectorized)
    reason = weighting_error(row["guide"], row["elbo"], beta=0.5)
    if reason:
        with pytest.raises(Exception, match=re.escape(reason)):
            build(row["model"], row["guide"], row["elbo"], data_dim=5, num_data=6, **options)
        return
    parts = build(row["model"], row["guide"], row["elbo"], data_dim=5, num_data=6, **options)
    svi = pyro.infer.SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 1e-2}), parts.elbo)
    x = torch.rand(6, 5).bernoulli()
    with LatentScale(0.5):
        for _ in range(3):
            loss = svi.step(x, torch.arange(6), 6)
            assert math.isfinite(loss) or not ELBOS[row["elbo"]].has_loss
