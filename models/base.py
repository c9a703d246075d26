"""What every model declares about itself, so guides, estimators and figures can rely on it."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

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

    Subclasses set ``latent_sites`` and ``data_dim``. ``latent_sites`` is ordered from x
    outwards: first the site x is drawn from, then the site that one is drawn from, and so on
    (z₁ then z₂ for x ← z₁ ← z₂), the order in which a guide that follows the chain (``chain``)
    infers them. Parameters are named ``model.*``, so they never collide with a guide's
    (``guide.*``) in Pyro's parameter store. A model whose p(x|z) is always of one kind, not
    chosen by a ``likelihood`` argument, names it (a key of ``models.likelihoods.LIKELIHOODS``)
    in ``fixed_likelihood``, so data can be checked against its support. ``network`` and
    ``image_shape`` say how its networks read x (``models.networks.make_network``): amortized
    guides build their encoders the same way.
    """

    max_plate_nesting = 1
    latent_sites: Dict[str, LatentSite] = {}
    fixed_likelihood: Optional[str] = None
    network: str = "mlp"
    image_shape: Optional[Tuple[int, int, int]] = None

    def __init__(self, data_dim: int):
        super().__init__(name="model")
        self.data_dim = data_dim
