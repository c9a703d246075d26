"""The measurements and figures of each of the six lessons in docs/lessons/, from the finished
runs of ``experiments.lessons.runs``, and the regeneration of them all (``make lessons``)."""
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from experiments.common.files import copy_file, write_json
from experiments.common.rng import isolated_rng
from experiments.evaluation.bounds import elbo_terms, importance_weights, iwae_bounds, renyi_bounds
from experiments.evaluation.diagnostics import posterior_kl_per_point
from experiments.evaluation.gradients import gaussian_mean_gradients
from experiments.evaluation.inference_gaps import inference_gaps
from experiments.figures.bounds import plot_bounds_against_k_and_alpha, plot_gap_against_kl
from experiments.figures.gap_bars import plot_gaps
from experiments.figures.gradients import plot_gradient_draws
from experiments.lessons.markers import fill_lessons
from experiments.lessons.runs import COMPARISONS, RUNS, Budget, run_comparison, train_all
from experiments.training.trained import load_trained
from guides.categorical import CategoricalGuide
from models.lvm import GRID_POINTS

BOUND_SAMPLES = 1000          # importance samples per point behind L_K, L_α and the ELBO terms
IWAE_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
RENYI_ALPHAS = tuple(a / 10 for a in range(11))


class Lessons:
    """Measures and figures of each lesson, from the finished runs in ``out``."""

    def __init__(self, out: Path, figures: Path, budget: Budget, jobs: int,
                 comparisons: Dict[str, tuple] = COMPARISONS):
        self.out, self.figures, self.budget, self.jobs = out, figures, budget, jobs
        self.comparisons = comparisons          # lesson 4's: (settings, --elbos) by name
        figures.mkdir(parents=True, exist_ok=True)

    def run_dir(self, name: str) -> Path:
        return self.out / name

    def summary(self, name: str) -> dict:
        return json.loads((self.run_dir(name) / "summary.json").read_text())

    def trained(self, name: str):
        return load_trained(self.run_dir(name))

    def figure(self, run: str, figure: str, name: str) -> None:
        """A run's own figure, copied to docs/lessons/figures/<name>.png."""
        copy_file(self.run_dir(run) / f"{figure}.png", self.figures / f"{name}.png")

    def lesson1(self) -> dict:
        """The Gaussian mixture fitted with TraceEnum_ELBO, z summed out."""
        s = self.summary("gmm-enum")
        self.figure("gmm-enum", "density", "lesson1-density")
        self.figure("gmm-enum", "posterior", "lesson1-posterior")
        self.figure("gmm-enum", "bounds", "lesson1-bounds")
        return {"num_train": s["num_train"], "num_test": s["num_test"],
                "epochs": s["epochs"], **_pick(s, "test_elbo", "test_iwae",
                                               "test_exact_log_likelihood",
                                               "true_log_likelihood", "recovery_weights_error",
                                               "recovery_means_error", "recovery_scales_error"),
                "gap_to_truth": s["true_log_likelihood"] - s["test_exact_log_likelihood"]}

    def lesson2(self) -> dict:
        """The nonlinear LVM on the ring: the curve, ancestral samples, p(z|x) against q(z|x)."""
        s = self.summary("lvm-normal")
        _, _, parts = self.trained("lvm-normal")
        self.figure("lvm-normal", "curve", "lesson2-curve")
        self.figure("lvm-normal", "posterior", "lesson2-posterior")
        return {"epochs": s["epochs"], "num_train": s["num_train"], "num_test": s["num_test"],
                "grid_points": GRID_POINTS[2] ** 2, "sigma": parts.model.likelihood.scale.item(),
                "gap_to_truth": s["true_log_likelihood"] - s["test_exact_log_likelihood"],
                **_pick(s, "test_elbo", "test_iwae", "test_exact_log_likelihood",
                        "true_log_likelihood", "test_gap")}

    def lesson3(self) -> dict:
        """The gap log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)), measured two ways, and the ELBO's two
        decompositions, on the models of lessons 1 and 2."""
        gmm = self.summary("gmm-categorical")
        with open(self.run_dir("gmm-categorical") / "metrics.csv") as f:
            first = {k: float(v) for k, v in next(csv.DictReader(f)).items()}
        self.figure("gmm-categorical", "bounds", "lesson3-gmm-bounds")
        self.figure("lvm-normal", "bounds", "lesson3-lvm-bounds")
        # the identity holds for any q: a fresh (untrained) guide against the fitted mixture
        config, data, parts = self.trained("gmm-categorical")
        with isolated_rng(config.seed + 1, data.x_train.device):
            fresh = CategoricalGuide(parts.model, config.hidden_dims)
        x = data.x_test[: self.budget.scatter_points]
        gmm_gap, gmm_kl, _ = self._gap_and_kl(parts.model, fresh, x)
        _, data, parts = self.trained("lvm-normal")
        x = data.x_test[: self.budget.scatter_points]
        lvm_gap, lvm_kl, log_w = self._gap_and_kl(parts.model, parts.guide, x)
        # the Monte Carlo standard error of the mean gap: (1/N) √(Σ_i Var[log w_i] / S)
        gap_stderr = (log_w.var(0).sum() / log_w.shape[0]).sqrt().item() / len(x)
        terms = {k: v.mean().item() for k, v in elbo_terms(parts.model, parts.guide, x,
                                                             log_w).items()}
        plot_gap_against_kl([("Gaussian mixture, an untrained categorical q(z|x)", gmm_gap,
                              gmm_kl),
                             ("nonlinear LVM (ring), the trained Gaussian q(z|x)", lvm_gap,
                              lvm_kl)],
                            self.figures / "lesson3-gap-is-kl.png")
        log_px = (lvm_gap + log_w.mean(0)).mean().item()       # gap = log p(x) − ELBO
        return {**_pick(gmm, "test_elbo", "test_exact_log_likelihood", "test_gap",
                        "test_posterior_kl", prefix="gmm_"),
                "gmm_first_epoch_gap": first["test_gap"],
                "gmm_first_epoch_posterior_kl": first["test_posterior_kl"],
                "gmm_fresh_gap": gmm_gap.mean().item(), "gmm_fresh_kl": gmm_kl.mean().item(),
                "lvm_gap": lvm_gap.mean().item(), "lvm_kl": lvm_kl.mean().item(),
                "lvm_gap_stderr": gap_stderr,
                "points": len(x), "samples": BOUND_SAMPLES,
                "lvm_log_likelihood": log_px,
                **{f"lvm_{k}": v for k, v in terms.items()}}

    def _gap_and_kl(self, model, guide, x):
        """Per point: log p(x_i) − ELBO(x_i), the ELBO the mean of the log weights log w_ki
        (also returned), and KL(q ‖ p(z|x_i)) without sampling (``posterior_kl_per_point``)."""
        log_w = importance_weights(model, guide, x, BOUND_SAMPLES)
        with torch.no_grad():
            gap = model.exact_log_likelihood(x) - log_w.mean(0)
        kl = posterior_kl_per_point(model, guide, x, next(iter(model.latent_sites)))
        return gap, kl, log_w

    def lesson4(self) -> dict:
        """Score function against reparameterization: a one-line toy, then the comparisons."""
        x0, s, mu, sigma = 2.0, 0.5, 0.0, 1.0          # f(z) = log N(x0 | z, s²), z ~ N(μ, σ²)
        mean_f = (-((x0 - mu) ** 2 + sigma ** 2) / (2 * s ** 2)
                  - math.log(s * math.sqrt(2 * math.pi)))
        draws = gaussian_mean_gradients(
            lambda z: torch.distributions.Normal(z, s).log_prob(torch.tensor(x0)), mu, sigma,
            draws=100 if self.budget.quick else 10000, baseline=mean_f)
        true = (x0 - mu) / s ** 2
        plot_gradient_draws(draws, true, f"∂/∂μ E[log N({x0:g} | z, {s:g}²)], z ~ N(μ = {mu:g}, "
                            f"σ² = {sigma:g}): three unbiased estimators",
                            self.figures / "lesson4-toy-gradients.png")
        numbers = {"toy_true_gradient": true, "toy_mean_f": mean_f,
                   **{f"toy_sd_{k.replace('score function', 'score').replace(', ', '_')}":
                      v.std().item() for k, v in draws.items()},
                   **{f"toy_mean_{k.replace('score function', 'score').replace(', ', '_')}":
                      v.mean().item() for k, v in draws.items()}}
        for name, (settings, elbos) in self.comparisons.items():
            rows = run_comparison(settings, elbos, self.out / name, self.budget, self.jobs)
            for figure in ("gradient_variance", "curves"):
                copy_file(self.out / name / f"{figure}.png",
                               self.figures / f"lesson4-{name}-{figure}.png".replace("_", "-"))
            for row in rows:
                key = row["label"].split("/")[0].replace("-", "_")
                for column in ("grad_var_guide_init", "grad_var_guide", "grad_snr_guide_init",
                               "test_elbo_mean", "test_exact_log_likelihood_mean"):
                    if column in row:
                        numbers[f"{name.split('-')[1]}_{key}_{column}"] = row[column]
        numbers["vae_variance_ratio_init"] = (numbers["vae_score_function_grad_var_guide_init"]
                                              / numbers["vae_trace_grad_var_guide_init"])
        numbers["gmm_baseline_reduction"] = 1 - (numbers["gmm_tracegraph_grad_var_guide"]
                                                 / numbers["gmm_trace_grad_var_guide"])
        numbers["seeds"] = self.budget.seeds
        numbers["grad_draws"] = self.budget.grad_draws
        return numbers

    def lesson5(self) -> dict:
        """The VAE on the digits: Bernoulli and Gaussian decoders."""
        bern, gauss = self.summary("vae-bernoulli"), self.summary("vae-gaussian")
        for figure in ("reconstructions", "samples", "latent", "manifold"):
            self.figure("vae-bernoulli", figure, f"lesson5-{figure}")
        self.figure("vae-gaussian", "samples", "lesson5-gaussian-samples")
        self.figure("vae-gaussian", "reconstructions", "lesson5-gaussian-reconstructions")
        _, data, parts = self.trained("vae-bernoulli")
        x = data.x_test
        log_w = importance_weights(parts.model, parts.guide, x, BOUND_SAMPLES)
        terms = {k: v.mean().item() for k, v in elbo_terms(parts.model, parts.guide, x,
                                                             log_w).items()}
        _, _, gaussian = self.trained("vae-gaussian")
        return {"num_train": bern["num_train"], "num_test": bern["num_test"],
                "epochs": bern["epochs"], "seconds_per_epoch": bern["seconds_per_epoch"],
                **_pick(bern, "test_elbo", "test_iwae", prefix="bernoulli_"),
                **{f"bernoulli_{k}": v for k, v in terms.items()},
                **_pick(gauss, "test_elbo", "test_iwae", prefix="gaussian_"),
                "gaussian_sigma": gaussian.model.likelihood.scale.item()}

    def lesson6(self) -> dict:
        """Tighter bounds (IWAE, Rényi) and richer guides on the LVM, whose log p(x) is exact;
        the approximation and amortization gaps."""
        _, data, parts = self.trained("lvm-normal")
        x = data.x_test
        log_w = importance_weights(parts.model, parts.guide, x, BOUND_SAMPLES)
        iwae = {k: v.mean().item() for k, v in iwae_bounds(log_w, IWAE_KS).items()}
        renyi = {a: v.mean().item() for a, v in renyi_bounds(log_w, RENYI_ALPHAS).items()}
        with torch.no_grad():
            exact = parts.model.exact_log_likelihood(x).mean().item()
        plot_bounds_against_k_and_alpha(
            iwae, renyi, exact, f"bounds on log p(x) of the nonlinear LVM (ring), its trained "
            f"Gaussian q(z|x), {len(x)} test points, {BOUND_SAMPLES} samples each",
            self.figures / "lesson6-bounds.png")
        gaps = inference_gaps(parts.model, parts.guide, x[: self.budget.gap_points],
                              max_blocks=self.budget.gap_blocks)
        plot_gaps(gaps, "nonlinear LVM (ring), Gaussian q(z|x) trained with the ELBO",
                  self.figures / "lesson6-gaps.png")
        for run in ("lvm-mvn", "lvm-flow", "lvm-iwae"):
            self.figure(run, "posterior", f"lesson6-{run.split('-')[1]}-posterior")
        numbers = {"exact": exact, "samples": BOUND_SAMPLES, "num_test": len(x),
                   "total_gap": gaps["log_likelihood"] - gaps["amortized_elbo"],
                   **{f"iwae_{k}": v for k, v in iwae.items()},
                   **{f"renyi_{a:g}".replace(".", "_"): v for a, v in renyi.items()},
                   **{k: gaps[k] for k in ("log_likelihood", "best_elbo", "amortized_elbo",
                                           "approximation_gap", "amortization_gap",
                                           "num_points", "refinement_steps")}}
        for run in ("lvm-normal", "lvm-mvn", "lvm-flow", "lvm-iwae"):
            numbers.update(_pick(self.summary(run), "test_elbo", "test_iwae",
                                 "test_exact_log_likelihood", "test_gap",
                                 prefix=run.split("-")[1] + "_"))
        return numbers


