"""One version, stated once (``experiments.__version__``): the package metadata reads it, every
command shows it, and every run and comparison records it beside its results."""
import configparser
import importlib
import json
from importlib import metadata
from pathlib import Path

import pytest

import experiments
from experiments import __main__ as elbolab
from experiments.comparison.sweep import write_plan
from experiments.config.config import Config
from experiments.training.end_to_end import run

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_metadata_reads_the_version_from_the_code():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: experiments.__version__"
    assert metadata.version("elbo-lab") == experiments.__version__


@pytest.mark.parametrize("module", sorted(elbolab.COMMANDS.values()))
def test_every_command_shows_the_version(module, capsys):
    with pytest.raises(SystemExit) as exit:
        importlib.import_module(module).main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"ELBO Lab {experiments.__version__}\n"


def test_a_run_records_the_version_in_its_config_and_summary(quick_config):
    result = run(quick_config(epochs=1, num_train=64, num_test=16, iwae_samples=4))
    saved = json.loads((result.run_dir / "config.json").read_text())
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert saved["version"] == summary["version"] == experiments.__version__
    assert result.summary["version"] == experiments.__version__
    assert json.loads(json.dumps(Config.from_dict(saved).record())) == saved    # reads back


def test_a_comparison_plan_records_the_version(tmp_path):
    write_plan(tmp_path, [], {"target_elbo": None})
    assert json.loads((tmp_path / "plan.json").read_text())["version"] == experiments.__version__
