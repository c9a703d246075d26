"""Each model's own defaults (``LatentVariableModel.defaults``): a run that names only its model
gets the model's guide, estimator and settings, recorded in config.json; any option given
overrides them, also one given at the value most models default to; ``list`` and ``--help``
state them, and a resumed run keeps the values it was trained with."""
import json
from pathlib import Path

import pytest

from experiments import list as listing
from experiments import train
from experiments.config.config import BY_MODEL, Config, flag_of, shown_value
from models import MODELS, LatentVariableModel

#: data each model can run on, the options that keep a run small (sizes left to the model)
DATA = {"gmm": "gmm-2d", "lvm": "ring", "ppca": "moons"}
SMALL = ["--epochs", "1", "--num-train", "120", "--num-test", "30", "--iwae-samples", "2",
         "--no-progress"]


def _train(tmp_path, *options) -> dict:
    """Train with ``options`` on the command line; the config.json the run wrote."""
    assert train.main([*options, *SMALL, "--out", str(tmp_path / "run")]) == 0
    return json.loads((tmp_path / "run" / "config.json").read_text())


@pytest.mark.parametrize("model", list(MODELS))
def test_a_model_named_alone_trains_with_its_own_guide_and_estimator(model, tmp_path):
    labels = ["--labels", "20"] if MODELS[model].takes_labels else []
    saved = _train(tmp_path, "--model", model, "--data", DATA.get(model, "digits"), *labels)
    defaults = MODELS[model].defaults
    assert (saved["guide"], saved["elbo"]) == (defaults["guide"], defaults["elbo"])
    for name in BY_MODEL:       # the resolved values, never "unset"
        expected = defaults[name]
        if name == "likelihood" and MODELS[model].fixed_likelihood:
            expected = MODELS[model].fixed_likelihood
        assert saved[name] == (list(expected) if isinstance(expected, tuple) else expected)


def test_the_ssvae_defaults_differ_from_the_vae_so_the_test_above_tells_them_apart():
    ssvae, vae = MODELS["ssvae"].defaults, MODELS["vae"].defaults
    assert {k for k in BY_MODEL if ssvae[k] != vae[k]} >= {"guide", "elbo", "aux_weight"}


def test_an_option_given_overrides_the_model_even_at_the_common_default(tmp_path):
    """``--lr 0.001`` is the vae's default, and still overrides the ssvae's own."""
    common = LatentVariableModel.defaults
    assert MODELS["ssvae"].defaults["lr"] != common["lr"]
    saved = _train(tmp_path, "--model", "ssvae", "--labels", "20", "--lr", str(common["lr"]),
                   "--hidden-dims", "16", "--guide", "m2")
    assert saved["lr"] == common["lr"] and saved["hidden_dims"] == [16]
    assert saved["guide"] == "m2" and saved["elbo"] == "trace"     # m2 samples y: no enum
    assert saved["aux_weight"] == MODELS["ssvae"].defaults["aux_weight"]


def test_a_guide_given_alone_keeps_the_models_estimator_where_it_fits():
    assert Config(model="gmm", guide="categorical").elbo == "trace"
    assert Config(model="gmm", guide="enum").elbo == "enum"
    assert Config(model="vae", guide="flow").elbo == "trace"
    assert Config(model="ssvae", elbo="trace").guide == "m2-enum"   # refused later, by name


def test_list_and_help_state_each_models_guide_and_estimator(capsys):
    assert listing.main([]) == 0
    shown = capsys.readouterr().out
    for name, model in MODELS.items():
        line = next(row for row in shown.splitlines() if row.strip().startswith(name + " ")
                    and "--guide" in row)
        assert f"--guide {model.defaults['guide']} --elbo {model.defaults['elbo']}" in line
    ssvae = next(row for row in shown.splitlines() if row.strip().startswith("ssvae ")
                 and "--guide" in row)
    assert f"--lr {shown_value(MODELS['ssvae'].defaults['lr'])}" in ssvae
    text = " ".join(train.parser().format_help().split())
    assert f"ssvae: {MODELS['ssvae'].defaults['guide']}" in text
    assert f"hvae: {MODELS['hvae'].defaults['guide']}" in text


def test_a_resumed_run_keeps_the_values_its_model_gave_it(tmp_path):
    first = _train(tmp_path, "--model", "ssvae", "--labels", "20", "--hidden-dims", "16")
    assert train.main(["--resume", str(tmp_path / "run"), "--epochs", "2",
                       "--no-progress"]) == 0
    resumed = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resumed == {**first, "epochs": 2}
    assert resumed["lr"] == MODELS["ssvae"].defaults["lr"]


def test_the_defaults_page_states_each_models_defaults():
    """docs/guide/defaults.md's table, row by row, against the models' declarations."""
    page = (Path(__file__).parents[1] / "docs" / "guide" / "defaults.md").read_text()
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in page.splitlines()
        if line.startswith("| ") and not line.startswith("| model"))}
    common = LatentVariableModel.defaults
    assert set(rows) == set(MODELS)
    for name, (guide, elbo, others) in rows.items():
        defaults = MODELS[name].defaults
        assert (guide, elbo) == (defaults["guide"], defaults["elbo"])
        differing = " ".join(f"{flag_of(k)} {shown_value(defaults[k])}" for k in BY_MODEL
                             if k not in ("guide", "elbo") and defaults[k] != common[k])
        assert others.strip("`") == differing
    stated = " ".join(f"{flag_of(k)} {shown_value(common[k])}" for k in BY_MODEL
                      if k not in ("guide", "elbo"))
    assert f"`{stated}`" in " ".join(page.split())