def _pick(summary: dict, *keys: str, prefix: str = "") -> dict:
    return {prefix + k: summary[k] for k in keys}


def regenerate(out: Path, docs: Optional[Path], budget: Budget, jobs: int) -> dict:
    """Train, measure, draw; then write docs/lessons/lessons.json and fill
    docs/lessons/lesson*.md."""
    started = time.perf_counter()
    print(f"training {len(RUNS)} runs in {jobs} processes into {out}/", file=sys.stderr)
    train_all({name: budget.config(settings, out / name) for name, settings in RUNS.items()},
              jobs)
    figures = (docs or out / "docs") / "figures"
    lessons = Lessons(out, figures, budget, jobs)
    steps: Dict[str, Callable[[], dict]] = {f"lesson{n}": getattr(lessons, f"lesson{n}")
                                             for n in range(1, 7)}
    numbers = {}
    for name, step in steps.items():
        print(f"measuring {name}", file=sys.stderr)
        numbers[name] = {k: _rounded(v) for k, v in step().items()
                         if not (isinstance(v, float) and math.isnan(v))}   # JSON has no NaN
    if docs is not None:
        write_json(docs / "lessons.json", numbers)
        fill_lessons(docs, numbers)
    print(f"done in {time.perf_counter() - started:.0f} s: figures in {figures}/"
          + (f", numbers in {docs}/lessons.json and {docs}/lesson*.md" if docs else ""),
          file=sys.stderr)
    return numbers


def _rounded(value):
    return round(value, 6) if isinstance(value, float) else value
