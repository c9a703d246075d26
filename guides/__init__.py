"""Approximate posteriors q(z|x), each a Pyro guide, registered by the name users type."""
from guides.normal import NormalGuide

GUIDES = {
    "normal": NormalGuide,
}

__all__ = ["GUIDES"]
