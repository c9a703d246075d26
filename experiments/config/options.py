"""The command-line options of a training run, generated from ``Config``'s fields, for every
command that trains: a field's metadata gives its help, section, choices and how to read it
(``experiments.config.config.option``); a flag that is on by default turns off as
``--no-<name>``."""
import argparse
import dataclasses
import typing
from typing import Iterable, List, Optional

from experiments.common.errors import UserError
from experiments.config.config import RETIRED, Config, flag_of


def add_training_options(parser: argparse.ArgumentParser, suppress_defaults: bool = False,
                         exclude: Iterable[str] = ()) -> None:
    """Every ``Config`` field as an option, with the config's default (or none, to tell which
    options a user gave explicitly), but the fields in ``exclude`` (a command that sets them
    its own way, as the comparison's ``--elbos``)."""
    groups = {}
    skip = set(exclude)
    for f in dataclasses.fields(Config):
        title = f.metadata["group"]
        if title is not None and title not in groups:
            groups[title] = parser.add_argument_group(title)
        if f.name not in skip:
            flag, kwargs = _argument(f, suppress_defaults)
            (parser if title is None else groups[title]).add_argument(flag, **kwargs)
    for name in RETIRED:
        parser.add_argument(flag_of(name), dest=name, action=_Retired, nargs=0,
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class _Retired(argparse.Action):
    """A flag of an earlier version: refused with the reason it is no longer needed."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise UserError(f"{option_string} is retired: {RETIRED[self.dest]}")


def _argument(f: dataclasses.Field, suppress_default: bool):
    """The flag and ``add_argument`` keywords of field ``f``."""
    meta = f.metadata
    kwargs = dict(dest=f.name, default=argparse.SUPPRESS if suppress_default else f.default,
                  help=meta["help"])
    if f.type is bool:
        kwargs["action"] = "store_false" if f.default else "store_true"
        return (f"--no-{f.name.replace('_', '-')}" if f.default else flag_of(f.name)), kwargs
    kwargs["help"] += f" (default: {meta['shown_default']})"
    kwargs["type"] = meta["parse"] or _plain_type(f.type)
    if meta["choices"] is not None:
        kwargs["choices"] = list(meta["choices"])
    return flag_of(f.name), kwargs


def _plain_type(annotation) -> Optional[type]:
    """int for ``int`` and ``Optional[int]``; None (argparse's text) for ``str``."""
    if typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return None if annotation is str else annotation


def config_from_args(args: argparse.Namespace) -> Config:
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in names})


def explicit_options(parser_factory, argv: Optional[List[str]]) -> dict:
    """The options a user typed, without defaults: ``parser_factory(suppress_defaults=True)``."""
    args, _ = parser_factory(suppress_defaults=True).parse_known_args(argv)
    return vars(args)
