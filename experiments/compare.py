"""Compare ELBO estimators on equal footing: the same model, guide, data, seeds and budget.

    python -m experiments.compare --model vae --guide normal \\
        --elbos trace,meanfield,iwae,score-function --data digits --seeds 3 --epochs 20 \\
        --jobs 2 --out runs/compare

On a cluster, ``--plan-only`` writes one command line per run (commands.txt) for any scheduler
(a Slurm job array, GNU parallel), and ``--collect DIR`` gathers the finished run folders into
the same report (``experiments.comparison.sweep``).

Each (estimator, K, seed) is a full training run in its own folder; runs with the same seed
share the initial parameters and the data order. Every estimator optimizes its own bound, so
all are judged on common yardsticks: the one-sample test ELBO, the test IWAE estimate with the
same number of samples, the exact log-likelihood and gap where the model has one, the gradient
variance and SNR at fixed parameters (initial and final) on a fixed minibatch, and wall time.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

from experiments.common.command import command
from experiments.common.errors import UserError
from experiments.common.files import write_text
from experiments.comparison.jobs import execute, parse_elbos, plan
from experiments.comparison.report import markdown, report
from experiments.comparison.sweep import (collect, missing_section, record, report_settings,
                                          run_planned, write_plan)
from experiments.estimators import ELBOS
from experiments.training.options import add_training_options, config_from_args


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_options(p, exclude=("elbo", "num_particles", "out"))
    c = p.add_argument_group("comparison")
    c.add_argument("--elbos", default="trace,meanfield,iwae,score-function",
                   help=f"comma-separated estimators among {', '.join(ELBOS)}; ELBO/GUIDE "
                        "runs one with another guide, e.g. enum/enum (default: %(default)s)")
    c.add_argument("--num-particles", dest="particle_sweep", type=_int_list, default=[1],
                   help="K, or a sweep such as 1,10,100 for the K-sample estimators "
                        "(iwae, renyi, dreg, tail-adaptive); the others use the first K")
    c.add_argument("--snr-sweep", type=_int_list, default=None,
                   help="the K of the SNR-against-K figure, measured at one fixed trained point "
                        "(default: the --num-particles list), e.g. 1,10,100 without training "
                        "at K = 100")
    c.add_argument("--seeds", type=int, default=3, help="seeds per estimator, from --seed on")
    c.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    c.add_argument("--grad-draws", type=int, default=100,
                   help="M gradient draws for the variance and SNR (default: %(default)s)")
    c.add_argument("--target-elbo", type=float, default=None,
                   help="test ELBO for 'steps to target' (default: the weakest final mean)")
    c.add_argument("--out", type=Path, default=None,
                   help="comparison folder (default: runs/<time>-compare-<model>-<guide>)")
    c.add_argument("--force", action="store_true", help="overwrite an existing comparison")
    s = p.add_argument_group("sweeps on a scheduler (experiments.comparison.sweep)")
    s.add_argument("--plan-only", action="store_true",
                   help="write plan.json and commands.txt (one command line per run) into --out "
                        "and train nothing")
    s.add_argument("--collect", metavar="DIR", type=Path,
                   help="report the runs of the plan in DIR that have finished; list the others "
                        "(exit status 1 when any is missing)")
    s.add_argument("--run-job", metavar="PLAN", type=Path,
                   help="train one run of a plan.json (what each line of commands.txt does)")
    s.add_argument("--job", type=int, default=0, help="the run of --run-job, from 0")
    return p


@command
def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.run_job is not None:
        result = run_planned(args.run_job, args.job)
        print(f"done: {result['label']} seed {result['seed']}, test ELBO "
              f"{result['summary']['test_elbo']:.3f}, in {result['run_dir']}")
        return 0
    if args.collect is not None:
        return _collect(args.collect)
    config = config_from_args(args).replace(progress=False).validate()
    elbos = parse_elbos(args.elbos, config.guide)
    for name, value in (("--seeds", args.seeds), ("--jobs", args.jobs),
                        ("--grad-draws", args.grad_draws)):
        if value < 1 or (name == "--grad-draws" and value < 2):
            raise UserError(f"{name} must be at least {2 if name == '--grad-draws' else 1}")
    out = args.out or Path("runs") / (time.strftime("%Y%m%d-%H%M%S")
                                      + f"-compare-{config.model}-{config.guide}")
    if (out / "comparison.csv").exists() and not args.force:
        raise UserError(f"--out {out} already holds a comparison; pass --force to overwrite "
                        "it or choose another --out")
    out = out.resolve() if args.plan_only else out
    jobs = plan(config, elbos, args.particle_sweep, args.seeds, out, args.grad_draws, args.jobs)
    out.mkdir(parents=True, exist_ok=True)
    commands = write_plan(out, jobs, report_settings(
        args.target_elbo, args.snr_sweep or args.particle_sweep, args.grad_draws))
    if args.plan_only:
        print(f"{len(jobs)} runs planned: one command line each in {commands}; then "
              f"python -m experiments.compare --collect {out}")
        return 0
    results = execute(jobs, args.jobs)
    record(results)
    rows = report(results, out, args.target_elbo, args.snr_sweep or args.particle_sweep,
                  args.grad_draws)
    print(markdown(rows))
    print(f"results in {out}/: comparison.csv, comparison.md, the figures and runs/")
    return 0


def _collect(folder: Path) -> int:
    """``--collect``: the report of the finished runs; the missing ones listed (exit 1)."""
    results, missing, settings = collect(folder)
    rows = report(results, folder, settings["target_elbo"], settings["sweep_ks"],
                  settings["grad_draws"])
    table = markdown(rows)
    if missing:
        table += missing_section(missing)
        write_text(folder / "comparison.md", table)
    print(table)
    for line in missing:
        print(f"missing: {line}", file=sys.stderr)
    print(f"results of {len(results)} run(s) in {folder}/: comparison.csv, comparison.md and "
          f"the figures" + (f"; {len(missing)} run(s) missing" if missing else ""))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
