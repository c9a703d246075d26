"""The tables of docs/results/evaluation.md from the runs of evaluation.sh: prints them in
Markdown and writes their numbers to docs/results/evaluation.json (which tests/test_ais.py
checks against the bounds' ordering).

    python -m experiments.results.evaluation_table [RUNS [OUT]]

RUNS defaults to runs/evaluation, OUT to docs/results/evaluation.json. Runs recorded before a
metric was renamed are read under its older name (``RENAMED``); a run without the collapse
diagnostics at all is refused in one line.
"""
import csv
import json
import sys
from pathlib import Path
from typing import List, Optional

from experiments.common.command import command
from experiments.common.errors import UserError

VARIANTS = {"standard": "N(0, I) prior, diagonal Gaussian q", "vamp": "VampPrior, diagonal q",
            "iaf": "N(0, I) prior, IAF q", "vamp-iaf": "VampPrior, IAF q"}
OUT = Path(__file__).parents[2] / "docs" / "results" / "evaluation.json"
#: a metric's current name → the name older runs recorded it under
RENAMED = {"test_kl_to_prior": "test_kl"}


def metric(record: dict, name: str, where: Path) -> float:
    """``record[name]``, or the value under the name older runs gave it."""
    for key in (name, RENAMED.get(name)):
        if key in record:
            return float(record[key])
    older = f" (nor its older name {RENAMED[name]})" if name in RENAMED else ""
    raise UserError(f"{where} has no {name}{older}: a run from before the collapse "
                    "diagnostics; train it again (experiments/results/evaluation.sh)")


def collapse(record: dict, where: Path) -> dict:
    """The collapse diagnostics of a summary or a metrics.csv row."""
    return {"active_units": metric(record, "test_active_units", where),
            "kl": metric(record, "test_kl_to_prior", where),
            "mutual_information": metric(record, "test_mutual_information", where),
            "marginal_kl": metric(record, "test_marginal_kl", where)}


def finished(folder: Path, name: str) -> bool:
    """Whether the run trained to the end (its summary says so)."""
    path = folder / name / "summary.json"
    return path.exists() and json.loads(path.read_text()).get("status") == "completed"


def read(folder: Path, name: str) -> dict:
    """A finished run's summary, and its ais.json (None until ``experiments.ais`` wrote it)."""
    summary_file = folder / name / "summary.json"
    summary = json.loads(summary_file.read_text())
    ais = optional_json(folder / name / "ais.json")
    return {"test_elbo": summary["test_elbo"], "test_iwae": summary["test_iwae"],
            "iwae_samples": summary["iwae_samples"], "num_test": summary["num_test"],
            **collapse(summary, summary_file), "ais": ais}


def at_epoch(folder: Path, name: str, epoch: int) -> dict:
    """The test ELBO and collapse diagnostics of ``epoch`` in a run's metrics.csv."""
    path = folder / name / "metrics.csv"
    with open(path) as f:
        row = next(row for row in csv.DictReader(f) if int(row["epoch"]) == epoch)
    return {"test_elbo": float(row["test_elbo"]), **collapse(row, path)}


def epochs_done(folder: Path, name: str) -> int:
    with open(folder / name / "metrics.csv") as f:
        return max(int(row["epoch"]) for row in csv.DictReader(f))


def optional_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def print_final(rows: dict) -> None:
    iwae, iwae_ais = (f"IWAE-{'/'.join(map(str, sorted(set(samples))))}" if samples else "IWAE"
                      for samples in (
        [r["iwae_samples"] for r in rows.values()],
        [r["ais"]["iwae_samples"] for r in rows.values() if r["ais"]]))
    print(f"| variant | test ELBO | {iwae} | {iwae_ais} (100 pts) | AIS (100 pts) | "
          "active units | KL(q(z\\|x) ‖ p(z)) | I(x; z) | KL(q(z) ‖ p(z)) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        a = r["ais"]
        estimates = (f"{a['iwae']:.2f} ± {a['iwae_mc_stderr']:.2f} | {a['ais']:.2f} ± "
                     f"{a['ais_mc_stderr']:.2f}" if a else "not measured | not measured")
        print(f"| {VARIANTS[name]} | {r['test_elbo']:.2f} | {r['test_iwae']:.2f} | "
              f"{estimates} | {r['active_units']:.0f} of 8 | {r['kl']:.2f} | "
              f"{r['mutual_information']:.2f} | {r['marginal_kl']:.2f} |")


def print_early(early: dict, epoch: int) -> None:
    print(f"\nafter {epoch} epochs (each run's own metrics.csv):\n")
    print("| variant | test ELBO | active units | KL(q(z\\|x) ‖ p(z)) | I(x; z) "
          "| KL(q(z) ‖ p(z)) |")
    print("|---|---|---|---|---|---|")
    for name, r in early.items():
        print(f"| {VARIANTS[name]} | {r['test_elbo']:.2f} | {r['active_units']:.0f} of 8 | "
              f"{r['kl']:.2f} | {r['mutual_information']:.2f} | {r['marginal_kl']:.2f} |")


def print_lvm(lvm: dict) -> None:
    b = lvm["bdmc"]
    print(f"\nlvm: exact {lvm['exact']:.3f}, IWAE-{lvm['iwae_samples']} {lvm['iwae']:.3f} ± "
          f"{lvm['iwae_mc_stderr']:.3f}, AIS {lvm['ais']:.3f} ± {lvm['ais_mc_stderr']:.3f}; "
          f"BDMC on {b['num_points']} simulated points {b['lower']:.3f} ≤ log p(x) ≤ "
          f"{b['upper']:.3f} (gap {b['gap']:.3f})")


def print_bdmc_steps(sweep: dict) -> None:
    print(f"\nBDMC on the standard vae, {sweep['num_points']} simulated points, "
          f"{sweep['num_chains']} chains:\n")
    print("| steps | lower (forward AIS) | upper (reverse AIS) | gap |")
    print("|---|---|---|---|")
    for r in sweep["rows"]:
        print(f"| {r['num_steps']} | {r['lower']:.3f} ± {r['lower_mc_stderr']:.3f} | "
              f"{r['upper']:.3f} ± {r['upper_mc_stderr']:.3f} | {r['gap']:.3f} |")


@command
def main(argv: Optional[List[str]] = None) -> int:
    args = list(argv or [])
    folder = Path(args[0]) if args else Path("runs/evaluation")
    out = Path(args[1]) if len(args) > 1 else OUT
    started = [n for n in VARIANTS if (folder / n / "metrics.csv").exists()]
    if not started:
        raise UserError(f"{folder} holds none of the runs {', '.join(VARIANTS)}: run "
                        "experiments/results/evaluation.sh first")
    rows = {n: read(folder, n) for n in VARIANTS if finished(folder, n)}
    common = min(epochs_done(folder, n) for n in started)
    early = {name: at_epoch(folder, name, common) for name in started}
    lvm = optional_json(folder / "lvm" / "ais.json")
    sweep = optional_json(folder / "standard" / "bdmc_steps.json")
    out.write_text(json.dumps({"vae": rows, "lvm": lvm, "epoch": common, "at_epoch": early,
                               "bdmc_steps": sweep}, indent=2, sort_keys=True) + "\n")
    print_final(rows)
    print_early(early, common)
    if lvm:
        print_lvm(lvm)
    if sweep:
        print_bdmc_steps(sweep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
