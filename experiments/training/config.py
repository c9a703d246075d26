"""The one flat configuration of a run, saved as ``config.json`` beside its results."""
import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Tuple

from experiments.common.errors import UserError
from models import MODELS

BINARIZE_CHOICES = ("dynamic", "static", "none")
INIT_CHOICES = ("random", "kmeans")


@dataclass
class Config:
    """Every setting of a training run. Models and guides never see it: ``experiments.build``
    hands each part the keyword arguments its constructor names."""

    model: str = "vae"
    guide: str = "normal"
    elbo: str = "trace"
    data: str = "digits"
    data_dir: str = "data"
    num_train: Optional[int] = None
    num_test: Optional[int] = None
    test_fraction: float = 0.2
    binarize: str = "dynamic"
    likelihood: str = "bernoulli"
    latent_dim: int = 2
    hidden_dims: Tuple[int, ...] = (400,)
    categories: int = 10
    flow_layers: int = 2
    temperature: float = 0.5
    components: int = 3
    init: str = "random"
    lr: float = 1e-3
    epochs: int = 50
    batch_size: int = 128
    num_particles: int = 1
    vectorize_particles: bool = False
    alpha: float = 0.5
    jit: bool = False
    seed: int = 0
    restarts: int = 1
    device: str = "cpu"
    iwae_samples: int = 1000
    pyro_validation: bool = False
    out: Optional[str] = None
    progress: bool = field(default=True, metadata={"runtime": True})

    def validate(self) -> "Config":
        """Refuse settings no run can use, before any work is done."""
        positive = ["latent_dim", "components", "epochs", "batch_size", "num_particles",
                    "restarts", "iwae_samples", "flow_layers"]
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{_flag(name)} must be at least 1 (got {getattr(self, name)})")
        for name in ("num_train", "num_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{_flag(name)} must be at least 1 (got {value})")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise UserError(f"--hidden-dims must be positive widths, e.g. 400 or 512,256 "
                            f"(got {','.join(map(str, self.hidden_dims)) or 'nothing'})")
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"--test-fraction must lie strictly between 0 and 1 "
                            f"(got {self.test_fraction})")
        if self.categories < 2:
            raise UserError(f"--categories must be at least 2 (got {self.categories})")
        if not self.temperature > 0:
            raise UserError(f"--temperature must be positive (got {self.temperature})")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive (got {self.lr})")
        if self.binarize not in BINARIZE_CHOICES:
            raise UserError(f"--binarize must be one of {', '.join(BINARIZE_CHOICES)} "
                            f"(got {self.binarize!r})")
        if self.init not in INIT_CHOICES:
            raise UserError(f"--init must be one of {', '.join(INIT_CHOICES)} (got {self.init!r})")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError(f"--device must be cpu or cuda (got {self.device!r})")
        return self

    def part_options(self) -> dict:
        """The options handed to the parts' constructors: every setting but the parts' names."""
        return {k: v for k, v in self.to_dict().items() if k not in ("model", "guide", "elbo")}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.metadata.get("runtime")}

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"config has unknown settings {', '.join(unknown)}: "
                            "was it written by another version of ELBO Lab?")
        values = dict(values)
        if "hidden_dims" in values:
            values["hidden_dims"] = tuple(values["hidden_dims"])
        return cls(**values)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def resolve(config: Config) -> Config:
    """Settings that do not apply are recorded as what happens: a model whose p(x|z) is fixed
    (``fixed_likelihood``) overrides ``--likelihood``, and ``--binarize`` only acts on a
    Bernoulli likelihood."""
    fixed = MODELS[config.model].fixed_likelihood
    if fixed is not None and config.likelihood != fixed:
        config = config.replace(likelihood=fixed)
    if config.likelihood != "bernoulli" and config.binarize != "none":
        return config.replace(binarize="none")
    return config


def _flag(name: str) -> str:
    return name.replace("_", "-")
