"""The runs the lessons quote, and the sizes of one regeneration: the lessons' own budget,
a laptop's (the executable lessons of the documentation site: minutes on a CPU), or
``--quick``'s sliver of it (a check of the pipeline, not numbers to quote)."""
import sys
from pathlib import Path
from typing import Dict, List

from experiments.comparison.jobs import execute, parse_elbos, plan, run_job
from experiments.comparison.report import report
from experiments.config.config import Config
from experiments.training.end_to_end import run
from experiments.training.workers import train_in_worker, worker_pool

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
SCATTER_POINTS = 200          # test points of the gap-against-KL figure
GAP_POINTS = 100              # test points of the inference gaps
QUICK = dict(epochs=1, num_train=200, num_test=40, iwae_samples=20)
LAPTOP = dict(iwae_samples=200, num_test=200)   # a lesson names its runs' epochs itself


class Budget:
    """The sizes of one regeneration: the lessons' own, a laptop's, or ``--quick``'s sliver."""

    def __init__(self, quick: bool, laptop: bool = False):
        self.quick, self.laptop = quick, laptop
        small = quick or laptop
        self.seeds = 1 if small else SEEDS
        self.grad_draws = 5 if quick else 20 if laptop else GRAD_DRAWS
        self.scatter_points = 20 if quick else 100 if laptop else SCATTER_POINTS
        self.gap_points = 10 if quick else 30 if laptop else GAP_POINTS
        self.gap_blocks = 1 if quick else 5 if laptop else 20

    def config(self, settings: dict, out: Path) -> Config:
        sizes = QUICK if self.quick else LAPTOP if self.laptop else {}
        return Config(**{**settings, **sizes, "out": str(out), "progress": False}).validate()


def _train(config: dict) -> dict:
    """One run in a worker process, one thread: its summary."""
    return train_in_worker(config, threads=1).summary


def train_all(configs: Dict[str, Config], jobs: int) -> Dict[str, dict]:
    """Every run of ``configs`` in ``jobs`` processes, the lvm runs (the longest: a quadrature
    of log p(x) every epoch) first; name → summary. One job runs in this process (a notebook
    or a lesson's script, which a worker process would import again)."""
    if jobs == 1:
        return {name: _trained(name, run(config, force=True).summary)
                for name, config in configs.items()}
    order = sorted(configs, key=lambda n: -configs[n].epochs * (configs[n].model == "lvm"))
    with worker_pool(jobs) as pool:
        futures = {name: pool.submit(_train, configs[name].to_dict()) for name in order}
        return {name: _trained(name, future.result()) for name, future in futures.items()}


def _trained(name: str, summary: dict) -> dict:
    print(f"  trained {name}: test ELBO {summary['test_elbo']:.3f}", file=sys.stderr)
    return summary


def run_comparison(settings: dict, elbos: str, out: Path, budget: Budget, jobs: int
                   ) -> List[dict]:
    """``python -m experiments.compare`` in-process, K = 1: its rows, and its files in ``out``.
    One job trains its runs in this process, as ``train_all`` does."""
    config = budget.config(settings, out)
    planned = plan(config, parse_elbos(elbos, config.guide), [1], budget.seeds, out,
                   budget.grad_draws, jobs, resume=False)        # every run trained afresh
    records = execute(planned, jobs) if jobs > 1 else [run_job(job) for job in planned]
    return report(records, out, None, [1], budget.grad_draws)
