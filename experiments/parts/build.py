"""Assemble a model, a guide and an ELBO estimator from their registered names (``build``), or
from a run's ``Config`` on a device (``build_parts``; ``parts_for`` the data a run trains on or a
checkpoint records): a run, a loaded run and the benchmarks build their parts here."""
from dataclasses import dataclass
from inspect import signature
from typing import Any, Optional

import torch
from pyro.infer import ELBO

from experiments.common.errors import UserError
from experiments.config.config import Config
from experiments.data.datasets import DataShape
from experiments.estimators import ELBOS
from experiments.parts.compatibility import check_combination, free_bits_error
from experiments.parts.namespaces import new_namespace, place
from experiments.parts.registries import check_names, construct, lookup
from guides import GUIDES
from guides.base import Guide
from models import MODELS, LatentVariableModel


@dataclass
class Parts:
    """The three independent parts of an experiment, ready for ``pyro.infer.SVI``."""

    model: LatentVariableModel
    guide: Guide
    elbo: ELBO


def build(model: str = "vae", guide: Optional[str] = None, elbo: Optional[str] = None, *,
          data_dim: int, num_data: Optional[int] = None, **options: Any) -> Parts:
    """The parts named ``model``, ``guide`` and ``elbo`` for data of dimension ``data_dim``
    (``num_data`` training points, which a non-amortized guide needs). Model and guide share a
    parameter namespace of their own (``experiments.parts.namespaces``): parts built apart never
    share a parameter.

    Each part's constructor receives exactly the ``options`` it names (``latent_dim``,
    ``hidden_dims``, ``num_particles``, …); the rest are ignored, so one flat set of options
    (a ``Config``'s fields) serves every combination. An option left out, the guide and the
    estimator too, takes ``Config``'s default for ``model`` (``LatentVariableModel.defaults``),
    so ``build`` and the command line build the same parts. An impossible
    combination, or a model that refuses its options (a ``ValueError``), is refused with a
    ``UserError`` in one line saying why and what would work.
    """
    resolved = Config(model=model, guide=guide, elbo=elbo)
    guide, elbo = resolved.guide, resolved.elbo
    check_names(model, guide, elbo)
    options = with_defaults(options, model)
    namespace = new_namespace()
    model_part = build_model(model, data_dim=data_dim, namespace=namespace, **options)
    check_combination(model, guide, elbo, model=model_part, **options)
    guide_part = place(construct(GUIDES[guide], model=model_part, num_data=num_data, **options),
                       namespace, "guide")
    share_encoder(model_part, guide_part, guide, elbo)
    if options["free_bits"] and free_bits_error(model_part, guide_part):
        raise UserError(free_bits_error(model_part, guide_part))
    estimator = ELBOS[elbo]
    # a minibatch whose every row is labeled enumerates nothing, which Pyro would warn of
    elbo_part = construct(estimator, max_plate_nesting=model_part.max_plate_nesting,
                          strict_enumeration_warning=not model_part.takes_labels, **options)
    return Parts(model_part, guide_part, elbo_part)


def build_model(name: str, *, data_dim: int, namespace: Optional[str] = None,
                **options: Any) -> LatentVariableModel:
    """The model called ``name`` alone (e.g. to time its exact log-likelihood), from the
    ``options`` its constructor names (``Config``'s defaults for the rest), in ``namespace``
    (default: a new one); a model that refuses its options (a ``ValueError``), or a network it
    cannot build (``network``), is refused in one line."""
    factory, options = lookup(MODELS, name, "model"), with_defaults(options, name)
    if options["prior"] != "standard" and "prior" not in signature(factory).parameters:
        takers = [m for m, cls in MODELS.items() if "prior" in signature(cls).parameters]
        raise UserError(f"--prior {options['prior']}: the {name} model keeps its own p(z)"
                        f"{' (its exact log p(x) needs it)' * factory.has_exact_log_likelihood}; "
                        f"--prior applies to {', '.join(takers)}")
    if options["network"] != "mlp" and "network" not in signature(factory).parameters:
        takers = [m for m, cls in MODELS.items() if "network" in signature(cls).parameters]
        raise UserError(f"--network {options['network']}: the {name} model's networks are MLPs "
                        f"only; --network applies to {', '.join(takers)}")
    try:
        model = construct(factory, data_dim=data_dim, **options)
    except ValueError as exc:
        raise UserError(f"--model {name}: {exc}") from None
    return place(model, namespace or new_namespace(), "model")


def share_encoder(model: LatentVariableModel, guide: Guide, guide_name: str,
                  elbo_name: str) -> None:
    """Hand a learned prior (``--prior mog|vamp``) what it needs, or refuse in one line: the
    VampPrior reads the guide's q(z|x) (an amortized guide), and neither has a KL in closed
    form against q (estimators with ``closed_form_kl``)."""
    learned = getattr(model, "learned_prior", None)
    if learned is None:
        return
    if ELBOS[elbo_name].closed_form_kl:
        raise UserError(f"{elbo_name} needs KL(q(z|x) ‖ p(z)) in closed form, which a mixture "
                        "prior does not have: use --elbo trace, or --prior standard")
    if hasattr(learned, "share_encoder"):
        if not guide.amortized:
            raise UserError(f"--prior vamp mixes the encoder's q(z|u_k), and the {guide_name} "
                            "guide has no encoder: use --guide normal, mvn, flow or iaf")
        learned.share_encoder(guide.mixture_component)


def build_parts(config: Config, data_dim: int, num_data: int, device: torch.device,
                **from_data) -> Parts:
    """The parts ``config`` names, for data of dimension ``data_dim``, on ``device``, with
    what they read off the data (``from_data``: ``parts_for``)."""
    parts = build(config.model, config.guide, config.elbo, data_dim=data_dim,
                  num_data=num_data, **from_data, **config.part_options())
    parts.model.to(device)
    parts.guide.to(device)
    return parts


def parts_for(config: Config, shape: DataShape, device: torch.device) -> Parts:
    """The parts ``config`` names for data of this ``shape`` (what a checkpoint records of the
    data), on ``device``, with what they read off it: the image shape (the cvae's quadrants,
    --network conv) and the number of classes of its labels (the ssvae's y). A run and a
    loaded run build them alike."""
    from_data = {"image_shape": shape.image_shape}
    if shape.num_classes is not None:
        from_data["num_classes"] = shape.num_classes
    return build_parts(config, shape.data_dim, shape.num_train, device, **from_data)


def with_defaults(options: dict, model: str) -> dict:
    """``options`` over ``Config``'s defaults for ``model``: the settings a part's constructor
    names take the command line's defaults, not the constructor's own."""
    defaults = Config(model=model).part_options()
    return {**defaults, **options}
