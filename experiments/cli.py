"""Command-line options of a training run, shared by every command that trains."""
import argparse
import dataclasses
from typing import List, Optional

from experiments.config import BINARIZE_CHOICES, Config
from experiments.data import DATASETS
from experiments.estimators import ELBOS
from guides import GUIDES
from models import MODELS
from models.likelihoods import LIKELIHOODS


def _widths(text: str) -> tuple:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths such as 400 or "
                                         f"512,256, got {text!r}") from None


def add_training_options(parser: argparse.ArgumentParser, suppress_defaults: bool = False) -> None:
    """Every ``Config`` field as an option, with the config's default (or none, to tell which
    options a user gave explicitly)."""
    d = Config()
    default = (lambda value: argparse.SUPPRESS) if suppress_defaults else (lambda value: value)
    add = parser.add_argument
    parts = parser.add_argument_group("parts (swap them by name)")
    parts.add_argument("--model", default=default(d.model),
                       help=f"generative model p(z)p(x|z): {', '.join(MODELS)} (default: %(default)s)")
    parts.add_argument("--guide", default=default(d.guide),
                       help=f"approximate posterior q(z|x): {', '.join(GUIDES)} (default: %(default)s)")
    parts.add_argument("--elbo", default=default(d.elbo),
                       help=f"ELBO estimator: {', '.join(ELBOS)} (default: %(default)s)")
    data = parser.add_argument_group("data")
    data.add_argument("--data", default=default(d.data),
                      help=f"{', '.join(DATASETS)}, or a .npz/.npy file (default: %(default)s)")
    data.add_argument("--data-dir", default=default(d.data_dir),
                      help="folder for downloaded or local MNIST-style files (default: %(default)s)")
    data.add_argument("--num-train", type=int, default=default(d.num_train),
                      help="keep the first N training examples (default: all)")
    data.add_argument("--num-test", type=int, default=default(d.num_test),
                      help="keep the first N test examples (default: all)")
    data.add_argument("--test-fraction", type=float, default=default(d.test_fraction),
                      help="held-out share when the data has no test split (default: %(default)s)")
    data.add_argument("--binarize", choices=BINARIZE_CHOICES, default=default(d.binarize),
                      help="Bernoulli likelihood only: a fresh draw per batch (dynamic), one draw "
                           "(static), or grey levels as they are (none) (default: %(default)s)")
    model = parser.add_argument_group("model and guide")
    model.add_argument("--likelihood", choices=list(LIKELIHOODS), default=default(d.likelihood),
                       help="observation model p(x|z) (default: %(default)s)")
    model.add_argument("--latent-dim", type=int, default=default(d.latent_dim),
                       help="dimension d of z (default: %(default)s)")
    model.add_argument("--hidden-dims", type=_widths, default=default(d.hidden_dims),
                       help="hidden widths of the decoder, comma-separated; the encoder mirrors "
                            "them (default: 400)")
    train = parser.add_argument_group("training")
    train.add_argument("--lr", type=float, default=default(d.lr),
                       help="Adam learning rate (default: %(default)s)")
    train.add_argument("--epochs", type=int, default=default(d.epochs),
                       help="total number of epochs, also when resuming (default: %(default)s)")
    train.add_argument("--batch-size", type=int, default=default(d.batch_size),
                       help="minibatch size (default: %(default)s)")
    train.add_argument("--num-particles", type=int, default=default(d.num_particles),
                       help="samples of z per data point in the ELBO estimate (default: %(default)s)")
    train.add_argument("--vectorize-particles", action="store_true",
                       default=default(d.vectorize_particles),
                       help="draw the particles in one vectorized pass")
    train.add_argument("--alpha", type=float, default=default(d.alpha),
                       help="order α of the renyi estimator, α ≠ 1 (default: %(default)s)")
    train.add_argument("--jit", action="store_true", default=default(d.jit),
                       help="compile the estimator with torch.jit.trace (trace, meanfield): "
                            "less Python per step, for models of static structure")
    train.add_argument("--seed", type=int, default=default(d.seed),
                       help="random seed: same seed, same machine, same numbers (default: %(default)s)")
    train.add_argument("--device", default=default(d.device),
                       help="cpu or cuda (default: %(default)s)")
    train.add_argument("--pyro-validation", action="store_true",
                       default=default(d.pyro_validation),
                       help="check distributions and model/guide sites at every step (slower)")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--iwae-samples", type=int, default=default(d.iwae_samples),
                            help="samples per test point of the IWAE estimate of log p(x) "
                                 "(default: %(default)s)")
    add("--out", default=default(d.out),
        help="run folder (default: runs/<time>-<model>-<guide>-<elbo>)")
    add("--no-progress", dest="progress", action="store_false", default=default(d.progress),
        help="no progress bars")


def config_from_args(args: argparse.Namespace) -> Config:
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in names})


def explicit_options(parser_factory, argv: Optional[List[str]]) -> dict:
    """The options a user typed, without defaults: ``parser_factory(suppress_defaults=True)``."""
    args, _ = parser_factory(suppress_defaults=True).parse_known_args(argv)
    return vars(args)
