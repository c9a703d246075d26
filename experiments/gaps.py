"""The inference gaps of a trained amortized model (Cremer, Li & Duvenaud 2018).

    python -m experiments.gaps --run RUN_DIR [--num-points 100]

For N test points, with the model's parameters θ fixed:

    log p(x)            exact where the model has it, else IWAE with many samples
    best ELBO           max over per-point q(z_i) = N(m_i, diag s_i²), refined from the
                        encoder's output until it stops improving (the guide family's optimum)
    amortized ELBO      the encoder's q(z|x)

    approximation gap = log p(x) − best ELBO          (the family cannot match p(z|x))
    amortization gap  = best ELBO − amortized ELBO    (the encoder misses the family's best)

written to RUN_DIR/gaps.json and drawn as a stacked bar in RUN_DIR/gaps.png.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from pyro.infer import Trace_ELBO

from experiments import runs
from experiments.errors import UserError
from experiments.evaluate import iwae_log_likelihood, mean_elbo
from experiments.refine import fit_local_posterior

REFINE_BLOCK = 200          # Adam steps between convergence checks
CONVERGED = 0.01            # nats per point gained by one block below which refinement stops
REFINE_LR = 0.02            # Adam's step size in the first block, halved in each next one


def inference_gaps(model, guide, x, iwae_samples: int = 5000, max_blocks: int = 20,
                   precision_particles: int = 200) -> dict:
    """The three quantities and two gaps above, in nats per data point."""
    precise = Trace_ELBO(num_particles=precision_particles, vectorize_particles=True,
                         max_plate_nesting=model.max_plate_nesting)
    amortized = mean_elbo(model, guide, x, elbo=precise)
    refined, best, blocks = guide, amortized, 0
    for blocks in range(1, max_blocks + 1):     # Adam's jitter shrinks with its step size
        refined = fit_local_posterior(model, x, steps=REFINE_BLOCK, init=refined,
                                      lr=REFINE_LR * 0.5 ** (blocks - 1))
        value = mean_elbo(model, refined, x, elbo=precise)
        gained, best = value - best, max(best, value)
        if gained < CONVERGED:
            break
    if hasattr(model, "exact_log_likelihood"):
        log_px, source = model.exact_log_likelihood(x).mean().item(), "exact"
    else:
        log_px, _ = iwae_log_likelihood(model, refined, x, iwae_samples,
                                        max_plate_nesting=model.max_plate_nesting)
        source = f"IWAE, {iwae_samples} samples from the refined q"
    return {"num_points": len(x), "log_likelihood": log_px, "log_likelihood_source": source,
            "best_elbo": best, "amortized_elbo": amortized,
            "approximation_gap": log_px - best, "amortization_gap": best - amortized,
            "refinement_steps": blocks * REFINE_BLOCK}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.gaps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a finished run's folder")
    p.add_argument("--num-points", type=int, default=100, help="test points (default: 100)")
    p.add_argument("--iwae-samples", type=int, default=5000,
                   help="samples for log p(x) where it is not exact (default: 5000)")
    args = p.parse_args(argv)
    from experiments.train import load_trained
    try:
        if args.num_points < 1 or args.iwae_samples < 1:
            raise UserError("--num-points and --iwae-samples must be at least 1")
        config, data, parts = load_trained(args.run)
        if config.guide != "normal":
            raise UserError(f"{args.run} was trained with the {config.guide} guide; the gaps "
                            "refine a diagonal Gaussian per point, the normal guide's family, "
                            "so they need a run with --guide normal")
        gaps = inference_gaps(parts.model, parts.guide, data.x_test[: args.num_points],
                              args.iwae_samples)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs.write_json(args.run / "gaps.json", gaps)
    from experiments.figures.gaps import plot_gaps

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
