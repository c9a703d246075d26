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
variance and SNR at fixed parameters (initial and final) on a fixed minibatch, and wall time,
with paired differences against the first estimator on the same test points.

Ctrl-C or SIGTERM stops every run at its last checkpoint (exit status 130); the same command
with the same --out, or --resume DIR, keeps the finished runs and finishes the others.
"""
import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

from experiments.common.command import command, command_parser, starting

with starting(__name__):            # Ctrl-C while importing: one line, exit 130
    from experiments.common.errors import UserError
    from experiments.common.files import make_folder, write_text
    from experiments.comparison.ais_column import ais_column_error
    from experiments.comparison.jobs import (
        ComparisonInterrupted,
        Job,
        execute,
        parse_elbos,
        plan,
        threads_per_job,
    )
    from experiments.comparison.report import markdown, report
    from experiments.comparison.sweep import (
        PLAN,
        collect,
        missing_section,
        read_plan,
        report_settings,
        run_planned,
        write_plan,
    )
    from experiments.config.config import Config
    from experiments.config.options import add_training_options, config_from_args
    from experiments.estimators import ELBOS


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    if len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"expected each number once, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = command_parser("experiments.compare", __doc__)
    add_training_options(p, exclude=("elbo", "num_particles", "out", "epochs"))
    c = p.add_argument_group("comparison")
    c.add_argument("--elbos", default="trace,meanfield,iwae,score-function",
                   help=f"comma-separated estimators among {', '.join(ELBOS)}; ELBO/GUIDE "
                        "runs one with another guide, e.g. enum/enum (default: %(default)s)")
    c.add_argument("--epochs", type=int, default=Config.epochs,
                   help="epochs of every run (default: %(default)s)")
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
    c.add_argument("--ais-points", type=int, default=0, metavar="N",
                   help="also score every run by AIS on its first N test points, beside IWAE "
                        "on the same points: slow, for models with continuous latents only "
                        "(default: 0, off)")
    c.add_argument("--target-elbo", type=float, default=None,
                   help="test ELBO for 'steps to target' (default: the weakest estimator's "
                        "final test ELBO, mean over seeds)")
    c.add_argument("--out", type=Path, default=None,
                   help="comparison folder (default: runs/<time>-compare-<model>-<guide>); "
                        "if it holds an unfinished comparison of the same settings, its "
                        "finished runs are kept and the others continue from their checkpoints")
    c.add_argument("--resume", metavar="DIR", type=Path, default=None,
                   help="finish the comparison in DIR with the settings it was started with "
                        "(its plan.json); only --jobs and --no-progress may be given beside it")
    c.add_argument("--force", action="store_true",
                   help="start the comparison in --out afresh, retraining every run")
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
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _compare(parser().parse_args(argv))
    except ComparisonInterrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("stopped: interrupted before any run started; nothing was written",
              file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 130


def _terminate(signum, frame):
    """SIGTERM (a scheduler's stop) is handled like Ctrl-C: keep what finished, then stop."""
    raise KeyboardInterrupt


def _compare(args: argparse.Namespace) -> int:
    if args.run_job is not None:
        result = run_planned(args.run_job, args.job)
        print(f"done: {result['label']} seed {result['seed']}, test ELBO "
              f"{result['summary']['test_elbo']:.3f}, in {result['run_dir']}")
        return 0
    if args.collect is not None:
        return _collect(args.collect)
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    if args.resume is not None:
        out, jobs, settings = _resumed(args)
    else:
        out, jobs, settings = _planned(args)
    make_folder(out, "--resume" if args.resume is not None else "--out")
    commands = write_plan(out, jobs, settings)
    if args.plan_only:
        print(f"{len(jobs)} runs planned: one command line each in {commands}; then "
              f"python -m experiments.compare --collect {out}")
        return 0
    if args.progress:
        runs = f"{len(jobs)} run{'s' if len(jobs) > 1 else ''}"
        print(f"{runs}, {min(args.jobs, len(jobs))} at a time, into {out}/runs/",
              file=sys.stderr, flush=True)
    try:
        results = execute(jobs, args.jobs, progress=args.progress)
        rows = report(results, out, settings["target_elbo"], settings["sweep_ks"],
                      settings["grad_draws"])
    except KeyboardInterrupt:           # outside the runs: while starting or reporting
        raise ComparisonInterrupted(f"interrupted; the runs that finished are kept: continue "
                                    f"with python -m experiments.compare --resume {out}") from None
    print(markdown(rows))
    print(f"results in {out}/: comparison.csv, comparison.md, the figures and runs/")
    failed = [r for r in results if r["status"] != "completed"]
    for r in failed:
        print(f"error: {r['label']} seed {r['seed']} failed: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def _planned(args: argparse.Namespace) -> Tuple[Path, List[Job], dict]:
    """The comparison the options describe: its folder, runs and report settings; continued
    where its folder holds the same one (``continuing``)."""
    config = config_from_args(args).replace(progress=False).validate()
    elbos = parse_elbos(args.elbos, config.guide)
    for name, value in (("--seeds", args.seeds), ("--grad-draws", args.grad_draws)):
        if value < 1 or (name == "--grad-draws" and value < 2):
            raise UserError(f"{name} must be at least {2 if name == '--grad-draws' else 1}")
    if args.ais_points < 0:
        raise UserError(f"--ais-points must be 0 (off) or a number of test points "
                        f"(got {args.ais_points})")
    if args.ais_points and ais_column_error(config.model, **config.part_options()):
        raise UserError(ais_column_error(config.model, **config.part_options()))
    out = args.out or Path("runs") / (time.strftime("%Y%m%d-%H%M%S")
                                      + f"-compare-{config.model}-{config.guide}")
    out = out.resolve() if args.plan_only else out
    jobs = plan(config, elbos, args.particle_sweep, args.seeds, out, args.grad_draws, args.jobs,
                ais_points=args.ais_points)
    settings = report_settings(args.target_elbo, args.snr_sweep or args.particle_sweep,
                               args.grad_draws)
    resume = continuing(out, jobs, settings, args.force)
    return out, [dataclasses.replace(job, resume=resume) for job in jobs], settings


def continuing(out: Path, jobs: List[Job], settings: dict, force: bool) -> bool:
    """Whether the comparison in ``out`` is continued (finished runs kept, the others resumed)
    rather than started afresh: it is when ``out`` holds the plan of the same runs; a folder
    with another comparison is refused unless ``force``."""
    if force:
        return False
    if not (out / PLAN).exists():
        if (out / "comparison.csv").exists():
            raise UserError(f"--out {out} already holds a comparison; pass --force to "
                            "overwrite it or choose another --out")
        return True
    saved, saved_settings = read_plan(out, "--out")
    difference = _difference(saved, saved_settings, jobs, settings)
    if difference:
        raise UserError(f"--out {out} holds a comparison with other settings ({difference}); "
                        f"finish it with --resume {out}, pass --force to replace it, or "
                        "choose another --out")
    return True


def _difference(saved: List[Job], saved_settings: dict, jobs: List[Job], settings: dict) -> str:
    """The first difference between two plans, as ``epochs was 20, now 10``; empty if none."""
    if len(saved) != len(jobs):
        return f"{len(saved)} runs there, {len(jobs)} here"
    pairs = [({**a.config, "grad_draws": a.grad_draws, "ais_points": a.ais_points},
              {**b.config, "grad_draws": b.grad_draws, "ais_points": b.ais_points})
             for a, b in zip(saved, jobs)] + [(saved_settings, settings)]
    for old, new in pairs:
        new = json.loads(json.dumps(new))               # as plan.json holds it
        for key in {**old, **new}:
            if old.get(key) != new.get(key):
                return f"{key} was {old.get(key)}, now {new.get(key)}"
    return ""


def _resumed(args: argparse.Namespace) -> Tuple[Path, List[Job], dict]:
    """``--resume DIR``: the runs and report settings of the plan in DIR, with the threads of
    this --jobs; any option but --jobs and --no-progress is refused."""
    given = [a.option_strings[0] for a in parser()._actions
             if a.dest not in ("help", "resume", "jobs", "progress")
             and getattr(args, a.dest, a.default) != a.default]
    if given:
        raise UserError(f"--resume {args.resume} finishes the comparison with the settings it "
                        f"was started with; drop {', '.join(given)} (or start another with "
                        "--out)")
    if not Path(args.resume).is_dir():
        raise UserError(f"--resume {args.resume}: no such comparison folder")
    if not (Path(args.resume) / PLAN).exists():
        raise UserError(f"--resume {args.resume}: it holds no {PLAN} (not a comparison "
                        "folder, or one written before comparisons could be resumed)")
    jobs, settings = read_plan(args.resume, "--resume")
    threads = threads_per_job(args.jobs)
    return Path(args.resume), [dataclasses.replace(job, threads=threads, resume=True)
                               for job in jobs], settings


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
