"""AIS and BDMC against independent numbers: a closed-form Gaussian marginal, the lvm's exact
quadrature, an exact posterior as the base (every weight is p(x)), and on a trained VAE the
ordering AIS ≥ IWAE and a BDMC gap that shrinks as the steps grow."""
import json
import math
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from experiments import ais as ais_command
from experiments import load
from experiments.common.errors import UserError
from experiments.evaluation.ais import ais_estimate, sigmoid_schedule
from experiments.evaluation.bdmc import bdmc, simulate
from experiments.evaluation.likelihood import iwae_estimate
from experiments.parts.build import build
from experiments.results import bdmc_steps
from experiments.training.end_to_end import run
from models.plates import data_plate

K_SE = 4.0        # standard errors a Monte Carlo number may stray from the truth


def ppca_closed_form(model, x):
    """log N(x | b, W Wᵀ + σ² I) with a full covariance, apart from the model's low-rank code."""
    w, b = model.linear.weight.detach(), model.linear.bias.detach()
    cov = w @ w.T + model.likelihood.scale.detach() ** 2 * torch.eye(len(b))
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


@pytest.fixture
def ppca():
    parts = build("ppca", "normal", data_dim=5, latent_dim=2, hidden_dims=(16,))
    with torch.no_grad():
        parts.model.linear.weight.normal_(0.0, 1.5)
        parts.model.linear.bias.normal_()
    return parts


def test_sigmoid_schedule_runs_from_zero_to_one_increasing():
    betas = sigmoid_schedule(20)
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 21
    assert (betas.diff() > 0).all()


@pytest.mark.parametrize("base", ["guide", "prior"])
def test_ais_matches_the_closed_form_gaussian_marginal(ppca, base):
    """From the untrained encoder's q (or the prior), far from p(z|x): the mean AIS estimate
    lies within K_SE Monte Carlo errors of the closed form, where the guide's IWAE with as many
    samples as chains falls short by many."""
    x = torch.randn(24, 5) * 2
    exact = ppca_closed_form(ppca.model, x).mean().item()
    estimate = ais_estimate(ppca.model, ppca.guide, x, num_steps=100, num_chains=16,
                            leapfrog_steps=5, base=base)
    assert abs(estimate.value - exact) < K_SE * estimate.mc_stderr
    assert 0.4 < estimate.acceptance < 0.95          # the step size adapted towards 0.65
    if base == "guide":
        iwae = iwae_estimate(ppca.model, ppca.guide, x, 16)
        assert iwae.value < exact - K_SE * iwae.mc_stderr


def test_with_the_exact_posterior_as_base_every_weight_is_p_of_x():
    """q = p(z|x) makes ℓ(z) = log p(x) at every z: each chain's log-weight Σ_t Δβ_t log p(x)
    is log p(x) exactly, so every step's increment and the −log C must be there (to rounding)."""
    parts = build("ppca", "normal", data_dim=4, latent_dim=2)
    with torch.no_grad():          # orthogonal columns of W: p(z|x) diagonal, no correlations
        parts.model.linear.weight.copy_(torch.tensor([[2.0, 0], [0, 1.0], [1.0, 0], [0, -1.0]]))
    model = parts.model

    def exact_guide(x, index=None, num_data=None):
        with data_plate(x, index, num_data):
            pyro.sample("z", model.exact_posterior(x))

    x = torch.randn(6, 4)
    estimate = ais_estimate(model, exact_guide, x, num_steps=7, num_chains=5, leapfrog_steps=2)
    assert torch.allclose(estimate.per_point, ppca_closed_form(model, x), atol=1e-4)
    assert estimate.per_point_mc_var.max() < 1e-6


