"""Approximate posteriors q(z|x), each a Pyro guide, registered by the name users type."""
from guides.categorical import CategoricalGuide
from guides.chain import ChainGuide
from guides.enum import EnumGuide
from guides.flow import FlowGuide
from guides.iaf import IAFGuide
from guides.local import LocalGuide
from guides.m2 import M2EnumGuide, M2Guide
from guides.mvn import MultivariateNormalGuide
from guides.normal import NormalGuide
from guides.relaxed import RelaxedCategoricalGuide

GUIDES = {
    "normal": NormalGuide,
    "mvn": MultivariateNormalGuide,
    "flow": FlowGuide,
    "iaf": IAFGuide,
    "chain": ChainGuide,
    "relaxed": RelaxedCategoricalGuide,
    "local": LocalGuide,
    "categorical": CategoricalGuide,
    "enum": EnumGuide,
    "m2": M2Guide,
    "m2-enum": M2EnumGuide,
}

__all__ = ["GUIDES"]
