"""Docstrings here are written as plain text with math in the seeds' notation, not as
reStructuredText. Before autodoc parses one, three habits of plain text are made to read as
the writer meant:

- a block indented under a paragraph (an aligned formula, a table of definitions) is shown as
  written, a literal block;
- a line indented under the line before it (a hanging indent in a reference list) continues
  that line's paragraph, unless the paragraph is a field (``:param x:``) or a list item;
- ``|`` (|x|, p(x|z)) and ``*`` before a name (``*event_shape``) are characters, not markup.
"""
import re

STAR_BEFORE_NAME = re.compile(r"(?<![*\w])\*(?=[A-Za-z_])(?![^*\n]*\*(?![*\w]))")
CONTAINER = re.compile(r"\s*(:[^:]+:|[-*] |\d+\. )")


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def escaped(line: str) -> str:
    """``line`` with ``|`` and a ``*`` before a name escaped, outside inline literals."""
    pieces = line.split("``")
    pieces[::2] = [STAR_BEFORE_NAME.sub(r"\*", p.replace("|", r"\|")) for p in pieces[::2]]
    return "``".join(pieces)


def plain_text(lines):
    out, literal, paragraph = [], None, None    # literal: the indent of a literal block
    for line in lines:
        if not line.strip():
            out.append(line)
            paragraph = None
            continue
        if literal is not None and indent(line) >= literal:
            out.append(line)
            continue
        literal = None
        previous = next((line_ for line_ in reversed(out) if line_.strip()), None)
        if previous is not None and indent(line) > indent(previous):
            if paragraph is None and not previous.rstrip().endswith("::"):
                out += ["::", ""]                      # paragraph, blank, then the block
                literal = indent(line)
                out.append(line)
                continue
            if paragraph is not None and not CONTAINER.match(paragraph):
                line = " " * indent(previous) + line.lstrip()
        if paragraph is None:
            paragraph = line
        out.append(escaped(line) if literal is None else line)
    return out


def process(app, what, name, obj, options, lines):
    lines[:] = plain_text(lines)


def setup(app):
    app.connect("autodoc-process-docstring", process, priority=400)
    return {"parallel_read_safe": True}
