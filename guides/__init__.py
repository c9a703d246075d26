"""Approximate posteriors q(z|x), each a Pyro guide, registered by the name users type."""
from guides.flow import FlowGuide
from guides.local import LocalGuide
from guides.mvn import MultivariateNormalGuide
from guides.normal import NormalGuide
from guides.relaxed import RelaxedCategoricalGuide

GUIDES = {
    "normal": NormalGuide,
    "mvn": MultivariateNormalGuide,
    "flow": FlowGuide,
    "relaxed": RelaxedCategoricalGuide,
    "local": LocalGuide,
}

__all__ = ["GUIDES"]
