"""The one flat configuration of a run, saved as ``config.json`` beside its results.

Every option is declared once, as a field of ``Config``: its default, and through ``option``
its help text, its group on the command line and its range or choices. The command-line parser
is generated from the fields (``experiments.config.options``) and ``Config.validate`` checks
the ranges they declare, so a new option is a field here and the code that reads it.

The options a model sets for itself (``LatentVariableModel.defaults``: its guide, estimator,
sizes, likelihood, batch size and learning rate) default to None, "unset", and a ``Config``
fills each one left unset from its model's defaults when it is made: what the user gives
overrides the model, and the config, saved as config.json, holds the values the run uses.
"""
import argparse
import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from experiments import __version__
from experiments.common.errors import UserError
from experiments.common.recording_folder import folder_error
from experiments.data.datasets import DATASETS
from experiments.data.synthetic import NUM_TEST, NUM_TRAIN
from experiments.estimators import ELBOS
from guides import GUIDES
from models import MODELS, LatentVariableModel
from models.likelihoods import LIKELIHOODS
from models.networks import NETWORKS
from models.priors import PRIORS

BINARIZE_CHOICES = ("dynamic", "static", "none")
INIT_CHOICES = ("random", "kmeans")


def option(default, help: str, group: Optional[str] = None, *,
           choices: Optional[Sequence[str]] = None, at_least: Optional[int] = None,
           at_most: Optional[int] = None, positive: bool = False,
           between: Optional[Tuple[float, float]] = None, shown_default: str = "%(default)s",
           parse=None, resumable: bool = False, runtime: bool = False):
    """A ``Config`` field and everything said about it once.

    :param help: what the option does, as ``--help`` shows it.
    :param group: its section of ``--help`` (None: the general options).
    :param choices: its only valid values.
    :param at_least: its smallest valid value (an integer; None stays valid for an optional).
    :param at_most: its largest valid value (likewise).
    :param positive: it must be > 0.
    :param between: (low, high): it must lie strictly between them.
    :param shown_default: the default as ``--help`` states it (a flag states none).
    :param parse: reads the option's text on the command line (default: the field's type).
    :param resumable: a resumed run may change it (the others must match the saved config).
    :param runtime: how a run is watched, not what it computes: not saved in config.json.
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, choices=choices, at_least=at_least, at_most=at_most,
        positive=positive, between=between, shown_default=shown_default, parse=parse,
        resumable=resumable, runtime=runtime))


def widths(text: str) -> Tuple[int, ...]:
    """``512,256`` → (512, 256): hidden widths as the command line gives them."""
    return _numbers(text, "widths such as 400 or 512,256")


def sizes(text: str) -> Tuple[int, ...]:
    """``100,50`` → (100, 50): the sizes of a hierarchy's latent layers, from x outwards."""
    return _numbers(text, "sizes such as 100,50")


def thread_count(text: str) -> Optional[int]:
    """``auto`` → None (chosen from the cores' load at the start: experiments.common.threads),
    ``2`` → 2."""
    if text.strip() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of threads or auto, "
                                         f"got {text!r}") from None


def _numbers(text: str, example: str) -> Tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {example}, "
                                         f"got {text!r}") from None


#: the options whose default is the model's own (``LatentVariableModel.defaults``)
BY_MODEL = tuple(LatentVariableModel.defaults)


def by_model(name: str) -> str:
    """The default of option ``name`` as ``--help`` states it: the one most models share, then
    those of the models that differ (``400; cvae, ssvae: 128``)."""
    common = LatentVariableModel.defaults[name]
    differing = {}
    for model, cls in MODELS.items():
        if cls.defaults[name] != common:
            differing.setdefault(shown_value(cls.defaults[name]), []).append(model)
    return "; ".join([shown_value(common)] + [f"{', '.join(models)}: {value}"
                                              for value, models in differing.items()])


