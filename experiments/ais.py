"""log p(x) of a finished run by annealed importance sampling, beside its IWAE estimate and,
where the model has it, the exact value; with ``--bdmc N``, the BDMC sandwich on N points
simulated from the model. Written to RUN_DIR/ais.json."""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from experiments.common.command import command, command_parser, starting

with starting(__name__):            # Ctrl-C while importing: one line, exit 130
    from experiments.common.errors import UserError
    from experiments.common.files import write_json
    from experiments.evaluation.ais import BASES, ais_estimate, unsupported
    from experiments.evaluation.bdmc import bdmc
    from experiments.evaluation.likelihood import iwae_estimate
    from experiments.evaluation.metrics import scoring_guide
    from experiments.training.folder import run_folder_of
    from experiments.training.trained import load_trained

USAGE = ("    python -m experiments.ais --run RUN_DIR [--num-points 100] [--steps 500] "
         "[--chains 16] [--bdmc 50]")


def parser() -> argparse.ArgumentParser:
    p = command_parser("experiments.ais", f"{__doc__}\n\n{USAGE}")
    p.add_argument("--run", type=Path, required=True, help="a finished run's folder")
    p.add_argument("--num-points", type=int, default=100, help="test points (default: 100)")
    p.add_argument("--steps", type=int, default=500,
                   help="intermediate distributions T of the annealing path (default: 500)")
    p.add_argument("--chains", type=int, default=16, help="chains per point (default: 16)")
    p.add_argument("--leapfrog-steps", type=int, default=10,
                   help="leapfrog steps of each HMC transition (default: 10)")
    p.add_argument("--base", choices=BASES, default="guide",
                   help="where the path starts: the run's q(z|x), or the prior (default: guide)")
    p.add_argument("--iwae-samples", type=int, default=1000,
                   help="samples of the IWAE estimate beside it (default: 1000)")
    p.add_argument("--bdmc", type=int, default=0, metavar="N",
                   help="also sandwich log p(x) on N points simulated from the model (default: 0)")
    p.add_argument("--seed", type=int, default=2024, help="random seed (default: 2024)")
    return p


def check(args: argparse.Namespace) -> None:
    for name in ("num_points", "steps", "chains", "leapfrog_steps", "iwae_samples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1 "
                            f"(got {getattr(args, name)})")
    if args.bdmc < 0:
        raise UserError(f"--bdmc must be 0 (none) or a number of points (got {args.bdmc})")


@command
def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    check(args)
    args.run = run_folder_of(args.run)
    config, data, parts = load_trained(args.run)
    reason = unsupported(parts.model)
    if reason:
        raise UserError(f"{args.run} is a {config.model} run: {reason}")
    if args.bdmc and (parts.model.conditional or not parts.guide.amortized):
        raise UserError(f"--bdmc simulates x from p(z) p(x|z) and reads q(z|x) on it: the "
                        f"{config.model} model with the {config.guide} guide cannot (leave "
                        "--bdmc out)")
    x = data.x_test[: args.num_points]
    guide = scoring_guide(parts, x, final=True, progress=True)
    options = dict(num_steps=args.steps, num_chains=args.chains, base=args.base,
                   leapfrog_steps=args.leapfrog_steps, seed=args.seed, progress=True)
    result = {"num_points": len(x), **{k: v for k, v in options.items() if k != "progress"}}
    result.update(_estimates(parts, guide, x, args, options))
    if args.bdmc:
        sandwich = bdmc(parts.model, guide, num_points=args.bdmc, **options)
        result["bdmc"] = {"num_points": args.bdmc, "lower": sandwich.lower.value,
                          "upper": sandwich.upper.value, "gap": sandwich.gap,
                          "lower_mc_stderr": sandwich.lower.mc_stderr,
                          "upper_mc_stderr": sandwich.upper.mc_stderr}
    write_json(args.run / "ais.json", result)
    report(result)
    print(f"written to {args.run}/ais.json")
    return 0


def _estimates(parts, guide, x, args, options) -> dict:
    """AIS, IWAE and (where there is one) the exact mean log p(x) over the points x."""
    ais = ais_estimate(parts.model, guide, x, **options)
    iwae = iwae_estimate(parts.model, guide, x, args.iwae_samples, args.seed,
                         parts.model.max_plate_nesting, progress=True)
    found = {"ais": ais.value, "ais_mc_stderr": ais.mc_stderr, "ais_point_stderr":
             ais.point_stderr, "acceptance": ais.acceptance, "iwae": iwae.value,
             "iwae_mc_stderr": iwae.mc_stderr, "iwae_samples": args.iwae_samples}
    if parts.model.has_exact_log_likelihood:
        found["exact"] = parts.model.exact_log_likelihood(x).mean().item()
    return found


def report(result: dict) -> None:
    print(f"mean log p(x) on {result['num_points']} test points, nats per point "
          f"(± Monte Carlo standard error):")
    print(f"  AIS, {result['num_chains']} chains × {result['num_steps']} steps from the "
          f"{result['base']}  {result['ais']:9.3f} ± {result['ais_mc_stderr']:.3f}  "
          f"(HMC acceptance {result['acceptance']:.2f})")
    print(f"  IWAE, {result['iwae_samples']} samples{'':>21}{result['iwae']:9.3f} ± "
          f"{result['iwae_mc_stderr']:.3f}")
    if "exact" in result:
        print(f"  exact{'':>36}{result['exact']:9.3f}")
    if "bdmc" in result:
        b = result["bdmc"]
        print(f"BDMC on {b['num_points']} points simulated from the model: "
              f"{b['lower']:.3f} ≤ log p(x) ≤ {b['upper']:.3f} (gap {b['gap']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
