"""What a run computes on: its device, and its data checked against the likelihood's support and
binarized as ``--binarize`` says."""
import torch

from experiments.common.console import log
from experiments.common.errors import UserError
from experiments.config.config import Config
from experiments.data.datasets import (
    BINARIZE_SEED,
    Dataset,
    binarize,
    held_out,
    load_dataset,
)
from experiments.data.labels import withhold_labels
from experiments.training.distributed import device_of
from models import MODELS
from models.likelihoods import LIKELIHOODS


def prepare_data(config: Config, device: torch.device, validation: int = 0) -> Dataset:
    """The data set on ``device``, checked against the likelihood's support and binarized:
    the test set (and with ``static`` the training set) once, with a fixed seed; for a model
    that takes labels, the training labels but those ``--labels`` keeps withheld (−1). With
    ``validation`` N > 0, the N training examples after the ``--num-train`` kept (the last N
    where all are kept) stand in for the test set, which is dropped (``held_out``)."""
    more = None if config.num_train is None or not validation else config.num_train + validation
    data = load_dataset(config.data, config.data_dir, more or config.num_train,
                        config.num_test, config.test_fraction)
    if more is not None and len(data.x_train) < more:
        raise UserError(f"--validation {validation}: {config.data} has {len(data.x_train)} "
                        f"training examples, fewer than --num-train {config.num_train} + "
                        f"{validation}; hold out fewer")
    data = keep_labels(config, held_out(data, validation) if validation else data)
    low, high = LIKELIHOODS[config.likelihood].support
    for x in (data.x_train, data.x_test):
        if x.min() < low or x.max() > high:
            raise UserError(f"{config.data}: values span [{x.min():.3g}, {x.max():.3g}] but the "
                            f"{config.likelihood} likelihood needs [{low}, {high}]; rescale the "
                            "data or choose --likelihood gaussian")
    if config.likelihood == "bernoulli":
        if config.binarize == "none":
            log(config, "warning: --binarize none scores grey levels with a Bernoulli "
                        "likelihood, which is not a normalized density: these numbers are "
                        "not comparable with the binarized-MNIST literature", force=True)
        else:
            data.x_test = binarize(data.x_test, seed=BINARIZE_SEED)
        if config.binarize == "static":
            data.x_train = binarize(data.x_train, seed=BINARIZE_SEED + 1)
    return data.to(device)


def keep_labels(config: Config, data: Dataset) -> Dataset:
    """``data`` as a model that takes labels sees it: with ``--labels N``, the training labels
    of all but a class-balanced choice of N points (fixed by ``--seed``) withheld as −1.
    ``--labels`` for a model without labels, or such a model on data without labels, is
    refused in one line."""
    if not MODELS[config.model].takes_labels:
        if config.labels is not None:
            takers = ", ".join(name for name, cls in MODELS.items() if cls.takes_labels)
            raise UserError(f"--labels applies to the models that learn from labels ({takers}); "
                            f"{config.model} does not: leave it out")
        return data
    if data.y_train is None or data.y_test is None:
        raise UserError(f"--model {config.model} learns from labels, and {config.data} has "
                        "none: use digits, mnist or fashion-mnist, or a .npz with y (or y_train "
                        "and y_test)")
    if config.labels is not None:
        data.y_train = withhold_labels(data.y_train, config.labels, config.seed)
    return data


def device_named(name: str) -> torch.device:
    """The device called ``name``; under torchrun, ``cuda`` is the GPU of the local rank."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: PyTorch sees no CUDA GPU here; use --device cpu")
    return device_of(name)
