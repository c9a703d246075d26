"""The tables of docs/results/evaluation.md from the runs of evaluation.sh: prints them in
Markdown and writes their numbers to docs/results/evaluation.json (which tests/test_ais.py
checks against the bounds' ordering).

    python -m experiments.results.evaluation_table [runs/evaluation]
"""
import csv
import json
import sys
from pathlib import Path

VARIANTS = {"standard": "N(0, I) prior, diagonal Gaussian q", "vamp": "VampPrior, diagonal q",
            "iaf": "N(0, I) prior, IAF q", "vamp-iaf": "VampPrior, IAF q"}
OUT = Path(__file__).parent / "results" / "evaluation.json"


def read(folder: Path, name: str) -> dict:
    summary = json.loads((folder / name / "summary.json").read_text())
    ais = json.loads((folder / name / "ais.json").read_text())
    return {"test_elbo": summary["test_elbo"], "test_iwae": summary["test_iwae"],
            "iwae_samples": summary["iwae_samples"], "num_test": summary["num_test"],
            "active_units": summary["test_active_units"], "kl": summary["test_kl_to_prior"],
            "mutual_information": summary["test_mutual_information"],
            "marginal_kl": summary["test_marginal_kl"], "ais": ais}


def at_epoch(folder: Path, name: str, epoch: int) -> dict:
    """The row of ``epoch`` in a run's metrics.csv (its per-epoch test numbers)."""
    with open(folder / name / "metrics.csv") as f:
        return next(row for row in csv.DictReader(f) if int(row["epoch"]) == epoch)


def epochs_done(folder: Path, name: str) -> int:
    with open(folder / name / "metrics.csv") as f:
        return max(int(row["epoch"]) for row in csv.DictReader(f))


def main(folder: Path) -> None:
    finished = [n for n in VARIANTS if (folder / n / "ais.json").exists()]
    rows = {name: read(folder, name) for name in finished}
    started = [n for n in VARIANTS if (folder / n / "metrics.csv").exists()]
    common = min(epochs_done(folder, n) for n in started)
    early = {name: at_epoch(folder, name, common) for name in started}
    lvm = json.loads((folder / "lvm" / "ais.json").read_text()) \
        if (folder / "lvm" / "ais.json").exists() else None
    OUT.write_text(json.dumps({"vae": rows, "lvm": lvm, "epoch": common, "at_epoch": early},
                              indent=2, sort_keys=True) + "\n")
    print("| variant | test ELBO | IWAE-1000 | IWAE-1000 (100 pts) | AIS (100 pts) | "
          "active units | KL(q(z\\|x) ‖ p(z)) | I(x; z) | KL(q(z) ‖ p(z)) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        a = r["ais"]
        print(f"| {VARIANTS[name]} | {r['test_elbo']:.2f} | {r['test_iwae']:.2f} | "
              f"{a['iwae']:.2f} ± {a['iwae_mc_stderr']:.2f} | {a['ais']:.2f} ± "
              f"{a['ais_mc_stderr']:.2f} | {r['active_units']:.0f} of 8 | {r['kl']:.2f} | "
              f"{r['mutual_information']:.2f} | {r['marginal_kl']:.2f} |")
    print(f"\nafter {common} epochs (each run's own metrics.csv):\n")
    print("| variant | test ELBO | active units | KL(q(z\\|x) ‖ p(z)) | I(x; z) "
          "| KL(q(z) ‖ p(z)) |")
    print("|---|---|---|---|---|---|")
    for name, r in early.items():
        print(f"| {VARIANTS[name]} | {float(r['test_elbo']):.2f} | "
              f"{float(r['test_active_units']):.0f} of 8 | {float(r['test_kl_to_prior']):.2f} | "
              f"{float(r['test_mutual_information']):.2f} | "
              f"{float(r['test_marginal_kl']):.2f} |")
    if lvm:
        b = lvm["bdmc"]
        print(f"\nlvm: exact {lvm['exact']:.3f}, IWAE-{lvm['iwae_samples']} {lvm['iwae']:.3f} ± "
              f"{lvm['iwae_mc_stderr']:.3f}, AIS {lvm['ais']:.3f} ± {lvm['ais_mc_stderr']:.3f}; "
              f"BDMC on {b['num_points']} simulated points {b['lower']:.3f} ≤ log p(x) ≤ "
              f"{b['upper']:.3f} (gap {b['gap']:.3f})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/evaluation"))
