"""Command-line options of a training run, shared by every command that trains."""
import argparse
import dataclasses
from typing import Iterable, List, Optional

from experiments.data.datasets import DATASETS
from experiments.data.synthetic import NUM_TEST, NUM_TRAIN
from experiments.estimators import ELBOS
from experiments.training.config import BINARIZE_CHOICES, INIT_CHOICES, Config
from guides import GUIDES
from models import MODELS
from models.likelihoods import LIKELIHOODS


def _widths(text: str) -> tuple:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths such as 400 or "
                                         f"512,256, got {text!r}") from None


def add_training_options(parser: argparse.ArgumentParser, suppress_defaults: bool = False,
                         exclude: Iterable[str] = ()) -> None:
    """Every ``Config`` field as an option, with the config's default (or none, to tell which
    options a user gave explicitly), but the fields in ``exclude`` (a command that sets them
    its own way, as the comparison's ``--elbos``)."""
    d = Config()
    default = (lambda value: argparse.SUPPRESS) if suppress_defaults else (lambda value: value)
    skip = set(exclude)

    def option(group, flag: str, **kwargs) -> None:
        if kwargs.get("dest", flag[2:].replace("-", "_")) not in skip:
            group.add_argument(flag, **kwargs)

    parts = parser.add_argument_group("parts (swap them by name)")
    option(parts, "--model", default=default(d.model),
           help=f"generative model p(z)p(x|z): {', '.join(MODELS)} (default: %(default)s)")
    option(parts, "--guide", default=default(d.guide),
           help=f"approximate posterior q(z|x): {', '.join(GUIDES)} (default: %(default)s)")
    option(parts, "--elbo", default=default(d.elbo),
           help=f"ELBO estimator: {', '.join(ELBOS)} (default: %(default)s)")
    data = parser.add_argument_group("data")
    option(data, "--data", default=default(d.data),
           help=f"{', '.join(DATASETS)}, or a .npz/.npy file (default: %(default)s)")
    option(data, "--data-dir", default=default(d.data_dir),
           help="folder for downloaded or local MNIST-style files (default: %(default)s)")
    option(data, "--num-train", type=int, default=default(d.num_train),
           help=f"keep the first N training examples (default: all; the synthetic sets "
           f"draw {NUM_TRAIN})")
    option(data, "--num-test", type=int, default=default(d.num_test),
           help=f"keep the first N test examples (default: all; the synthetic sets draw "
           f"{NUM_TEST})")
    option(data, "--test-fraction", type=float, default=default(d.test_fraction),
           help="held-out share when the data has no test split (default: %(default)s)")
    option(data, "--binarize", choices=BINARIZE_CHOICES, default=default(d.binarize),
           help="Bernoulli likelihood only: a fresh draw per batch (dynamic), one draw "
           "(static), or grey levels as they are (none) (default: %(default)s)")
    model = parser.add_argument_group("model and guide")
    option(model, "--likelihood", choices=list(LIKELIHOODS), default=default(d.likelihood),
           help="observation model p(x|z) of the vae; the gmm, lvm and ppca are always "
           "gaussian (default: %(default)s)")
    option(model, "--latent-dim", type=int, default=default(d.latent_dim),
           help="dimension d of z (1 or 2 for the lvm), or the number L of categorical "
           "variables of the discrete-vae (default: %(default)s)")
    option(model, "--hidden-dims", type=_widths, default=default(d.hidden_dims),
           help="hidden widths of the decoder, comma-separated; the encoder mirrors them, the "
           "categorical guide's network uses them (default: 400)")
    option(model, "--components", type=int, default=default(d.components),
           help="number K of mixture components of the gmm (default: %(default)s)")
    option(model, "--init", choices=INIT_CHOICES, default=default(d.init),
           help="gmm only: start each component from a cluster of the training data, around "
           "K random training points (random) or found by scikit-learn's k-means (kmeans) "
           "(default: %(default)s)")
    option(model, "--categories", type=int, default=default(d.categories),
           help="discrete-vae: values C of each of the --latent-dim categorical variables "
           "(default: %(default)s)")
    option(model, "--flow-layers", type=int, default=default(d.flow_layers),
           help="flow guide: number of inverse autoregressive transforms (default: %(default)s)")
    option(model, "--temperature", type=float, default=default(d.temperature),
           help="relaxed guide: Gumbel-softmax temperature τ (default: %(default)s)")
    train = parser.add_argument_group("training")
    option(train, "--lr", type=float, default=default(d.lr),
           help="Adam learning rate (default: %(default)s)")
    option(train, "--epochs", type=int, default=default(d.epochs),
           help="total number of epochs, also when resuming (default: %(default)s)")
    option(train, "--batch-size", type=int, default=default(d.batch_size),
           help="minibatch size (default: %(default)s)")
    option(train, "--num-particles", type=int, default=default(d.num_particles),
           help="samples of z per data point in the ELBO estimate (default: %(default)s)")
    option(train, "--vectorize-particles", action="store_true",
           default=default(d.vectorize_particles),
           help="draw the particles in one vectorized pass")
    option(train, "--alpha", type=float, default=default(d.alpha),
           help="order α of the renyi estimator, α ≠ 1 (default: %(default)s)")
    option(train, "--jit", action="store_true", default=default(d.jit),
           help="compile the estimator with torch.jit.trace (trace, meanfield): less Python "
           "per step, for models of static structure")
    option(train, "--seed", type=int, default=default(d.seed),
           help="random seed: same seed, same machine, same numbers (default: %(default)s)")
    option(train, "--restarts", type=int, default=default(d.restarts),
           help="train from N initializations (seeds seed, seed+1, …) and keep the one with "
           "the best final train ELBO (default: %(default)s)")
    option(train, "--device", default=default(d.device),
           help="cpu or cuda (default: %(default)s)")
    option(train, "--pyro-validation", action="store_true",
           default=default(d.pyro_validation),
           help="check distributions and model/guide sites at every step (slower)")
    evaluation = parser.add_argument_group("evaluation")
    option(evaluation, "--iwae-samples", type=int, default=default(d.iwae_samples),
           help="samples per test point of the IWAE estimate of log p(x) "
           "(default: %(default)s)")
    option(parser, "--out", default=default(d.out),
           help="run folder (default: runs/<time>-<model>-<guide>-<elbo>)")
    option(parser, "--no-progress", dest="progress", action="store_false", default=default(d.progress),
           help="no progress bars")


def config_from_args(args: argparse.Namespace) -> Config:
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in names})


def explicit_options(parser_factory, argv: Optional[List[str]]) -> dict:
    """The options a user typed, without defaults: ``parser_factory(suppress_defaults=True)``."""
    args, _ = parser_factory(suppress_defaults=True).parse_known_args(argv)
    return vars(args)