@pytest.mark.slow
def test_ais_and_bdmc_match_the_lvm_quadrature():
    """On the nonlinear lvm: forward AIS on test points within K_SE errors of the quadrature;
    on simulated points, the forward and reverse estimates sandwich the exact mean."""
    parts = build("lvm", "normal", data_dim=6, latent_dim=2, hidden_dims=(16,))
    with torch.no_grad():
        parts.model.likelihood.scale.fill_(0.3)
    model, guide = parts.model, parts.guide
    x = torch.randn(16, 6)
    estimate = ais_estimate(model, guide, x, num_steps=100, num_chains=16, leapfrog_steps=5)
    exact = model.exact_log_likelihood(x).mean().item()
    assert abs(estimate.value - exact) < K_SE * estimate.mc_stderr

    sandwich = bdmc(model, guide, num_points=16, num_steps=100, num_chains=8, leapfrog_steps=5)
    truth = model.exact_log_likelihood(sandwich.x).mean().item()
    assert sandwich.lower.value < truth + K_SE * sandwich.lower.mc_stderr
    assert sandwich.upper.value > truth - K_SE * sandwich.upper.mc_stderr
    assert sandwich.gap < 0.5


def test_simulated_points_are_drawn_from_the_prior_and_the_likelihood():
    parts = build("ppca", "normal", data_dim=3, latent_dim=2)
    x, z = simulate(parts.model, 4000)
    assert x.shape == (4000, 3) and z["z"].shape == (4000, 2)
    covariance = torch.cov(z["z"].T)
    assert torch.allclose(covariance, torch.eye(2), atol=K_SE * math.sqrt(2 / 4000))


@pytest.fixture(scope="module")
def trained_vae():
    """A VAE trained for a few hundred steps on the bundled digits (binarized)."""
    from sklearn.datasets import load_digits
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = torch.tensor(load_digits().data[:400] / 16.0, dtype=torch.float32).bernoulli()
    parts = build("vae", "normal", data_dim=64, latent_dim=8, hidden_dims=(64,))
    svi = SVI(parts.model, parts.guide, Adam({"lr": 3e-3}), Trace_ELBO())
    for step in range(300):
        index = torch.randint(0, 400, (64,))
        svi.step(x[index], index, 400)
    return parts, x[:48]


@pytest.mark.slow
def test_ais_sits_above_iwae_on_a_trained_vae(trained_vae):
    """IWAE with K samples is a lower bound in expectation; AIS with K chains from the same q
    and T steps is tighter where q(z|x) misses p(z|x): its mean over points lies above IWAE's by
    more than the standard error of the paired differences over points."""
    parts, x = trained_vae
    iwae = iwae_estimate(parts.model, parts.guide, x, 16)
    estimate = ais_estimate(parts.model, parts.guide, x, num_steps=100, num_chains=16,
                            leapfrog_steps=5)
    differences = estimate.per_point - iwae.per_point
    assert differences.mean() > K_SE * differences.std() / math.sqrt(len(x))


@pytest.mark.slow
def test_the_bdmc_gap_shrinks_as_the_steps_grow(trained_vae):
    parts, _ = trained_vae
    short, long = (bdmc(parts.model, parts.guide, num_points=12, num_steps=steps, num_chains=8,
                        leapfrog_steps=5) for steps in (5, 100))
    assert long.gap < short.gap / 2
    assert long.upper.value > long.lower.value - K_SE * math.hypot(long.upper.mc_stderr,
                                                                   long.lower.mc_stderr)


def test_an_unknown_base_is_refused(ppca):
    with pytest.raises(ValueError, match="guide, prior"):
        ais_estimate(ppca.model, ppca.guide, torch.zeros(2, 5), num_steps=2, base="posterior")


def test_the_command_writes_ais_beside_iwae_and_the_bdmc_sandwich(quick_config, capsys):
    trained = run(quick_config(epochs=1))
    assert ais_command.main(["--run", str(trained.run_dir), "--num-points", "6", "--steps", "5",
                             "--chains", "4", "--leapfrog-steps", "2", "--iwae-samples", "8",
                             "--bdmc", "3"]) == 0
    result = json.loads((trained.run_dir / "ais.json").read_text())
    assert result["num_points"] == 6 and result["num_steps"] == 5
    assert result["bdmc"]["upper"] - result["bdmc"]["lower"] == pytest.approx(
        result["bdmc"]["gap"])
    out = capsys.readouterr().out
    assert "AIS, 4 chains × 5 steps from the guide" in out and "BDMC on 3 points" in out
    loaded = load(trained.run_dir).ais(torch.zeros(2, 64), num_steps=3, num_chains=2)
    assert loaded.per_point.shape == (2,) and math.isfinite(loaded.value)


