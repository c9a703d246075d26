"""The console command ``elbolab``: its help lists every command, ``elbolab X …`` is
``python -m experiments.X …`` (options, output, exit status), and setup.cfg installs it."""
import configparser
import importlib
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from experiments import __main__ as elbolab
from experiments import __version__
from experiments import list as listing

ROOT = Path(__file__).resolve().parent.parent


def test_the_help_lists_every_command_with_the_first_line_of_its_docstring(capsys):
    with pytest.raises(SystemExit) as exit:
        elbolab.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert {"train", "compare", "gaps", "list", "lessons"} <= set(elbolab.COMMANDS)
    for name, module in elbolab.COMMANDS.items():
        first = importlib.import_module(module).__doc__.strip().split("\n")[0]
        assert f"  {name} " in out and first.rstrip(".:").replace("``", "") in out, name


def test_a_command_runs_with_the_options_after_its_name_and_prints_what_the_module_prints(
        capsys):
    assert elbolab.main(["list", "--markdown"]) == 0
    through_console = capsys.readouterr()
    assert listing.main(["--markdown"]) == 0
    assert capsys.readouterr() == through_console
    assert "| vae | normal |" in through_console.out


def test_a_refused_option_is_one_error_line_and_exit_2_as_in_the_module(capsys):
    assert elbolab.main(["train", "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown model 'nope': choose one of vae")


def test_ctrl_c_in_a_command_is_exit_130_as_in_the_module(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("experiments.training.end_to_end.prepare_data", interrupted)
    assert elbolab.main(["train", "--no-progress", "--out", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err.strip() == "stopped: interrupted"


@pytest.mark.parametrize("argv", [[], ["nope"], ["--model", "vae"]])
def test_a_missing_or_unknown_command_is_refused_naming_the_commands(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        elbolab.main(argv)
    assert exit.value.code == 2
    assert "usage: elbolab" in capsys.readouterr().err


def test_setup_cfg_installs_the_console_command():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    lines = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    assert lines == ["elbolab = experiments.__main__:main"]
    (installed,) = metadata.entry_points(group="console_scripts", name="elbolab")
    assert installed.load() is elbolab.main


@pytest.mark.slow
def test_the_installed_command_runs_from_the_environment(tmp_path):
    """What a user types after ``make``: ``.venv/bin/elbolab`` (beside the Python running)."""
    script = Path(sys.executable).parent / "elbolab"
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path)
    assert shown.returncode == 0 and "train " in shown.stdout and "lessons " in shown.stdout
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout == f"ELBO Lab {__version__}\n"
    options = subprocess.run([script, "train", "--help"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    assert options.returncode == 0 and options.stdout.startswith("usage: elbolab train ")
    refused = subprocess.run([script, "train", "--model", "nope"], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: unknown model 'nope'")