def shown_value(value) -> str:
    """A setting as the command line writes it: ``(128, 64)`` → ``128,64``, 0.001 → ``0.001``."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def default_elbo(model_elbo: str, guide: str) -> str:
    """The estimator of a run that names its guide and not its estimator: the model's, unless
    one of the two sums discrete sites out and the other does not; then Pyro's ``enum`` for a
    guide that leaves them to be summed out (``enum``, ``m2-enum``), ``trace`` for one that
    samples them (an unknown name is refused later, by name)."""
    if guide not in GUIDES or model_elbo not in ELBOS:
        return model_elbo
    enumerates = GUIDES[guide].enumerates
    if ELBOS[model_elbo].enumerates == enumerates:
        return model_elbo
    return "enum" if enumerates else "trace"


PARTS, DATA, MODEL, TRAINING, EVALUATION = ("parts (swap them by name)", "data", "model and guide",
                                            "training", "evaluation")


@dataclass
class Config:
    """Every setting of a training run. Models and guides never see it:
    ``experiments.parts.build`` hands each part the keyword arguments its constructor names."""

    model: str = option("vae", f"generative model p(z)p(x|z): {', '.join(MODELS)}; an "
                        "option whose default names models (ssvae: …) takes that model's", PARTS)
    guide: Optional[str] = option(None, f"approximate posterior q(z|x): {', '.join(GUIDES)}",
                                  PARTS, shown_default=by_model("guide"))
    elbo: Optional[str] = option(None, f"ELBO estimator: {', '.join(ELBOS)}", PARTS,
                                 shown_default=by_model("elbo"))
    data: str = option("digits", f"{', '.join(DATASETS)}, or a .npz/.npy file", DATA)
    data_dir: str = option("data", "folder for downloaded or local MNIST-style files", DATA)
    num_train: Optional[int] = option(
        None, "keep the first N training examples", DATA, at_least=1,
        shown_default=f"all; the synthetic sets draw {NUM_TRAIN}")
    num_test: Optional[int] = option(
        None, "keep the first N test examples", DATA, at_least=1,
        shown_default=f"all; the synthetic sets draw {NUM_TEST}")
    test_fraction: float = option(0.2, "held-out share when the data has no test split", DATA,
                                  between=(0, 1))
    binarize: str = option(
        "dynamic", "Bernoulli likelihood only: a fresh draw per batch (dynamic; no binary "
        "image is seen twice, so the train ELBO estimates the test ELBO and may sit below "
        "it), one draw (static), or grey levels as they are (none)", DATA,
        choices=BINARIZE_CHOICES)
    labels: Optional[int] = option(
        None, "models with labels (ssvae): keep the labels of N training points, as many of each "
        "class as possible, chosen by --seed; the others train unlabeled", DATA, at_least=1,
        shown_default="all")
    likelihood: Optional[str] = option(
        None, "observation model p(x|z) of the vae; the gmm, lvm and ppca are always "
        "gaussian", MODEL, choices=tuple(LIKELIHOODS), shown_default=by_model("likelihood"))
    latent_dim: Optional[int] = option(
        None, "dimension d of z (1 or 2 for the lvm), or the number L of categorical variables "
        "of the discrete-vae", MODEL, at_least=1, shown_default=by_model("latent_dim"))
    hidden_dims: Optional[Tuple[int, ...]] = option(
        None, "hidden widths of the decoder, comma-separated; the encoder mirrors them, the "
        "categorical guide's network uses them", MODEL, shown_default=by_model("hidden_dims"),
        parse=widths)
    components: int = option(3, "number K of mixture components of the gmm, and of the vae's "
                             "--prior mog", MODEL, at_least=1)
    prior: str = option(
        "standard", "p(z) of the vae: N(0, I) (standard), a learned mixture of --components "
        "Gaussians (mog), or the VampPrior, the encoder's mixture at --pseudo-inputs learned "
        "inputs (vamp; Tomczak & Welling 2018); the other models keep theirs", MODEL,
        choices=PRIORS)
    pseudo_inputs: int = option(500, "--prior vamp: number K of learned pseudo-inputs", MODEL,
                                at_least=1)
    init: str = option(
        "random", "gmm only: start each component from a cluster of the training data, around "
        "K random training points (random) or found by scikit-learn's k-means (kmeans)", MODEL,
        choices=INIT_CHOICES)
    categories: int = option(
        10, "discrete-vae: values C of each of the --latent-dim categorical variables", MODEL,
        at_least=2)
    flow_layers: int = option(
        2, "flow and iaf guides: number T of inverse autoregressive transforms", MODEL,
        at_least=1)
    temperature: float = option(0.5, "relaxed guide: Gumbel-softmax temperature τ", MODEL,
                                positive=True)
    aux_weight: Optional[float] = option(
        None, "m2 guides: weight α of the classification term α·log q(y|x) on labeled points "
        "(Kingma et al. 2014; Pyro's example uses 46); 0 trains q(y|x) on unlabeled points "
        "only", MODEL, at_least=0, shown_default=by_model("aux_weight"))
    labeled_batch: Optional[int] = option(
        None, "ssvae with --labels: where rows drawn alike would put fewer labeled rows than "
        "this in a minibatch, every minibatch holds --batch-size unlabeled rows and this many "
        "labeled ones, drawn apart (each group weighted by its own share, so the loss still "
        "estimates the whole data set's); the few labeled points are then seen many times an "
        "epoch. 0: labeled and unlabeled rows always drawn alike", MODEL, at_least=0,
        shown_default=by_model("labeled_batch"))
    visible: int = option(1, "cvae: visible quadrants of each image, 1 (bottom-left), 2 (left "
                          "half) or 3 (all but the bottom-right)", MODEL, at_least=1, at_most=3)
    latent_dims: Tuple[int, ...] = option(
        (20, 10), "hvae: sizes d₁,d₂ of its latent layers z₁ (the one x is drawn from) and z₂, "
        "comma-separated (Burda et al.: 100,50)", MODEL, shown_default="20,10", parse=sizes)
    network: str = option(
        "mlp", "the decoder of the vae, hvae and discrete-vae and their guides' encoders: dense "
        "layers (mlp) or, for image data, strided convolutions (conv) with --hidden-dims as the "
        "dense layers between them and z", MODEL, choices=NETWORKS)
    lr: Optional[float] = option(None, "Adam learning rate", TRAINING, positive=True,
                                 shown_default=by_model("lr"))
    epochs: int = option(50, "total number of epochs, also when resuming", TRAINING,
                         at_least=1, resumable=True)
    batch_size: Optional[int] = option(None, "minibatch size", TRAINING, at_least=1,
                                       shown_default=by_model("batch_size"))
    num_particles: int = option(1, "samples of z per data point in the ELBO estimate", TRAINING,
                                at_least=1)
    vectorize_particles: bool = option(False, "draw the particles in one vectorized pass",
                                       TRAINING)
    alpha: float = option(0.5, "order α of the renyi estimator, α ≠ 1", TRAINING)
    eager: bool = option(
        False, "run every training step through Pyro's handlers, instead of replaying the step "
        "recorded at the start of the run (experiments/recording): the same numbers, slower; "
        "for debugging a model", TRAINING, runtime=True)
    recording_cache: Optional[str] = option(
        None, "folder where recorded training steps are kept between runs, so that a run of the "
        "same program loads its recording instead of making it (checked against Pyro's step at "
        "its first use); off: record every run afresh", TRAINING,
        shown_default="$ELBO_LAB_RECORDING_CACHE, else ~/.cache/elbo-lab/recordings",
        resumable=True, runtime=True)
    seed: int = option(0, "random seed: same seed, same machine, same numbers", TRAINING)
    restarts: int = option(
        1, "train from N initializations (seeds seed, seed+1, …) and keep the one with the best "
        "final train ELBO", TRAINING, at_least=1)
    device: str = option("cpu", "cpu or cuda", TRAINING, resumable=True)
    threads: Optional[int] = option(
        None, "intra-op CPU threads of a run (of each run, for compare); auto: torch's default "
        "(one per core), fewer where other processes keep cores busy at the start "
        "(docs/guide/performance.md); OMP_NUM_THREADS, when set, is kept", TRAINING, at_least=1,
        shown_default="auto", parse=thread_count, resumable=True, runtime=True)
    pyro_validation: bool = option(
        False, "check distributions and model/guide sites at the steps Pyro takes: the first "
        "of a run (replayed steps are not checked), or every step with --eager (slower)",
        TRAINING)
    beta: float = option(
        1.0, "weight β of the latent terms log p(z) − log q(z|x) in the training objective "
        "(poutine.scale on the latent sites of model and guide); 1 is the ELBO. The train ELBO "
        "is then the β-weighted objective; test numbers stay the bounds at β = 1", TRAINING,
        positive=True)
    kl_warmup: int = option(
        0, "epochs E over which β rises linearly from 0 to --beta: epoch e trains at "
        "β·min(1, (e − 1)/E); 0: no warm-up", TRAINING, at_least=0)
    free_bits: float = option(
        0.0, "free bits λ per latent dimension (Kingma et al. 2016): the KL term is "
        "Σ_j max(λ, KL_j), KL_j the minibatch's mean KL of unit j, so no unit is pushed below "
        "λ nats; diagonal Gaussian guides with a factorized Gaussian prior; 0: off", TRAINING,
        at_least=0)
    dist_timeout: float = option(
        600.0, "under torchrun: seconds a rank waits for the others at a collective before the "
        "job stops", TRAINING, positive=True, resumable=True, runtime=True)
    iwae_samples: int = option(1000, "samples per test point of the IWAE estimate of log p(x)",
                               EVALUATION, at_least=1)
    out: Optional[str] = option(None, "run folder", shown_default="runs/<time>-<model>-<guide>-"
                                "<elbo>", resumable=True)
    progress: bool = option(True, "no progress bars", resumable=True, runtime=True)
    tensorboard: bool = option(
        False, "write each epoch's numbers and images as TensorBoard event files into "
        "RUN_DIR/tensorboard/ (needs: pip install -e .[tensorboard])", resumable=True,
        runtime=True)

    def __post_init__(self):
        """Fill the options left unset (None) with the model's defaults (an unknown model, which
        the run refuses by name, with those most models share). A guide given without an
        estimator keeps the model's estimator where it suits the guide (``default_elbo``)."""
        defaults = MODELS.get(self.model, LatentVariableModel).defaults
        if self.elbo is None and self.guide is not None:
            self.elbo = default_elbo(defaults["elbo"], self.guide)
        for name in BY_MODEL:
            if getattr(self, name) is None:
                setattr(self, name, defaults[name])

    def validate(self) -> "Config":
        """Refuse settings no run can use, before any work is done."""
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise UserError(f"--hidden-dims must be positive widths, e.g. 400 or 512,256 "
                            f"(got {','.join(map(str, self.hidden_dims)) or 'nothing'})")
        if min(self.latent_dims, default=0) < 1:
            raise UserError(f"--latent-dims must be positive sizes, e.g. 100,50 (got "
                            f"{','.join(map(str, self.latent_dims)) or 'nothing'})")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError(f"--device must be cpu or cuda (got {self.device!r})")
        cache_error = folder_error(self.recording_cache)
        if cache_error:
            raise UserError(cache_error)
        return self

    def part_options(self) -> dict:
        """The options handed to the parts' constructors: every setting but the parts' names."""
        return {k: v for k, v in self.to_dict().items() if k not in ("model", "guide", "elbo")}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.metadata["runtime"]}

    def record(self) -> dict:
        """What a run's config.json holds: the ``version`` of ELBO Lab that ran it, then every
        setting (``to_dict``)."""
        return {"version": __version__, **self.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """The config saved in a run's config.json; its ``version`` (which code wrote it, not a
        setting) and settings since retired (``RETIRED``) are read and dropped."""
        values = {k: v for k, v in values.items() if k not in RETIRED and k != "version"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"config has unknown settings {', '.join(unknown)}: "
                            "was it written by another version of ELBO Lab?")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)      # JSON has no tuples: hidden_dims, latent_dims

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


