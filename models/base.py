"""What every model declares about itself, so guides, estimators and figures can rely on it."""
import itertools
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from pyro.nn import PyroModule


@dataclass(frozen=True)
class LatentSite:
    """One latent sample site per data point: its name, and whether z is discrete or continuous.

    ``size`` is the event size: the dimension d of a continuous z ∈ R^d, or the number of
    categorical variables of a discrete z. ``num_categories`` is the number of values of each;
    ``one_hot`` says whether the model scores them as one-hot vectors (which relaxed,
    reparameterizable samples can stand in for) or as integer labels.
    """

    name: str
    discrete: bool
    size: int
    num_categories: int = 0
    one_hot: bool = False

    def describe(self) -> str:
        if self.discrete:
            return (f"{self.size} categorical variable{'s' * (self.size > 1)} with "
                    f"{self.num_categories} values{' (one-hot)' * self.one_hot}")
        return f"continuous {self.name} ∈ R^{self.size}"


class LatentVariableModel(PyroModule):
    """Base of every model p(z) p(x|z): a ``PyroModule`` whose ``forward(x, index, num_data)``
    is the Pyro model, with one ``pyro.plate("data")`` (see ``models.plates.data_plate``).
    Called with ``x`` None it draws x instead of observing it, ``num_data`` points (default
    one), so ``pyro.infer.Predictive(model, num_samples=…)`` gives ancestral samples.

    Subclasses set ``latent_sites`` and ``data_dim``. ``latent_sites`` is ordered from x
    outwards: first the site x is drawn from, then the site that one is drawn from, and so on
    (z₁ then z₂ for x ← z₁ ← z₂), the order in which a guide that follows the chain (``chain``)
    infers them. ``network`` and ``image_shape`` say how its networks read x
    (``models.networks.make_network``): amortized guides build their encoders the same way.
    Parameters are named ``model.*``, so they
    never collide with a guide's (``guide.*``) in Pyro's parameter store (``experiments``
    numbers each set it builds, ``model#3``, so that sets never share one). A model whose p(x|z)
    is always of one kind, not chosen by a ``likelihood`` argument, names it (a key of
    ``models.likelihoods.LIKELIHOODS``) in ``fixed_likelihood``, so data can be checked against
    its support.

    Class attributes state what else the model can do, for the diagnostics, the figures and
    the compatibility checks (never its name):

    - ``has_exact_log_likelihood``: ``exact_log_likelihood(x)`` is log p(x_i), shape (N,);
    - ``has_exact_posterior``: ``exact_posterior(x)`` is p(z|x_i) for every row;
    - ``has_decoder``: ``decode(z)`` is E[x|z] for the code z that x is drawn from (the first
      of ``latent_sites``) and ``ancestral_means(like, n)`` is E[x|z] at n codes drawn from
      the prior (top-down through a hierarchy), so reconstructions, ancestral samples and the
      latent codes can be drawn (``models.decoder.DecoderModel``);
    - ``starts_from_clusters``: ``set_from_clusters(x, labels)`` starts its ``components``
      from a partition of the training data (``--init``);
    - ``mixture_of_gaussians``: p(x) = Σ_n λ_n N(x | μ_n, diag σ_n²) with ``weights``, ``locs``,
      ``scales`` and ``log_joint(x)`` = log p(x_i, z = n), shape (N, K);
    - ``takes_labels``: ``forward(x, index, num_data, y)`` takes the minibatch's class labels y
      (long, −1 where unknown) and observes the known ones; its ``num_classes`` values come
      from the data's labels, ``decode(z, y)`` is E[x | y, z], and its guides ``classify(x)``;
    - ``conditional``: x is split into a visible and a hidden part (``split(x)``), the model
      observes only the hidden one, so its bounds are on log p(x_h | x_v); a baseline network
      predicts x_h from x_v, trained alone before SVI by ``fit_baseline(x, epochs, batch_size,
      lr, seed)`` and scored by ``baseline_log_likelihood(x)``; ``predict(x, S)`` and
      ``baseline_completion(x)`` complete images.

    ``defaults`` are the settings the model runs with where the user gives none, by the names
    of the command line's options: its natural guide and estimator, and the sizes, likelihood
    and training settings it needs to do what its documentation says. A subclass overrides
    the ones it needs (``defaults = {**LatentVariableModel.defaults, "guide": "chain"}``).
    """

    max_plate_nesting = 1
    latent_sites: Dict[str, LatentSite] = {}
    fixed_likelihood: Optional[str] = None
    has_exact_log_likelihood = False
    has_exact_posterior = False
    has_decoder = False
    starts_from_clusters = False
    mixture_of_gaussians = False
    takes_labels = False
    conditional = False
    network: str = "mlp"
    image_shape: Optional[Tuple[int, int, int]] = None
    defaults: Mapping[str, Any] = dict(
        guide="normal", elbo="trace", likelihood="bernoulli", latent_dim=2, hidden_dims=(400,),
        batch_size=128, lr=1e-3, aux_weight=0.0, labeled_batch=0)

    def __init__(self, data_dim: int):
        super().__init__(name="model")
        self.data_dim = data_dim

    def like(self, x: Optional[torch.Tensor]) -> torch.Tensor:
        """What the model's distributions take their device and dtype from: the data x, or
        with no data (x None) the model's own parameters or buffers."""
        if x is not None:
            return x
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.detach().new_zeros(0)
        return torch.zeros(0)
