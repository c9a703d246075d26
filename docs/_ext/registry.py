"""``.. registry:: models.MODELS``: one section per entry of a registry dict (the name users
type, then the class's own docstring through autodoc), so a part registered later appears in
the API reference without editing a page."""
import importlib

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles


class Registry(Directive):
    required_arguments = 1         # dotted path of the dict, e.g. models.MODELS

    def run(self):
        module, _, name = self.arguments[0].rpartition(".")
        registry = getattr(importlib.import_module(module), name)
        lines = []
        for key, cls in registry.items():
            if cls.__module__ == "__main__":    # registered by a script (an example) run here
                continue
            lines += [f"``{key}``", "-" * (len(key) + 4), "",
                      f".. autoclass:: {cls.__module__}.{cls.__qualname__}",
                      "   :members:", "   :show-inheritance:", ""]
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=self.arguments[0]), node)
        return node.children


def setup(app):
    app.add_directive("registry", Registry)
    return {"parallel_read_safe": True}