def test_the_command_refuses_discrete_latents_and_bad_options_in_one_line(quick_config, capsys):
    trained = run(quick_config(model="discrete-vae", guide="relaxed", epochs=1))
    assert ais_command.main(["--run", str(trained.run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "z is discrete" in err and "\n" not in err
    with pytest.raises(UserError, match="--model discrete-vae: AIS moves"):
        load(trained.run_dir).ais(torch.zeros(1, 64))
    assert ais_command.main(["--run", str(trained.run_dir), "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps must be at least 1 (got 0)"


def test_the_numbers_of_the_evaluation_page_keep_the_bounds_order():
    """docs/results/evaluation.json and evaluation-10.json, which
    experiments/results/evaluation_table.py writes from the runs the page quotes: each test
    ELBO under its IWAE estimate (L_1 ≤ L_K); on the lvm, AIS within K_SE of the exact value,
    IWAE under it, and the BDMC bounds in order, at every number of steps of the vae's."""
    results = Path(__file__).parent.parent / "docs" / "results"
    numbers = json.loads((results / "evaluation.json").read_text())
    after_10 = json.loads((results / "evaluation-10.json").read_text())
    for row in [*numbers["vae"].values(), *after_10["vae"].values()]:
        assert row["test_elbo"] <= row["test_iwae"]
    lvm = numbers["lvm"]
    assert abs(lvm["ais"] - lvm["exact"]) < K_SE * lvm["ais_mc_stderr"]
    assert lvm["iwae"] <= lvm["exact"] + K_SE * lvm["iwae_mc_stderr"]
    bdmc = lvm["bdmc"]
    assert bdmc["lower"] <= bdmc["upper"] + K_SE * math.hypot(bdmc["lower_mc_stderr"],
                                                              bdmc["upper_mc_stderr"])
    for row in (numbers.get("bdmc_steps") or {"rows": []})["rows"]:
        assert row["lower"] <= row["upper"] + K_SE * math.hypot(row["lower_mc_stderr"],
                                                                row["upper_mc_stderr"])


@pytest.mark.slow
def test_every_row_of_the_bdmc_steps_table_sandwiches_the_closed_form(quick_config):
    """bdmc_steps on a trained ppca: at each number of steps the forward bound lies under the
    closed-form mean log p(x) of the simulated points and the reverse bound over it, within
    K_SE errors each, and the rows are the steps asked for."""
    trained = run(quick_config(model="ppca", epochs=1, latent_dim=2))
    assert bdmc_steps.main([str(trained.run_dir), "5", "40"]) == 0
    table = json.loads((trained.run_dir / "bdmc_steps.json").read_text())
    model = trained.parts.model
    x, _ = simulate(model, table["num_points"])
    exact = model.exact_log_likelihood(x).mean().item()
    assert [row["num_steps"] for row in table["rows"]] == [5, 40]
    for row in table["rows"]:
        assert row["lower"] < exact + K_SE * row["lower_mc_stderr"]
        assert row["upper"] > exact - K_SE * row["upper_mc_stderr"]


def test_the_bdmc_steps_table_refuses_bad_arguments_in_one_line(capsys, tmp_path):
    assert bdmc_steps.main([]) == 2
    assert capsys.readouterr().err.strip().startswith("error: name a finished run")
    assert bdmc_steps.main([str(tmp_path), "many"]) == 2
    assert capsys.readouterr().err.strip() == ("error: STEPS are whole numbers of annealing "
                                               "steps (got ['many'])")
