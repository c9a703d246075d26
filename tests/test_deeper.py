"""The results page on deeper models (docs/results/deeper.md): its measurements run (at a
sliver of their size), its tables are the ones ``results.json`` gives, and its numbers obey the
math they claim."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments.results import deeper

ROOT = Path(__file__).resolve().parent.parent
RESULTS = json.loads((ROOT / deeper.RESULTS / "results.json").read_text())


@pytest.mark.slow
def test_every_measurement_runs_and_writes_its_files(tmp_path):
    results = deeper.main(["--quick", "--runs", str(tmp_path / "runs"),
                           "--out", str(tmp_path / "out")])
    assert set(results) == set(deeper.MEASUREMENTS)
    assert [r["beta"] for r in results["beta"]["rows"]] == list(deeper.BETAS)
    assert len(results["burda"]["rows"]) == 6
    assert (tmp_path / "out" / "beta.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (tmp_path / "out" / "tables.md").read_text() == deeper.markdown(saved)


def test_the_results_page_shows_the_measured_tables():
    readme = (ROOT / "docs" / "results" / "deeper.md").read_text()
    for table in deeper.markdown(RESULTS).strip().split("\n\n"):
        assert table in readme


def test_coloured_rectangles_are_one_colour_on_black():
    images = deeper.coloured_rectangles(50, (3, 12, 12))
    assert images.shape == (50, 3, 12, 12) and images.dtype == np.uint8
    for image in images:
        lit = image.any(0)                                     # (H, W) pixels of the rectangle
        rows, cols = np.nonzero(lit.any(1))[0], np.nonzero(lit.any(0))[0]
        assert lit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()     # one solid rectangle
        colours = {tuple(c) for c in image[:, lit].T}
        assert len(colours) == 1 and 0 < sum(v // 255 for v in colours.pop()) < 3


# --- the quoted numbers against the math they claim ----------------------------------------

def test_every_iwae_estimate_lies_above_its_elbo():
    """L_5000 ≥ L_1 = ELBO for every trained model (the ELBO is the one-sample test bound,
    a Monte Carlo estimate, so within 3 standard errors of the IWAE)."""
    for row in RESULTS["burda"]["rows"]:
        assert -row["nll"] >= row["test_elbo"] - 3 * row["nll_stderr"], row["name"]
    for name in ("conv", "colour"):
        for row in RESULTS[name]["rows"]:
            assert row["test_iwae"] >= row["test_elbo"] - 3 * row["test_iwae_stderr"]


def test_beta_trades_reconstruction_for_kl():
    """Lower β: a better reconstruction term and a larger KL, each step beyond 2 standard errors
    of the difference; the terms add up to the ELBO; β = 1, the ELBO's own optimum, has the
    best test ELBO of the sweep."""
    rows = sorted(RESULTS["beta"]["rows"], key=lambda r: r["beta"])
    for low, high in zip(rows, rows[1:]):
        for term, error in (("expected_log_likelihood", "expected_log_likelihood_stderr"),
                            ("kl_prior", "kl_stderr")):
            spread = 2 * math.hypot(low[error], high[error])
            assert low[term] > high[term] + spread, (term, low["beta"], high["beta"])
    for row in rows:
        assert row["elbo"] == pytest.approx(row["expected_log_likelihood"] - row["kl_prior"])
    assert max(rows, key=lambda r: r["elbo"])["beta"] == 1.0


def test_the_prose_quotes_the_table():
    """The differences the results page's sentences quote, recomputed from ``results.json``."""
    readme = (ROOT / "docs" / "results" / "deeper.md").read_text()
    rows = {r["name"]: r for r in RESULTS["burda"]["rows"]}
    best = rows["2 layers, iwae K=50"]
    assert f"by {best['gain_over_1_layer_trace']:.2f} ± {best['gain_stderr']:.2f} nats" in readme
    paper = deeper.PAPER["1 layer, trace"] - deeper.PAPER["2 layers, iwae K=50"]
    assert f"against the paper's {paper:.2f}" in readme
    second = {e: rows[f"2 layers, {e}"]["gain_over_1_layer_trace"]
              - rows[f"1 layer, {e}"]["gain_over_1_layer_trace"] for e in ("trace", "iwae K=50")}
    assert (f"({second['trace']:.2f} nats with trace, {second['iwae K=50']:.2f} with iwae "
            "K = 50)") in readme
    colour = RESULTS["colour"]
    assert (f"its IWAE {-colour['conv_minus_mlp']:.2f} ± {colour['conv_minus_mlp_stderr']:.2f} "
            "worse, within 2 standard errors") in readme
    assert abs(colour["conv_minus_mlp"]) < 2 * colour["conv_minus_mlp_stderr"]
