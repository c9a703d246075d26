"""A finished run, loaded: ``load(run_dir)`` gives back its trained model and guide, its config
and the shape of its data, without reading the data (the checkpoint records its shape). Each
load builds its parts in a parameter namespace of its own (``experiments.parts.namespaces``), so
loading never touches the parameters of another run held in the process.

A model draws x where it is given none (``model(None, num_data=n)``), so Pyro's own tools work
on a loaded run:

    run = load("runs/my-vae")
    Predictive(run.model, num_samples=64)()          # z ~ p(z), x ~ p(x|z): ancestral samples
    Predictive(poutine.uncondition(run.model), guide=run.guide, num_samples=8)(x)
                                                     # z ~ q(z|x), x ~ p(x|z): reconstructions

``poutine.uncondition`` is how the guide reads x while the model draws it: the model's observed
site x becomes a sample site, and its latent sites take the guide's draws. ``TrainedRun`` wraps
these (``samples``, ``reconstructions``) and adds the latent codes of new data and
interpolation between two inputs. ``load_trained`` also loads the data as the run trained on
it, for the commands that measure on its test set again (``experiments.gaps``, the lessons).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from pyro import poutine
from pyro.infer import Predictive

from experiments.common.errors import UserError
from experiments.config.config import Config
from experiments.data.datasets import Dataset, DataShape
from experiments.evaluation.ais import AISEstimate, ais_estimate, unsupported
from experiments.evaluation.likelihood import guide_distribution
from experiments.evaluation.metrics import scoring_guide
from experiments.parts.build import Parts, parts_for
from experiments.training.folder import load_checkpoint, load_parts, run_folder_of
from experiments.training.prepare import device_named, prepare_data

Data = Union[torch.Tensor, np.ndarray]

#: draws of q(z|x) behind a latent code where q's mean has no closed form (a flow)
CODE_SAMPLES = 256


@dataclass
class TrainedRun:
    """A finished run's model and guide with their trained parameters.

    :param run_dir: the run's folder.
    :param config: its settings, resolved (``config.likelihood`` and ``config.binarize`` say how
        its data were scored and binarized).
    :param data: the shape of the data it trained on: name, D, the numbers of training and test
        examples, the shape of one image.
    :param parts: its model, guide and estimator.
    :param epochs: the epochs it trained.
    """

    run_dir: Path
    config: Config
    data: DataShape
    parts: Parts
    epochs: int

    @property
    def model(self):
        return self.parts.model

    @property
    def guide(self):
        return self.parts.guide

    def samples(self, num_samples: int = 1) -> Dict[str, torch.Tensor]:
        """``num_samples`` draws of the model by ancestral sampling, every latent site from its
        prior and then x, by ``Predictive(model, num_samples)`` with no data: {site: (num_samples,
        *event_shape)}; a model with a decoder adds ``x_mean``, E[x|z] (an image without the
        observation noise)."""
        with torch.no_grad():
            draws = self._predict(Predictive(self.model, num_samples=num_samples, parallel=True))
        draws = {site: value.squeeze(1) for site, value in draws.items()}    # one point a draw
        return self._with_means(draws)

    def reconstructions(self, x: Data, num_samples: int = 1) -> Dict[str, torch.Tensor]:
        """Posterior-predictive draws for the rows of x (N, D) or images (N, H, W): z ~ q(z|x),
        then x ~ p(x|z), by ``Predictive(poutine.uncondition(model), guide=…)``: {site:
        (num_samples, N, *event_shape)}, and ``x_mean`` = E[x|z] for a model with a decoder.
        Give x as the run saw it (binary for a Bernoulli likelihood)."""
        x = self.as_data(x)
        guide = self._reading_guide(x, "reconstructions")
        reconstruct = Predictive(poutine.uncondition(self.model), guide=guide,
                                 num_samples=num_samples)
        with torch.no_grad():
            return self._with_means(self._predict(reconstruct, x))

    def latent_codes(self, x: Data) -> torch.Tensor:
        """The mean of q(z|x) for every row of x at the latent site x is drawn from, shape
        (N, d): for a continuous z its mean (over ``CODE_SAMPLES`` draws where it has no closed
        form), for a categorical z its probabilities (N, K), for one-hot codes (N, L, C)."""
        x = self.as_data(x)
        site = next(iter(self.model.latent_sites.values()))
        if self.guide.enumerates:
            if not self.model.has_exact_posterior:
                raise UserError(f"the {self.config.guide} guide has no q(z|x) to encode with")
            with torch.no_grad():
                return self.model.exact_posterior(x)             # the exact p(z|x)
        guide = self._reading_guide(x, "latent codes")
        q = guide_distribution(guide, x, site.name)
        if site.discrete and not site.one_hot:
            return q.probs
        try:
            return q.mean
        except NotImplementedError:
            with torch.no_grad():
                draws = Predictive(guide, num_samples=CODE_SAMPLES, parallel=True)(x)
            return draws[site.name].mean(0)

    def interpolate(self, x_from: Data, x_to: Data, steps: int = 8) -> torch.Tensor:
        """E[x|z] along the straight line between the latent codes of two inputs,
        z_t = (1 − t) z_from + t z_to at ``steps`` values of t from 0 to 1: shape (steps, D)."""
        if not self.model.has_decoder:
            raise UserError(f"the {self.config.model} model has no decoder from a code z to x, "
                            "so there is nothing to interpolate")
        codes = self.latent_codes(torch.cat([self.as_data(x_from), self.as_data(x_to)]))
        t = torch.linspace(0, 1, steps, dtype=codes.dtype, device=codes.device)
        t = t.reshape(-1, *[1] * (codes.dim() - 1))                    # (steps, 1, …)
        with torch.no_grad():
            return self.model.decode((1 - t) * codes[0] + t * codes[1])

    def ais(self, x: Data, num_steps: int = 500, num_chains: int = 16, **options) -> AISEstimate:
        """log p̂(x_i) for the rows of x by annealed importance sampling from q(z|x) to
        p(x, z) (``experiments.evaluation.ais.ais_estimate``, whose ``options`` it takes):
        ``.per_point``, ``.value`` (the mean) and its ``.mc_stderr``. Refused in one line for a
        model with discrete latent sites."""
        reason = unsupported(self.model)
        if reason:
            raise UserError(f"--model {self.config.model}: {reason}")
        x = self.as_data(x)
        return ais_estimate(self.model, self._reading_guide(x, "chains"), x, num_steps,
                            num_chains, **options)

    def as_data(self, x: Data) -> torch.Tensor:
        """x as rows (N, D) on the model's device and dtype: one example (D,) or images
        (N, H, W) are flattened; refused in one line where D is not the run's."""
        like = self.model.like(None)
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x,
                            dtype=like.dtype, device=like.device)
        x = x.reshape(1, -1) if x.dim() == 1 else x.reshape(len(x), -1)
        if x.shape[1] != self.data.data_dim:
            raise UserError(f"{self.run_dir} trained on examples of {self.data.data_dim} values; "
                            f"got examples of {x.shape[1]}")
        return x

    def _reading_guide(self, x: torch.Tensor, what: str):
        """The guide that reads x: the trained one, or for a non-amortized guide per-point
        parameters fitted to x with the model fixed (``scoring_guide``)."""
        if self.guide.enumerates:
            raise UserError(f"the {self.config.guide} guide samples no z (it is summed out), so "
                            f"there are no {what} to draw from q(z|x)")
        return scoring_guide(self.parts, x, final=True)

    def _predict(self, predictive: Predictive, *args) -> Dict[str, torch.Tensor]:
        try:
            return predictive(*args)
        except ValueError as exc:                 # a model that cannot draw what is asked
            raise UserError(f"--model {self.config.model}: {exc}") from None

    def _with_means(self, draws: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if self.model.has_decoder:
            code = next(iter(self.model.latent_sites))             # the site x is drawn from
            draws["x_mean"] = self.model.decode(draws[code])
        return draws


def load(run_dir: Union[str, Path], device: Optional[str] = None,
         option: str = "--run") -> TrainedRun:
    """The finished run in ``run_dir`` (or the checkpoint.pt it names), on ``device`` (default:
    the run's), without reading its data. The parts are built in a random stream of their own,
    so loading changes neither another run's parameters nor the random numbers drawn next. A
    missing, corrupt or foreign checkpoint is refused in one line naming ``option``."""
    run_dir = run_folder_of(Path(run_dir))
    state = load_checkpoint(run_dir, option)
    config = Config.from_dict(state["config"]).replace(progress=False)
    config = config if device is None else config.replace(device=device)
    where = device_named(config.device)
    shape = recorded_shape(run_dir, state, config, where)
    with torch.random.fork_rng(devices=[]):
        parts = parts_for(config, shape, where)
    load_parts(run_dir, state, parts)
    return TrainedRun(run_dir, config, shape, parts, int(state["epoch"]))


def recorded_shape(run_dir: Path, state: dict, config: Config,
                   device: torch.device) -> DataShape:
    """The shape of the data the checkpoint ``state`` records; a checkpoint written before
    they recorded it is read from the data itself, refused in one line if that fails."""
    if "data" in state:
        return DataShape.from_dict(state["data"])
    try:
        return prepare_data(config, device).shape
    except UserError as exc:
        raise UserError(f"{run_dir} was saved before checkpoints recorded the shape of their "
                        f"data, so its data must be read to load it, and cannot be: "
                        f"{exc}") from None


def load_trained(run_dir: Path, option: str = "--run") -> Tuple[Config, Dataset, Parts]:
    """A finished run's config, its data as it trained on them (``prepare_data``), and its
    parts: ``load`` and the data, for the commands that measure on its test set again. Data
    that no longer have the recorded number of values per example are refused in one line."""
    trained = load(run_dir, option=option)
    data = prepare_data(trained.config, device_named(trained.config.device))
    if data.data_dim != trained.data.data_dim:
        raise UserError(f"{run_dir}: its data {trained.config.data} now have {data.data_dim} "
                        f"values per example, the run trained on {trained.data.data_dim}")
    return trained.config, data, trained.parts
