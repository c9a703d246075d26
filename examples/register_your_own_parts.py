"""
Register a model, a guide and an estimator of your own, and train them by name
==============================================================================

A model is a Pyro program p(z) p(x|z), a guide a Pyro program q(z|x), an estimator a Pyro
``ELBO``; registering one is one line, ``MODELS[name] = Class``, ``GUIDES[name] = Class`` or
``ELBOS[name] = Class``, from your own script. Everything the
command line does then works for the new names: the compatibility rules read what the classes
declare, ``experiments.build`` constructs them with the options of the same name, and a run
trains, evaluates and saves them as it does the built-in parts.

Here: factor analysis, z ~ N(0, I_d), x | z ~ N(W z + b, diag ψ²), and a guide whose q(z|x) is
a Laplace distribution instead of a Gaussian, trained on the bundled digits (grey levels).
"""
import argparse
from pathlib import Path
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from experiments import Config, UserError
from experiments.estimators import ELBOS
from experiments.estimators.traits import EstimatorTraits
from experiments.training.end_to_end import run
from guides import GUIDES
from guides.base import AmortizedGuide
from models import MODELS, LatentSite, LatentVariableModel
from models.plates import data_plate

OUT = Path("runs/examples/factor-analysis")  # under the folder it runs in


# %%
# The model
# ---------
# A model subclasses ``LatentVariableModel``: it declares its latent sites (here one continuous
# z of size d) and its ``forward(x, index, num_data)`` is the Pyro model, with every site of a
# data point inside ``data_plate`` (which scales a minibatch by N/B). Called with ``x=None`` it
# draws x, so Pyro's ``Predictive`` samples from it. ``fixed_likelihood`` names its p(x|z), so
# the data are checked against its support and not binarized.

class FactorAnalysis(LatentVariableModel):
    """Factor analysis: z ~ N(0, I_d), x | z ~ N(W z + b, diag ψ²), with W, b, ψ learned.

    :param data_dim: D, the size of x.
    :param latent_dim: d, the size of z.
    """

    fixed_likelihood = "gaussian"

    def __init__(self, data_dim: int, latent_dim: int = 2):
        super().__init__(data_dim)
        self.latent_sites = {"z": LatentSite("z", discrete=False, size=latent_dim)}
        self.loading = nn.Linear(latent_dim, data_dim)                   # W (D, d), b (D,)
        self.log_noise = nn.Parameter(torch.zeros(data_dim))             # log ψ (D,)

    def forward(self, x: Optional[torch.Tensor] = None, index=None, num_data=None) -> None:
        d = self.latent_sites["z"].size
        with data_plate(x, index, num_data):
            prior = dist.Normal(self.like(x).new_zeros(d), 1.0).to_event(1)
            z = pyro.sample("z", prior)                                          # (batch, d)
            noise = self.log_noise.exp()
            pyro.sample("x", dist.Normal(self.loading(z), noise).to_event(1), obs=x)


# %%
# The guide
# ---------
# An amortized guide reads q(z|x) off an encoder that mirrors the model's decoder:
# ``encoder_outputs`` says how many numbers per point it needs, ``posterior(x)`` turns them
# into a distribution over the model's site. Its class attributes say what it can do: a
# Laplace q is reparameterized, but KL(q ‖ p(z)) against a Gaussian prior has no closed form.

class LaplaceGuide(AmortizedGuide):
    """q_φ(z|x) = Π_j Laplace(z_j | μ_φ(x)_j, b_φ(x)_j), b = softplus of the encoder's output.

    :param model: the model whose one continuous latent site this guide covers.
    :param hidden_dims: the encoder's hidden widths (the model's, reversed).
    """

    closed_form_kl = False

    def encoder_outputs(self) -> int:
        return 2 * self.site.size

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, scale = self.encoder(x).chunk(2, dim=-1)                        # (batch, d) each
        return dist.Laplace(loc, F.softplus(scale) + 1e-4).to_event(1)


# %%
# The estimator
# -------------
# An estimator is a Pyro ``ELBO`` class with ``EstimatorTraits`` first among its bases, setting
# the traits that differ from the defaults. Here Pyro's own ``Trace_ELBO`` as it ships: its
# loss reads each site's log-density into a Python number, so a training step cannot be
# recorded and replayed (``recordable = False``: every step goes through Pyro's ``SVI``).
# ELBO Lab's ``trace`` computes the same loss as one tensor; the two agree.

class PyroTrace(EstimatorTraits, pyro.infer.Trace_ELBO):
    """Pyro's Trace_ELBO unchanged: −ELBO = −E_q[log p(x, z) − log q(z|x)], K samples."""

    recordable = False


# %%
# Register and train by name
# --------------------------
# One line each. From here ``factor-analysis``, ``laplace`` and ``pyro-trace`` are names like
# ``vae``, ``normal`` and ``trace``: a combination that cannot work is refused with the reason
# (``meanfield`` needs the closed-form KL this guide does not have), and one that can trains as
# any run does.

MODELS["factor-analysis"] = FactorAnalysis
GUIDES["laplace"] = LaplaceGuide
ELBOS["pyro-trace"] = PyroTrace


def main(epochs: int = 10, num_train: Optional[int] = None, iwae_samples: int = 100) -> dict:
    config = Config(model="factor-analysis", guide="laplace", elbo="pyro-trace", data="digits",
                    latent_dim=4, hidden_dims=(64,), epochs=epochs, num_train=num_train,
                    iwae_samples=iwae_samples, out=str(OUT), progress=False)
    try:
        run(config.replace(elbo="meanfield"), force=True)
    except UserError as refused:
        print("refused:", refused)
    result = run(config, force=True)
    summary = result.summary
    print(f"factor analysis + Laplace q, {summary['epochs']} epochs: test ELBO "
          f"{summary['test_elbo']:.2f}, test IWAE {summary['test_iwae']:.2f} nats per digit")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Register a model, a guide and an estimator of your own, train them by name")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--iwae-samples", type=int, default=100)
    main(**vars(parser.parse_args()))
