"""Every valid combination of a recordable estimator: recorded steps against Pyro's steps.

    .venv/bin/python tests/recording_check.py        # about 2½ minutes on 2 cores

For each (model, guide, estimator) that ``experiments.parts.compatibility`` accepts and whose
estimator is ``recordable``, trains twice from the same seed on 40 points of 16 pixels in
minibatches of 16, 16 and 8 (two shapes, each recorded twice and then replayed): once with
Pyro's ``SVI``, once with ``RecordedSVI``. Prints one line per combination — the same losses
(relative 1e-4) or DIFFERENT, and whether the steps were replayed or fell back, with the line a
run would print — and the tally. ``tests/test_recording.py`` checks a cross-section of these at
every commit, and all of them in its slow tier (``pytest -m slow``), through ``check``.
"""
import collections
import warnings

import pyro
import torch
from pyro.infer import SVI

from experiments.estimators import ELBOS
from experiments.parts.build import build
from experiments.parts.compatibility import matrix
from experiments.recording.svi import RecordedSVI
from experiments.training.optim import adam

N, DATA_DIM = 40, 16
X = torch.rand(N, DATA_DIM, generator=torch.Generator().manual_seed(0)).bernoulli()
LABELS = torch.arange(N) % 3
LABELS[::3] = -1                                    # a third unlabeled, for the ssvae
BATCHES = [torch.arange(N)[i:i + 16] for i in range(0, N, 16)] * 3
FROM_DATA = {"ssvae": {"num_classes": 3}, "cvae": {"image_shape": (1, 4, 4)}}


def losses(svi_class, model, guide, elbo, **svi_options):
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    options = {"num_particles": 3, "vectorize_particles": True} \
        if ELBOS[elbo].vectorized or ELBOS[elbo].k_sample else {}
    parts = build(model, guide, elbo, data_dim=DATA_DIM, num_data=N, hidden_dims=(8,),
                  latent_dim=2, **options, **FROM_DATA.get(model, {}))
    svi = svi_class(parts.model, parts.guide, adam(0.01), parts.elbo, **svi_options)
    labels = (lambda i: {"y": LABELS[i]}) if parts.model.takes_labels else (lambda i: {})
    with pyro.validation_enabled(False):
        return [svi.step(X[i], i, num_data=N, **labels(i)) for i in BATCHES], svi


def check():
    """For each valid recordable combination: (model, guide, estimator, whether the losses are
    Pyro's, the lines ``on_fallback`` heard)."""
    for row in matrix():
        model, guide, elbo = row["model"], row["guide"], row["elbo"]
        if not row["ok"] or not ELBOS[elbo].recordable:
            continue
        said = []
        recorded, _ = losses(RecordedSVI, model, guide, elbo, on_fallback=said.append)
        pyros, _ = losses(SVI, model, guide, elbo)
        same = all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(recorded, pyros))
        yield model, guide, elbo, same, said


def main() -> None:
    warnings.simplefilter("ignore")                 # e.g. enumeration with nothing to sum
    tally = collections.Counter()
    for model, guide, elbo, same, said in check():
        how = f"falls back: {said[0]}" if said else "replayed"
        tally["same" if same else "DIFFERENT"] += 1
        tally["falls back" if said else "replayed"] += 1
        print(f"{model:13s} {guide:12s} {elbo:15s} {'same' if same else 'DIFFERENT'}  {how}")
    print(", ".join(f"{count} {what}" for what, count in tally.items()))


if __name__ == "__main__":
    main()
