"""Regenerate the lessons' figures and numbers (``make lessons``):

    python -m experiments.lessons [--out runs/lessons] [--jobs 2] [--quick]

Trains the small runs that the six lessons in docs/ describe (in ``--jobs`` processes), measures
what the lessons quote, writes the figures to docs/figures/, the numbers to docs/lessons.json,
and rewrites every number quoted in docs/lesson*.md from that JSON. In the Markdown a quoted
number is its value followed by an invisible marker that names it and its format,

    the exact log-likelihood is -2.080<!--lesson1.exact_log_likelihood:.3f-->

and ``fill`` replaces the value before each marker, so no number in the text is typed by hand;
tests/test_lessons.py checks that the committed Markdown is what ``fill`` makes of the committed
JSON. ``--quick`` runs every step on a sliver of the budget (a check of the pipeline, not
numbers to quote) and writes nothing into docs/ unless ``--docs`` names a folder.
"""
import argparse
import csv
import json
import math
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from experiments import compare, runs
from experiments.bounds import elbo_terms, importance_weights, iwae_bounds, renyi_bounds
from experiments.config import Config
from experiments.diagnostics import posterior_kl_per_point
from experiments.errors import UserError
from experiments.evaluate import isolated_rng
from experiments.gaps import inference_gaps
from experiments.gradients import gaussian_mean_gradients
from guides.categorical import CategoricalGuide

DOCS = Path("docs")

#: every training run the lessons quote, by name: the settings that differ from Config's
RUNS: Dict[str, dict] = {
    "gmm-enum": dict(model="gmm", guide="enum", elbo="enum", data="gmm-1d", epochs=50),
    "gmm-categorical": dict(model="gmm", guide="categorical", elbo="tracegraph", init="kmeans",
                            data="gmm-1d", epochs=50),
    "lvm-normal": dict(model="lvm", guide="normal", data="ring", epochs=200, lr=3e-3),
    "lvm-mvn": dict(model="lvm", guide="mvn", data="ring", epochs=200, lr=3e-3),
    "lvm-flow": dict(model="lvm", guide="flow", data="ring", epochs=200, lr=3e-3),
    "lvm-iwae": dict(model="lvm", guide="normal", elbo="iwae", num_particles=10,
                     vectorize_particles=True, data="ring", epochs=200, lr=3e-3),
    "vae-bernoulli": dict(model="vae", guide="normal", data="digits", epochs=50),
    "vae-gaussian": dict(model="vae", guide="normal", likelihood="gaussian", binarize="none",
                         data="digits", epochs=50),
}
#: the estimator comparisons of lesson 4: (settings, --elbos)
COMPARISONS: Dict[str, tuple] = {
    "compare-vae": (dict(model="vae", guide="normal", data="digits", epochs=30),
                    "trace,score-function"),
    "compare-gmm": (dict(model="gmm", guide="categorical", init="kmeans", data="gmm-1d",
                         epochs=30), "trace,tracegraph,enum/enum"),
}
SEEDS = 2                     # seeds per estimator in the comparisons
GRAD_DRAWS = 100              # gradient draws per measurement
BOUND_SAMPLES = 1000          # importance samples per point behind L_K, L_α and the ELBO terms
IWAE_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
RENYI_ALPHAS = tuple(a / 10 for a in range(11))
SCATTER_POINTS = 200          # test points of the gap-against-KL figure
GAP_POINTS = 100              # test points of the inference gaps
QUICK = dict(epochs=1, num_train=200, num_test=40, iwae_samples=20)

MARKER = re.compile(r"(?P<value>[-+0-9.,eE%]*)<!--(?P<key>[\w.-]+):(?P<spec>[^>]*?)-->")


