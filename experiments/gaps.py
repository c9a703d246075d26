"""The inference gaps of a trained amortized model, measured on its run folder
(``experiments.evaluation.inference_gaps``) and written beside it."""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from experiments.common.command import command, command_parser, starting

with starting(__name__):            # Ctrl-C while importing: one line, exit 130
    from experiments.common.errors import UserError
    from experiments.common.files import write_json
    from experiments.evaluation import inference_gaps as gap_measures
    from experiments.evaluation.inference_gaps import inference_gaps
    from experiments.figures.gap_bars import plot_gaps
    from experiments.training.folder import run_folder_of
    from experiments.training.trained import load_trained

USAGE = "    python -m experiments.gaps --run RUN_DIR [--num-points 100]"
WRITTEN = "written to RUN_DIR/gaps.json and drawn as a stacked bar in RUN_DIR/gaps.png."


def parser() -> argparse.ArgumentParser:
    title, _, quantities = gap_measures.__doc__.strip().partition("\n\n")
    p = command_parser("experiments.gaps", "\n\n".join([title, USAGE, quantities, WRITTEN]))
    p.add_argument("--run", type=Path, required=True, help="a finished run's folder")
    p.add_argument("--num-points", type=int, default=100, help="test points (default: 100)")
    p.add_argument("--iwae-samples", type=int, default=5000,
                   help="samples for log p(x) where it is not exact (default: 5000)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    return p


@command
def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.num_points < 1 or args.iwae_samples < 1:
        raise UserError("--num-points and --iwae-samples must be at least 1")
    args.run = run_folder_of(args.run)                  # the folder, also if given its checkpoint
    config, data, parts = load_trained(args.run)
    if config.guide != "normal":
        raise UserError(f"{args.run} was trained with the {config.guide} guide; the gaps "
                        "refine a diagonal Gaussian per point, the normal guide's family, "
                        "so they need a run with --guide normal")
    gaps = inference_gaps(parts.model, parts.guide, data.x_test[: args.num_points],
                          args.iwae_samples, progress=args.progress)
    write_json(args.run / "gaps.json", gaps)
    plot_gaps(gaps, f"{config.model} / {config.guide} / {config.elbo} on {config.data}",
              args.run / "gaps.png")
    print(f"on {gaps['num_points']} test points, in nats per point:")
    print(f"  log p(x)           {gaps['log_likelihood']:9.3f}  ({gaps['log_likelihood_source']})")
    print(f"  best ELBO          {gaps['best_elbo']:9.3f}  (per-point q refined for "
          f"{gaps['refinement_steps']} steps)")
    print(f"  amortized ELBO     {gaps['amortized_elbo']:9.3f}")
    print(f"  approximation gap  {gaps['approximation_gap']:9.3f}")
    print(f"  amortization gap   {gaps['amortization_gap']:9.3f}")
    print(f"written to {args.run}/gaps.json and gaps.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
