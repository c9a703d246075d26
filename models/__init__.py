"""Generative models p(z) p(x|z), each a Pyro model, registered by the name users type."""
from models.base import LatentSite, LatentVariableModel
from models.cvae import CVAE
from models.discrete_vae import DiscreteVAE
from models.gmm import GaussianMixture
from models.hvae import HVAE
from models.lvm import NonlinearLVM
from models.ppca import PPCA
from models.ssvae import SSVAE
from models.vae import VAE

MODELS = {
    "vae": VAE,
    "hvae": HVAE,
    "discrete-vae": DiscreteVAE,
    "gmm": GaussianMixture,
    "lvm": NonlinearLVM,
    "ppca": PPCA,
    "ssvae": SSVAE,
    "cvae": CVAE,
}

__all__ = ["MODELS", "LatentSite", "LatentVariableModel"]
