"""Approximate posteriors q(z|x), each a Pyro guide, registered by the name users type."""
from guides.categorical import CategoricalGuide
from guides.enum import EnumGuide
from guides.normal import NormalGuide

GUIDES = {
    "normal": NormalGuide,
    "categorical": CategoricalGuide,
    "enum": EnumGuide,
}

__all__ = ["GUIDES"]
