"""Generative models p(z) p(x|z), each a Pyro model, registered by the name users type."""
from models.base import LatentSite, LatentVariableModel
from models.vae import VAE

MODELS = {
    "vae": VAE,
}

__all__ = ["MODELS", "LatentSite", "LatentVariableModel"]
