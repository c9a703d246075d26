"""Train a model and guide with SVI, evaluate them, and leave a run folder behind.

    python -m experiments.train --model vae --guide normal --elbo trace --data digits

From Python the same run is ``experiments.training.end_to_end.run(Config(...))``.
"""
import argparse
import signal
import sys
from pathlib import Path
from typing import List, Optional

from experiments.common.command import command, command_parser, starting
from experiments.common.ranks import launched, leader

with starting(__name__):            # Ctrl-C while importing: one line, exit 130
    from experiments.common.distributed import request_stop
    from experiments.config.options import add_training_options, config_from_args, explicit_options
    from experiments.evaluation.metrics import TEST_METRICS
    from experiments.training.end_to_end import RunInterrupted, RunResult, resume_config, run
    from models import MODELS

#: what the printed train ELBO is, by --binarize: with dynamic binarization it estimates what
#: the test ELBO does (no binary image is seen twice), so it may sit below it
#: (docs/guide/a-run.md)
TRAIN_NOTES = {
    "dynamic": "mean over the last epoch's steps, fresh binarizations "
               "(may sit below test: docs/guide/a-run.md)",
    "static": "mean over the last epoch's steps",
    "none": "mean over the last epoch's steps",
}

#: ground truth that a summary may hold, as the command prints it
GROUND_TRUTH_LINES = {
    "true_log_likelihood": ("true log p*(x)", "of the test data under the generating distribution"),
}


def parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    p = command_parser("experiments.train",
                       "Train a latent variable model p(z)p(x|z) with a guide q(z|x) by SVI.")
    add_training_options(p, suppress_defaults)
    p.add_argument("--force", action="store_true",
                   help="overwrite a run folder that already holds a run; with --resume, "
                        "continue with changed settings")
    p.add_argument("--resume", metavar="RUN_DIR", type=Path,
                   help="continue the run in RUN_DIR up to --epochs epochs in total")
    return p


@command
def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    stops = (signal.SIGTERM, signal.SIGINT) if launched() else (signal.SIGTERM,)
    previous = {signum: signal.signal(signum, _terminate) for signum in stops}
    try:
        if args.resume is not None:
            config = resume_config(args.resume, explicit_options(parser, argv), args.force)
            result = run(config, resume=args.resume, force=args.force)
        else:
            result = run(config_from_args(args), force=args.force)
    except RunInterrupted as exc:
        if leader():
            print(f"stopped: {exc}", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if leader():
        print_summary(result)
    return 0


def _terminate(signum, frame):
    """SIGTERM (a scheduler's stop) is handled like Ctrl-C: keep the checkpoint, then stop. In
    a torchrun job (which passes SIGTERM and Ctrl-C to every rank, and SIGTERM to the ranks left
    when one fails) the ranks stop together after their current step: a rank stopped in the
    middle of a collective would leave the others waiting for it."""
    if launched():
        request_stop()
        return
    raise KeyboardInterrupt


def print_summary(result: RunResult) -> None:
    s = result.summary
    ranks = s.get("world_size", 1)
    print(f"{s['model']} / {s['guide']} / {s['elbo']} on {s['data']} "
          f"({s['num_train']} train, {s['num_test']} test), "
          f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, "
          f"{s['seconds_per_epoch']:.2f} s per epoch training"
          + (f" (epoch 1: {s['first_epoch_seconds']:.2f} s)" if s["epochs"] > 1 else "")
          + (f", {s['eval_seconds_per_epoch']:.2f} s testing" if "eval_seconds_per_epoch" in s
             else "")
          + (f", {s['final_eval_seconds']:.1f} s final evaluation"
             if "final_eval_seconds" in s else "")
          + (f", {ranks} processes (global batch {s['global_batch_size']})" if ranks > 1 else ""))
    lines = {key: (metric.label, metric.note) for key, metric in TEST_METRICS.items()}
    if MODELS[s["model"]].conditional:              # what it observes: x_h, given x_v
        lines["test_iwae"] = ("test IWAE log p(x_h | x_v)", lines["test_iwae"][1])
        lines["test_kl_to_prior"] = ("KL(q(z|x) ‖ p(z|x_v))", lines["test_kl_to_prior"][1])
    if MODELS[s["model"]].takes_labels:             # z's KL term given each class y
        lines["test_kl_to_prior"] = ("KL(q(z|x,y) ‖ p(z))", "nats, mean over q(y|x) and the "
                                     "test set: the KL term of z")
    lines = {**lines, **GROUND_TRUTH_LINES}
    train = f"train {s.get('train_objective', 'ELBO')}"
    width = max(len(label) for label in [train] + [lines[key][0] for key in lines if key in s])
    if s.get("train_elbo") is not None:
        print(f"  {train:<{width}} {s['train_elbo']:10.3f} {TRAIN_NOTES[s['binarize']]}")
    for key, (label, note) in lines.items():
        if key == "test_iwae":
            mc = s["test_iwae_mc_stderr"]
            print(f"  {label:<{width}} {s['test_iwae']:10.3f} "
                  + ("(1 sample: no Monte Carlo error)" if mc is None else
                     f"± {_error(mc)} Monte Carlo error ({s['iwae_samples']} samples)")
                  + f"; ± {s['test_iwae_point_stderr']:.3f} over test points")
        elif key.startswith("test_active_units") and key in s:
            print(f"  {label:<{width}} {_units(s, key, note)}")
        elif key in s:
            print(f"  {label:<{width}} {s[key]:10.3f} {note}")
    if s.get("beta", 1) != 1 or s.get("kl_warmup"):
        warmup = f", reached after a warm-up of {s['kl_warmup']} epochs" if s["kl_warmup"] else ""
        print(f"  trained at β = {s['beta']:g}{warmup} (train ELBO: the β-weighted objective); "
              "the test numbers are the bounds at β = 1")
    if "recovery_means_error" in s:
        print(f"  recovery errors    weights {s['recovery_weights_error']:.3f}, means "
              f"{s['recovery_means_error']:.3f}, scales {s['recovery_scales_error']:.3f} "
              "(largest, against the true mixture)")
    if "restarts" in s:
        print(f"  kept seed {s['best_seed']}, the best final train ELBO of {s['restarts']} "
              f"restarts: {', '.join(f'{v:.3f}' for v in s['restart_train_elbos'])}")
    print(f"results in {result.run_dir}/: summary.json, metrics.csv, config.json, "
          "checkpoint.pt and the figures")


def _units(summary: dict, key: str, note: str) -> str:
    """``A of d: …``, the active units a count and d the layer's size (``latent_sizes``, or in
    older summaries its KL per dimension's length), where the note says ``of d`` (``of d_1``)."""
    layer = key[len("test_active_units"):]                  # "", "_z1", "_z2"
    size = summary.get("latent_sizes", {}).get(layer.lstrip("_") or "z",
                                               len(summary.get(f"kl_per_dimension{layer}", ())))
    criterion = note[note.index(":"):] if ":" in note else ""
    return f"{round(summary[key]):10d} of {size}{criterion}"


def _error(value: float) -> str:
    """A standard error to three decimals, or in scientific notation where that shows 0.000."""
    return f"{value:.3f}" if value >= 5e-4 or value == 0 else f"{value:.1e}"


if __name__ == "__main__":
    sys.exit(main())