#: settings of older config.json files, and why they are no longer needed
RETIRED = {"jit": "every run now records its training step and replays it "
                  "(experiments/recording), faster than --jit was; leave it out"}

#: options that may differ when a run is resumed (the rest must match the saved config)
RESUMABLE = frozenset(f.name for f in dataclasses.fields(Config) if f.metadata["resumable"])


def _check(f: dataclasses.Field, value) -> None:
    """Refuse ``value`` outside the range or choices that field ``f`` declares."""
    rule, flag = f.metadata, flag_of(f.name)
    if rule["at_least"] is not None and value is not None and value < rule["at_least"]:
        raise UserError(f"{flag} must be at least {rule['at_least']} (got {value})")
    if rule["at_most"] is not None and value is not None and value > rule["at_most"]:
        raise UserError(f"{flag} must be at most {rule['at_most']} (got {value})")
    if rule["positive"] and not value > 0:
        raise UserError(f"{flag} must be positive (got {value})")
    if rule["between"] is not None and not rule["between"][0] < value < rule["between"][1]:
        low, high = rule["between"]
        raise UserError(f"{flag} must lie strictly between {low} and {high} (got {value})")
    if rule["choices"] is not None and value not in rule["choices"]:
        raise UserError(f"{flag} must be one of {', '.join(rule['choices'])} (got {value!r})")


def flag_of(name: str) -> str:
    """The command-line flag of field ``name``: ``--num-train`` for ``num_train``."""
    return "--" + name.replace("_", "-")


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
