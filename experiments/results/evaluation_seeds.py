"""The seeds table of docs/results/evaluation.md from the runs of evaluation_seeds.sh: each
variant's numbers over its seeds, mean ± standard error (the seeds' standard deviation / √n),
printed in Markdown and written with every seed's own numbers to
docs/results/evaluation-seeds.json (which tests/test_evaluation_seeds.py checks the page
against).

    python -m experiments.results.evaluation_seeds [RUNS [OUT]]

RUNS defaults to runs/evaluation-seeds (a folder ``seed-S`` per seed, a run per variant in
each), OUT to docs/results/evaluation-seeds.json. Only finished runs that AIS has scored count.
"""
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

from experiments.common.command import command
from experiments.common.errors import UserError
from experiments.results.evaluation_table import VARIANTS, finished, read

OUT = Path(__file__).parents[2] / "docs" / "results" / "evaluation-seeds.json"
#: the table's columns: header → the number of a run it shows (``active units``: each seed's
#: count, the others: mean ± s.e. over the seeds)
COLUMNS = {
    "test ELBO": lambda r: r["test_elbo"],
    "IWAE-5000": lambda r: r["test_iwae"],
    "IWAE-5000 (100 pts)": lambda r: r["ais"]["iwae"],
    "AIS (100 pts)": lambda r: r["ais"]["ais"],
    "AIS − IWAE (100 pts)": lambda r: r["ais"]["ais"] - r["ais"]["iwae"],
    "active units": lambda r: r["active_units"],
    "KL(q(z\\|x) ‖ p(z))": lambda r: r["kl"],
    "I(x; z)": lambda r: r["mutual_information"],
    "KL(q(z) ‖ p(z))": lambda r: r["marginal_kl"],
}


#: the gains the page discusses: (what changes, the variant with it, the variant without it)
GAINS = [("VampPrior, diagonal q", "vamp", "standard"), ("VampPrior, IAF q", "vamp-iaf", "iaf"),
         ("IAF, N(0, I) prior", "iaf", "standard"), ("IAF, VampPrior", "vamp-iaf", "vamp")]


def mean_and_stderr(values: List[float]) -> str:
    """``mean ± s.e.`` to two decimals, s.e. the standard deviation over √n (n ≥ 2)."""
    stderr = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.mean(values):.2f} ± {stderr:.2f}"


def scored_runs(folder: Path) -> Dict[str, Dict[str, dict]]:
    """variant → seed folder name → the run's numbers, for every finished run with an AIS."""
    runs: Dict[str, Dict[str, dict]] = {name: {} for name in VARIANTS}
    for seed in sorted(folder.glob("seed-*")):
        for name in VARIANTS:
            if finished(seed, name) and (seed / name / "ais.json").exists():
                runs[name][seed.name] = read(seed, name)
    return {name: seeds for name, seeds in runs.items() if seeds}


def counts(values: List[float]) -> str:
    """Each seed's active units, ``8, 7, 8 of 8``."""
    return f"{', '.join(f'{v:.0f}' for v in values)} of 8"


def table_rows(runs: Dict[str, Dict[str, dict]]) -> List[List[str]]:
    """One row of cells per variant: its name, its seeds, then ``COLUMNS`` over them."""
    return [[VARIANTS[name], str(len(seeds)),
             *((counts if header == "active units" else mean_and_stderr)(
                 [column(r) for r in seeds.values()]) for header, column in COLUMNS.items())]
            for name, seeds in runs.items()]


def gain_rows(runs: Dict[str, Dict[str, dict]]) -> List[List[str]]:
    """For each of ``GAINS`` whose two variants share two seeds or more: the seeds, and the
    test ELBO's and IWAE-5000's gain, each run paired with the run of the same seed, mean ±
    s.e."""
    rows = []
    for change, with_it, without in GAINS:
        seeds = sorted(set(runs.get(with_it, {})) & set(runs.get(without, {})))
        if len(seeds) < 2:
            continue
        cells = [mean_and_stderr([runs[with_it][s][key] - runs[without][s][key] for s in seeds])
                 for key in ("test_elbo", "test_iwae")]
        rows.append([change, str(len(seeds)), *cells])
    return rows


def settings(runs: Dict[str, Dict[str, dict]]) -> dict:
    """The AIS settings the runs share (refused where they differ)."""
    keys = ("num_points", "num_steps", "num_chains", "leapfrog_steps", "iwae_samples")
    found = {json.dumps({k: r["ais"][k] for k in keys}, sort_keys=True)
             for seeds in runs.values() for r in seeds.values()}
    if len(found) != 1:
        raise UserError(f"the runs' AIS settings differ ({'; '.join(sorted(found))}): score "
                        "them all alike (experiments/results/evaluation_seeds.sh)")
    return json.loads(found.pop())


@command
def main(argv: Optional[List[str]] = None) -> int:
    args = list(argv or [])
    folder = Path(args[0]) if args else Path("runs/evaluation-seeds")
    out = Path(args[1]) if len(args) > 1 else OUT
    runs = scored_runs(folder)
    if any(len(seeds) < 2 for seeds in runs.values()) or not runs:
        raise UserError(f"{folder} needs two seeds or more of a variant scored by AIS: run "
                        "experiments/results/evaluation_seeds.sh first")
    out.write_text(json.dumps({"ais": settings(runs), "runs": runs}, indent=2,
                              sort_keys=True) + "\n")
    print(f"| variant | seeds | {' | '.join(COLUMNS)} |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    for row in table_rows(runs):
        print(f"| {' | '.join(row)} |")
    print("\n| change | seeds | gain in test ELBO | gain in IWAE-5000 |\n|---|---|---|---|")
    for row in gain_rows(runs):
        print(f"| {' | '.join(row)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
