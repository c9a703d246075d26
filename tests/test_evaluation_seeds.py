"""The seeds table of docs/results/evaluation.md against the runs it reports
(docs/results/evaluation-seeds.json, which experiments/results/evaluation_seeds.py writes):
every cell recomputed here with numpy from each seed's numbers, and the bounds' order of every
run checked; and the script's refusals."""
import json
import math
import re
from pathlib import Path

import numpy as np

from experiments.results import evaluation_seeds
from tests.test_evaluation_table import write_run

RESULTS = Path(__file__).parents[1] / "docs" / "results"
VARIANTS = {"N(0, I) prior, diagonal Gaussian q": "standard", "VampPrior, diagonal q": "vamp",
            "N(0, I) prior, IAF q": "iaf", "VampPrior, IAF q": "vamp-iaf"}


def numbers() -> dict:
    return json.loads((RESULTS / "evaluation-seeds.json").read_text())


def page_rows(marker: str = "seeds"):
    """The rows of the table between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    page = (RESULTS / "evaluation.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", page, re.S)[1]
    lines = [line for line in block.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def cell(values) -> str:
    values = np.array(values, dtype=float)
    return f"{values.mean():.2f} ± {values.std(ddof=1) / math.sqrt(len(values)):.2f}"


def test_every_cell_of_the_seeds_table_is_its_runs_recomputed():
    rows, runs = page_rows(), numbers()["runs"]
    assert {row[0] for row in rows} == set(VARIANTS)
    for row in rows:
        seeds = list(runs[VARIANTS[row[0]]].values())
        ais, iwae = ([r["ais"][k] for r in seeds] for k in ("ais", "iwae"))
        expected = [str(len(seeds)), cell([r["test_elbo"] for r in seeds]),
                    cell([r["test_iwae"] for r in seeds]), cell(iwae), cell(ais),
                    cell(np.subtract(ais, iwae)),
                    ", ".join(str(round(r["active_units"])) for r in seeds) + " of 8",
                    *(cell([r[k] for r in seeds])
                      for k in ("kl", "mutual_information", "marginal_kl"))]
        assert row[1:] == expected, row[0]


def test_every_gain_is_the_paired_seeds_differences_recomputed():
    """Each change (the VampPrior, the IAF) against the same variant without it, seed by seed."""
    runs = numbers()["runs"]
    pairs = {"VampPrior, diagonal q": ("vamp", "standard"), "VampPrior, IAF q": ("vamp-iaf", "iaf"),
             "IAF, N(0, I) prior": ("iaf", "standard"), "IAF, VampPrior": ("vamp-iaf", "vamp")}
    rows = page_rows("gains")
    assert {row[0] for row in rows} == set(pairs)
    for row in rows:
        with_it, without = (runs[name] for name in pairs[row[0]])
        seeds = sorted(set(with_it) & set(without))
        assert row[1:] == [str(len(seeds)), *(cell([with_it[s][k] - without[s][k] for s in seeds])
                                              for k in ("test_elbo", "test_iwae"))]


def test_every_mean_and_error_the_prose_quotes_is_a_cell_of_the_tables():
    """The findings after the literature table quote ``a ± b`` pairs: each is a cell of the
    seeds or gains table (a gain without its sign, a mean with its minus)."""
    page = (RESULTS / "evaluation.md").read_text()
    findings = page[page.index("What the digits show"):page.index("## What is not measured")]
    cells = {c.replace("-", "−") for row in page_rows() + page_rows("gains") for c in row}
    quoted = re.findall(r"−?\d+\.\d+ ± \d+\.\d+", findings)
    assert len(quoted) >= 8
    for pair in quoted:
        assert pair in cells, pair


def test_the_guide_quotes_the_gains_of_the_table():
    page = (RESULTS.parent / "guide" / "evaluating-log-likelihood.md").read_text()
    cells = {c for row in page_rows("gains") for c in row}
    quoted = re.findall(r"\d+\.\d+ ± \d+\.\d+ nats of IWAE-5000 and the IAF \d+\.\d+ ± \d+\.\d+",
                        page.replace("\n", " "))
    quoted = re.findall(r"\d+\.\d+ ± \d+\.\d+", " ".join(quoted))
    assert len(quoted) == 2 and all(pair in cells for pair in quoted), quoted


def test_every_run_keeps_the_bounds_order_and_the_ranges():
    """ELBO ≤ IWAE-5000 on the test set; AIS and IWAE on the same points within 4 Monte Carlo
    errors of each other or AIS above (both stochastic lower bounds, AIS the tighter one);
    at most 8 active units; I(x; z) ≤ log N; the surgery's parts add up."""
    for seeds in numbers()["runs"].values():
        for r in seeds.values():
            assert r["test_elbo"] <= r["test_iwae"]
            a = r["ais"]
            assert a["ais"] > a["iwae"] - 4 * math.hypot(a["ais_mc_stderr"], a["iwae_mc_stderr"])
            assert 0 <= r["active_units"] <= 8
            assert 0 <= r["mutual_information"] <= math.log(r["num_test"])
            assert abs(r["kl"] - r["mutual_information"] - r["marginal_kl"]) < 1e-4


def test_the_page_states_the_ais_settings_of_the_runs():
    page = (RESULTS / "evaluation.md").read_text()
    a = numbers()["ais"]
    assert (f"{a['num_chains']} chains × {a['num_steps']} steps of {a['leapfrog_steps']} "
            "leapfrog steps") in page


def test_a_folder_with_fewer_than_two_seeds_is_refused_in_one_line(tmp_path, capsys):
    write_run(tmp_path / "seed-0" / "standard", "test_kl_to_prior")
    out = tmp_path / "seeds.json"
    assert evaluation_seeds.main([str(tmp_path), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "two seeds" in err and "\n" not in err
    assert not out.exists()


def test_two_seeds_give_their_mean_and_standard_error(tmp_path, capsys):
    write_run(tmp_path / "seed-0" / "standard", "test_kl_to_prior", kl=3.0)
    write_run(tmp_path / "seed-1" / "standard", "test_kl_to_prior", kl=4.0)
    for seed in ("seed-0", "seed-1"):
        ais = tmp_path / seed / "standard" / "ais.json"
        ais.write_text(json.dumps({**json.loads(ais.read_text()), "num_points": 100,
                                   "num_steps": 50, "num_chains": 8, "leapfrog_steps": 5}))
    assert evaluation_seeds.main([str(tmp_path), str(tmp_path / "seeds.json")]) == 0
    assert "| 3.50 ± 0.50 |" in capsys.readouterr().out
