"""The tables of docs/results/evaluation.md read runs recorded under a metric's current name and
under its older one (``test_kl`` before ``test_kl_to_prior``), and refuse in one line a run
without the collapse diagnostics."""
import csv
import json

from experiments.results import evaluation_table

AIS = {"ais": -24.1, "ais_mc_stderr": 0.01, "iwae": -24.2, "iwae_mc_stderr": 0.01,
       "iwae_samples": 5000}


def write_run(folder, kl_name, kl=3.5, epochs=2):
    """A finished run's files as train and ais write them, its mean KL under ``kl_name``."""
    folder.mkdir(parents=True)
    collapse = {"test_active_units": 7, kl_name: kl, "test_mutual_information": 3.0,
                "test_marginal_kl": kl - 3.0}
    summary = {"status": "completed", "test_elbo": -25.0, "test_iwae": -24.5,
               "iwae_samples": 5000, "num_test": 359, **collapse}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "ais.json").write_text(json.dumps(AIS))
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "test_elbo", *collapse])
        writer.writeheader()
        for epoch in range(1, epochs + 1):
            writer.writerow({"epoch": epoch, "test_elbo": -30.0 + epoch, **collapse})


def test_runs_under_the_older_and_the_current_name_of_the_kl_are_both_read(tmp_path, capsys):
    write_run(tmp_path / "runs" / "standard", "test_kl", kl=3.25)
    write_run(tmp_path / "runs" / "vamp", "test_kl_to_prior", kl=2.75, epochs=3)
    out = tmp_path / "evaluation.json"
    assert evaluation_table.main([str(tmp_path / "runs"), str(out)]) == 0
    numbers = json.loads(out.read_text())
    assert numbers["vae"]["standard"]["kl"] == 3.25 and numbers["vae"]["vamp"]["kl"] == 2.75
    assert numbers["epoch"] == 2                                  # the epochs both runs reached
    assert numbers["at_epoch"]["standard"]["kl"] == 3.25
    assert numbers["at_epoch"]["vamp"]["test_elbo"] == -28.0
    printed = capsys.readouterr().out
    assert "| N(0, I) prior, diagonal Gaussian q | -25.00 | -24.50 |" in printed
    assert "IWAE-5000" in printed


def test_a_run_without_the_collapse_diagnostics_is_refused_in_one_line(tmp_path, capsys):
    write_run(tmp_path / "runs" / "standard", "kl_unknown")
    out = tmp_path / "evaluation.json"
    assert evaluation_table.main([str(tmp_path / "runs"), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "has no test_kl_to_prior (nor its older name test_kl)" in err
    assert not out.exists()


def test_a_folder_without_runs_is_refused_in_one_line(tmp_path, capsys):
    assert evaluation_table.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "evaluation.sh" in err and "\n" not in err


def test_a_finished_run_without_ais_is_tabled_without_it(tmp_path, capsys):
    write_run(tmp_path / "runs" / "standard", "test_kl_to_prior")
    (tmp_path / "runs" / "standard" / "ais.json").unlink()
    out = tmp_path / "evaluation.json"
    assert evaluation_table.main([str(tmp_path / "runs"), str(out)]) == 0
    assert json.loads(out.read_text())["vae"]["standard"]["ais"] is None
    assert "| -25.00 | -24.50 | not measured | not measured | 7 of 8 |" in capsys.readouterr().out
