"""Compare ELBO estimators on equal footing: the same model, guide, data, seeds and budget.

    python -m experiments.compare --model vae --guide normal \\
        --elbos trace,meanfield,iwae,score-function --data digits --seeds 3 --epochs 20 \\
        --jobs 2 --out runs/compare

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
import json
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

from experiments.common.command import command
from experiments.common.errors import UserError
from experiments.common.files import write_json
from experiments.comparison.jobs import ComparisonInterrupted, execute, parse_elbos, plan
from experiments.comparison.report import markdown, report
from experiments.estimators import ELBOS
from experiments.training.config import Config
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
    c.add_argument("--target-elbo", type=float, default=None,
                   help="test ELBO for 'steps to target' (default: the weakest estimator's "
                        "final test ELBO, mean over seeds)")
    c.add_argument("--out", type=Path, default=None,
                   help="comparison folder (default: runs/<time>-compare-<model>-<guide>); "
                        "if it holds an unfinished comparison of the same settings, its "
                        "finished runs are kept and the others continue from their checkpoints")
    c.add_argument("--resume", metavar="DIR", type=Path, default=None,
                   help="finish the comparison in DIR with the settings it was started with "
                        "(options given beside it must match them; --jobs may change)")
    c.add_argument("--force", action="store_true",
                   help="start the comparison in --out afresh, retraining every run")
    return p


@command
def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _compare(argv)
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


def _compare(argv: List[str]) -> int:
    args = parser().parse_args(argv)
    resuming = args.resume is not None
    if resuming:
        args = parser().parse_args(saved_argv(args.resume) + ["--out", str(args.resume)]
                                   + _without_resume(argv))
    config = config_from_args(args).replace(progress=False).validate()
    elbos = parse_elbos(args.elbos, config.guide)
    for name, value in (("--seeds", args.seeds), ("--jobs", args.jobs),
                        ("--grad-draws", args.grad_draws)):
        if value < 1 or (name == "--grad-draws" and value < 2):
            raise UserError(f"{name} must be at least {2 if name == '--grad-draws' else 1}")
    out = args.out or Path("runs") / (time.strftime("%Y%m%d-%H%M%S")
                                      + f"-compare-{config.model}-{config.guide}")
    settings = {"config": {k: v for k, v in config.to_dict().items() if k != "out"},
                "elbos": [list(pair) for pair in elbos], "num_particles": args.particle_sweep,
                "seeds": args.seeds, "grad_draws": args.grad_draws,
                "target_elbo": args.target_elbo, "snr_sweep": args.snr_sweep}
    jobs = plan(config, elbos, args.particle_sweep, args.seeds, out, args.grad_draws, args.jobs,
                resume=continuing(out, settings, args.force, resuming))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SETTINGS, {"format": SETTINGS_FORMAT, "argv": _reusable(argv),
                                "settings": settings})
    try:
        results = execute(jobs, args.jobs, progress=config_from_args(args).progress)
        rows = report(results, out, args.target_elbo, args.snr_sweep or args.particle_sweep,
                      args.grad_draws)
    except KeyboardInterrupt:           # outside the runs: while starting or reporting
        raise ComparisonInterrupted(f"interrupted; the runs that finished are kept: continue "
                                    f"with python -m experiments.compare --resume {out}") from None
    print(markdown(rows))
    print(f"results in {out}/: comparison.csv, comparison.md, the figures and runs/")
    failed = [r for r in results if r["status"] != "completed"]
    for r in failed:
        print(f"error: {r['label']} seed {r['seed']} failed: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


#: the settings a comparison was started with, in its folder: what a rerun must match
SETTINGS = "comparison.json"
SETTINGS_FORMAT = "elbo-lab-comparison/1"


def continuing(out: Path, settings: dict, force: bool, resuming: bool) -> bool:
    """Whether the comparison in ``out`` is continued (finished runs kept, the others resumed)
    rather than started afresh; refuses a folder that holds another comparison unless
    ``force``."""
    if force:
        if resuming:
            raise UserError("--resume keeps the runs that finished; --force retrains them: "
                            "pass one of the two")
        return False
    path = out / SETTINGS
    if not path.exists():
        if (out / "comparison.csv").exists():
            raise UserError(f"--out {out} already holds a comparison; pass --force to "
                            "overwrite it or choose another --out")
        return True
    saved = _load_settings(out)["settings"]
    if saved != json.loads(json.dumps(settings)):
        raise UserError(f"--out {out} holds a comparison with other settings "
                        f"({_difference(saved, settings)}); finish it with --resume {out}, "
                        "pass --force to replace it, or choose another --out")
    return True


def saved_argv(folder: Path) -> List[str]:
    """The options a comparison in ``folder`` was started with."""
    if not Path(folder).is_dir():
        raise UserError(f"--resume {folder}: no such comparison folder")
    return list(_load_settings(Path(folder))["argv"])


def _load_settings(folder: Path) -> dict:
    path = folder / SETTINGS
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--resume {folder}: it holds no {SETTINGS} (not a comparison folder, "
                        "or one written before comparisons could be resumed)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({type(exc).__name__}); pass --force to start "
                        "the comparison afresh") from None
    if not isinstance(saved, dict) or saved.get("format") != SETTINGS_FORMAT:
        raise UserError(f"{path} is not an ELBO Lab comparison's settings (expected format "
                        f"{SETTINGS_FORMAT})")
    return saved


def _difference(saved: dict, settings: dict) -> str:
    """The first setting that differs, as ``epochs was 20, now 10``."""
    old, new = _flat(saved), _flat(json.loads(json.dumps(settings)))
    name = next((k for k in {**old, **new} if old.get(k) != new.get(k)), "format")
    return f"{name} was {old.get(name)}, now {new.get(name)}"


def _flat(settings: dict) -> dict:
    config = settings.get("config")
    return {**(config if isinstance(config, dict) else {}),
            **{k: v for k, v in settings.items() if k != "config"}}


#: options that do not change what a comparison computes, left out of its saved command line
_PER_INVOCATION = {"--jobs": True, "--out": True, "--resume": True, "--force": False,
                   "--no-progress": False}


def _reusable(argv: List[str]) -> List[str]:
    """``argv`` without the options that belong to one invocation (and their values)."""
    kept, skip = [], False
    for item in argv:
        flag = item.split("=", 1)[0]
        if skip:
            skip = False
        elif flag in _PER_INVOCATION:
            skip = _PER_INVOCATION[flag] and "=" not in item
        else:
            kept.append(item)
    return kept


def _without_resume(argv: List[str]) -> List[str]:
    """``argv`` without ``--resume DIR``."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item.split("=", 1)[0] == "--resume":
            skip = "=" not in item
        else:
            kept.append(item)
    return kept


if __name__ == "__main__":
    sys.exit(main())
