"""The README is a front door: short, and every file it links exists. (The site itself is
checked by its build, ``make docs``, which turns every broken reference into an error.)"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


def test_every_file_the_readme_links_exists():
    targets = [m["target"] for m in LINK.finditer(README.read_text())
               if not m["target"].startswith(("http://", "https://"))]
    assert len(targets) >= 15
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing

