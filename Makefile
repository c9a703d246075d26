# The two commands of the README, and the ones beside them. Everything runs in the project's
# own virtual environment, .venv, made here (again, if the one there cannot run pip) and reinstalled
# when setup.cfg, pyproject.toml or constraints.txt change, with the versions constraints.txt pins.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint docs bench lessons clean

demo: $(STAMP)  ## set up, train the default VAE on the bundled digits, print where the results are
	$(BIN)/elbolab train --model vae --guide normal --elbo trace --data digits

test: lint  ## set up, lint, run the whole test suite, then build the documentation site (what CI runs)
	$(BIN)/python -m pytest
	$(MAKE) docs

lint: $(STAMP)  ## check the house style (pyproject.toml's [tool.ruff]) over the whole tree
	$(BIN)/ruff check .

test-fast: $(STAMP)  ## the edit-test loop: every test but the process-level and long ones (marked slow)
	$(BIN)/python -m pytest -m "not slow"

docs: $(STAMP)  ## build the site into docs/_build/html, offline, executing the examples and lessons; warnings are errors
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)  ## time ELBO Lab against plain PyTorch and NumPyro (times: README), write benchmarks/RESULTS.md
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[bench]' \
		|| echo "NumPyro could not be installed: the benchmark leaves its rows out"
	$(BIN)/python -m benchmarks.run

lessons: $(STAMP)  ## regenerate the lessons' figures and numbers in docs/lessons/ (times: README)
	$(BIN)/elbolab lessons
	PY=$(BIN)/python bash experiments/results/labels.sh

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test,docs]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