class Budget:
    """The sizes of one regeneration: the lessons' own, or ``--quick``'s sliver of them."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.seeds = 1 if quick else SEEDS
        self.grad_draws = 5 if quick else GRAD_DRAWS
        self.scatter_points = 20 if quick else SCATTER_POINTS
        self.gap_points = 10 if quick else GAP_POINTS
        self.gap_blocks = 1 if quick else 20

    def config(self, settings: dict, out: Path) -> Config:
        return Config(**{**settings, **(QUICK if self.quick else {}), "out": str(out),
                         "progress": False}).validate()


def fill(text: str, numbers: dict) -> str:
    """``text`` with the value before every ``<!--key:spec-->`` marker replaced by
    ``format(numbers[lesson][name], spec)`` for key = ``lesson.name``."""
    def replace(match: re.Match) -> str:
        lesson, _, name = match["key"].partition(".")
        try:
            value = numbers[lesson][name]
        except KeyError:
            raise UserError(f"the lessons quote {match['key']}, which docs/lessons.json does "
                            "not hold: run `make lessons`, or fix the marker")
        return f"{format(value, match['spec'])}<!--{match['key']}:{match['spec']}-->"
    return MARKER.sub(replace, text)


def quoted_keys(text: str) -> List[str]:
    return [m["key"] for m in MARKER.finditer(text)]


# --- training ----------------------------------------------------------------------------------

def _train(config: dict) -> dict:
    """One run in a worker process, one thread: its summary."""
    from experiments.train import resolve, run

    torch.set_num_threads(1)
    return run(resolve(Config.from_dict(config).replace(progress=False)), force=True).summary


def train_all(configs: Dict[str, Config], jobs: int) -> Dict[str, dict]:
    """Every run of ``configs`` in ``jobs`` processes, the lvm runs (the longest: a quadrature
    of log p(x) every epoch) first; name → summary."""
    order = sorted(configs, key=lambda n: -configs[n].epochs * (configs[n].model == "lvm"))
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {name: pool.submit(_train, configs[name].to_dict()) for name in order}
        summaries = {}
        for name, future in futures.items():
            summaries[name] = future.result()
            print(f"  trained {name}: test ELBO {summaries[name]['test_elbo']:.3f}",
                  file=sys.stderr)
    return summaries


def run_comparison(settings: dict, elbos: str, out: Path, budget: Budget, jobs: int
                   ) -> List[dict]:
    """``python -m experiments.compare`` in-process, K = 1: its rows, and its files in ``out``."""
    config = budget.config(settings, out)
    planned = compare.plan(config, compare.parse_elbos(elbos, config.guide), [1], budget.seeds,
                           out, budget.grad_draws, jobs)
    return compare.report(compare.execute(planned, jobs), out, None, [1], budget.grad_draws)


# --- the lessons -------------------------------------------------------------------------------

class Lessons:
    """Measures and figures of each lesson, from the finished runs in ``out``."""

    def __init__(self, out: Path, figures: Path, budget: Budget, jobs: int):
        self.out, self.figures, self.budget, self.jobs = out, figures, budget, jobs
        figures.mkdir(parents=True, exist_ok=True)

    def run_dir(self, name: str) -> Path:
        return self.out / name

    def summary(self, name: str) -> dict:
        return json.loads((self.run_dir(name) / "summary.json").read_text())

    def trained(self, name: str):
        from experiments.train import load_trained

        return load_trained(self.run_dir(name))

    def figure(self, run: str, figure: str, name: str) -> None:
        """A run's own figure, copied to docs/figures/<name>.png."""
        runs.copy_file(self.run_dir(run) / f"{figure}.png", self.figures / f"{name}.png")

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
        from models.lvm import GRID_POINTS

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
        from experiments.figures.bounds import plot_gap_against_kl

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
        from experiments.figures.gradients import plot_gradient_draws

        x0, s, mu, sigma = 2.0, 0.5, 0.0, 1.0          # f(z) = log N(x0 | z, s²), z ~ N(μ, σ²)
        mean_f = -((x0 - mu) ** 2 + sigma ** 2) / (2 * s ** 2) - math.log(s * math.sqrt(2 * math.pi))
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
        for name, (settings, elbos) in COMPARISONS.items():
            rows = run_comparison(settings, elbos, self.out / name, self.budget, self.jobs)
            for figure in ("gradient_variance", "curves"):
                runs.copy_file(self.out / name / f"{figure}.png",
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
        from experiments.figures.bounds import plot_bounds_against_k_and_alpha
        from experiments.figures.gaps import plot_gaps

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
    """Train, measure, draw; then write docs/lessons.json and fill docs/lesson*.md."""
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
        runs.write_json(docs / "lessons.json", numbers)
        fill_lessons(docs, numbers)
    print(f"done in {time.perf_counter() - started:.0f} s: figures in {figures}/"
          + (f", numbers in {docs}/lessons.json and {docs}/lesson*.md" if docs else ""),
          file=sys.stderr)
    return numbers


def fill_lessons(docs: Path, numbers: dict) -> None:
    """Rewrite the quoted numbers of every docs/lesson*.md from ``numbers``, each file
    atomically, and only once all of them have been filled without error."""
    filled = {path: fill(path.read_text(), numbers) for path in sorted(docs.glob("lesson*.md"))}
    for path, text in filled.items():
        if text != path.read_text():
            runs.write_atomically(path, lambda f: f.write(text))


def _rounded(value):
    return round(value, 6) if isinstance(value, float) else value


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.lessons", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/lessons"),
                   help="folder of the runs (default: %(default)s)")
    p.add_argument("--docs", type=Path, default=None,
                   help="where the lessons live (default: docs/, or nothing with --quick)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default: 2)")
    p.add_argument("--quick", action="store_true",
                   help="every step on a sliver of the budget: checks the pipeline")
    p.add_argument("--fill-only", action="store_true",
                   help="train nothing: rewrite the numbers quoted in docs/lesson*.md from "
                        "docs/lessons.json (after editing a lesson's text)")
    args = p.parse_args(argv)
    try:
        if args.jobs < 1:
            raise UserError("--jobs must be at least 1")
        docs = args.docs or (None if args.quick else DOCS)
        if docs is not None and not docs.is_dir():
            raise UserError(f"--docs {docs} is not a folder; run from the repository root or "
                            "name the folder that holds lesson*.md")
        if args.fill_only:
            if docs is None or not (docs / "lessons.json").is_file():
                raise UserError("--fill-only needs a docs folder holding lessons.json: run "
                                "`make lessons` first")
            fill_lessons(docs, json.loads((docs / "lessons.json").read_text()))
        else:
            regenerate(args.out, docs, Budget(args.quick), args.jobs)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
