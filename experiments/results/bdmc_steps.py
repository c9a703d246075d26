"""BDMC's sandwich against the number of annealing steps on a finished run: the table of
docs/results/evaluation.md that shows the gap closing as the steps grow (Grosse et al. 2015).
Written to RUN_DIR/bdmc_steps.json, which evaluation_table.py reads.

    python -m experiments.results.bdmc_steps RUN_DIR [STEPS ...]

Every row uses the same simulated points and seed, so the rows differ by the steps alone.
"""
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from experiments.common.command import command
from experiments.common.errors import UserError
from experiments.common.files import write_json
from experiments.evaluation.ais import unsupported
from experiments.evaluation.bdmc import bdmc
from experiments.training.trained import load_trained

STEPS = (3, 10, 30, 100)
#: simulated points, chains per point and leapfrog steps of every row
POINTS, CHAINS, LEAPFROG = 20, 8, 5


def sweep(run: Path, steps: Sequence[int] = STEPS) -> dict:
    """The BDMC bounds of the mean log p(x) over ``POINTS`` points simulated from the run's
    model, at each number of steps."""
    config, _, parts = load_trained(run)
    reason = unsupported(parts.model)
    if reason or parts.model.conditional or not parts.guide.amortized:
        raise UserError(f"{run} is a {config.model} run with the {config.guide} guide: BDMC "
                        "simulates x from p(z) p(x|z) and anneals from q(z|x), which it cannot"
                        + (f" ({reason})" if reason else ""))
    rows = []
    for t in steps:
        s = bdmc(parts.model, parts.guide.scoring_guide(), num_points=POINTS, num_steps=t,
                 num_chains=CHAINS, leapfrog_steps=LEAPFROG)
        rows.append({"num_steps": t, "lower": s.lower.value, "upper": s.upper.value,
                     "gap": s.gap, "lower_mc_stderr": s.lower.mc_stderr,
                     "upper_mc_stderr": s.upper.mc_stderr})
        print(f"{t} steps: {s.lower.value:.3f} ≤ log p(x) ≤ {s.upper.value:.3f} "
              f"(gap {s.gap:.3f})", flush=True)
    return {"num_points": POINTS, "num_chains": CHAINS, "leapfrog_steps": LEAPFROG,
            "rows": rows}


@command
def main(argv: Optional[List[str]] = None) -> int:
    args = list(argv or [])
    if not args:
        raise UserError("name a finished run: python -m experiments.results.bdmc_steps "
                        "RUN_DIR [STEPS ...]")
    try:
        steps = [int(a) for a in args[1:]] or list(STEPS)
    except ValueError:
        raise UserError(f"STEPS are whole numbers of annealing steps (got {args[1:]})") from None
    run = Path(args[0])
    write_json(run / "bdmc_steps.json", sweep(run, steps))
    print(f"written to {run}/bdmc_steps.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
