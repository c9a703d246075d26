"""Numbers quoted in the lessons' Markdown, filled in from docs/lessons/lessons.json.

A quoted number is its value followed by an invisible marker that names it and its format,

    the exact log-likelihood is -2.080<!--lesson1.exact_log_likelihood:.3f-->

and ``fill`` replaces the value before each marker, so no number in the text is typed by hand;
tests/test_lessons.py checks that the committed Markdown is what ``fill`` makes of the committed
JSON.
"""
import re
from pathlib import Path
from typing import List

from experiments.common.errors import UserError
from experiments.common.files import write_text

MARKER = re.compile(r"(?P<value>[-+0-9.,eE%]*)<!--(?P<key>[\w.-]+):(?P<spec>[^>]*?)-->")


def fill(text: str, numbers: dict) -> str:
    """``text`` with the value before every ``<!--key:spec-->`` marker replaced by
    ``format(numbers[lesson][name], spec)`` for key = ``lesson.name``."""
    def replace(match: re.Match) -> str:
        lesson, _, name = match["key"].partition(".")
        try:
            value = numbers[lesson][name]
        except KeyError:
            raise UserError(f"the lessons quote {match['key']}, which docs/lessons/lessons.json "
                            "does not hold: run `make lessons`, or fix the marker")
        return f"{format(value, match['spec'])}<!--{match['key']}:{match['spec']}-->"
    return MARKER.sub(replace, text)


def quoted_keys(text: str) -> List[str]:
    return [m["key"] for m in MARKER.finditer(text)]


def fill_lessons(docs: Path, numbers: dict) -> None:
    """Rewrite the quoted numbers of every docs/lessons/lesson*.md from ``numbers``, each file
    atomically, and only once all of them have been filled without error."""
    filled = {path: fill(path.read_text(), numbers) for path in sorted(docs.glob("lesson*.md"))}
    for path, text in filled.items():
        if text != path.read_text():
            write_text(path, text)
