"""The habits of the house, written down where tools read them: CI runs the README's test
command, which lints before it tests; the lint's version is pinned once for make and the
pre-commit hook; the slow marker that the fast tier leaves out is declared."""
import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_targets() -> dict:
    """Each target of the Makefile with its prerequisites and its recipe lines."""
    targets, current = {}, None
    for line in (ROOT / "Makefile").read_text().splitlines():
        rule = re.match(r"^([\w-]+):\s*([^=#]*)", line)
        if rule and not line.startswith("\t"):
            current = rule.group(1)
            targets[current] = {"needs": rule.group(2).split(), "recipe": []}
        elif line.startswith("\t") and current:
            targets[current]["recipe"].append(line.strip())
    return targets


def test_ci_runs_the_readmes_test_command_which_lints_before_the_suite_and_builds_the_site_after():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith("#")]
    assert ci[-1] == "make test" and "make test " in (ROOT / "README.md").read_text()
    targets = make_targets()
    assert "lint" in targets["test"]["needs"]
    assert targets["lint"]["recipe"] == ["$(BIN)/ruff check ."]
    assert targets["test"]["recipe"] == ["$(BIN)/python -m pytest", "$(MAKE) docs"]
    assert targets["test-fast"]["recipe"] == ['$(BIN)/python -m pytest -m "not slow"']


def test_the_lint_states_the_house_style_and_its_version_is_pinned_once():
    pyproject = (ROOT / "pyproject.toml").read_text()       # (tomllib is Python 3.11+)
    assert re.search(r"^\[tool\.ruff\]\n(#.*\n)*line-length = 100$", pyproject, re.M)
    select = re.search(r"^select = \[(.*)\]$", pyproject, re.M).group(1)
    assert {'"E"', '"W"', '"F"', '"I"'} <= {rule.strip() for rule in select.split(",")}
    pinned = re.search(r"^ruff==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    hook = re.search(r"ruff-pre-commit\n\s+rev: v(\S+)",
                     (ROOT / ".pre-commit-config.yaml").read_text()).group(1)
    assert hook == pinned
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert any(line.startswith("ruff") for line in
               setup["options.extras_require"]["test"].split())


def test_the_slow_marker_is_declared():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["tool:pytest"]["markers"].strip().startswith("slow: ")
