"""Sphinx configuration of ELBO Lab's documentation site (``make docs``).

The site is Markdown (MyST) in guide/, design/, results/ and lessons/, each folder globbed into
the contents, an API reference from the docstrings in api/, and the examples and executable
lessons rendered by sphinx-gallery. It builds offline, warnings as errors."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).parent / "_ext")]

project = "ELBO Lab"
author = "ELBO Lab contributors"
copyright = "the ELBO Lab contributors, Apache-2.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",          # MathJax copied into the site: formulas render offline
    "registry",
    "plaintext",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# results/<name>/ hold what a command wrote (tables.md, comparison.md): the pages include them
exclude_patterns = ["_build", "**/README.md", "results/*/**", "lessons/GALLERY_HEADER.rst",
                    "lessons/runs/**"]          # what the executed lessons trained
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3                # [text](page.md#a-heading) links resolve

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False     # torch.nn.Module.forward's is not about our parts
autodoc_default_options = {"undoc-members": False}
napoleon_use_param = True

html_theme = "furo"
html_title = "ELBO Lab"
html_static_path = []

# the examples (examples/) and lessons, executed at every build: sphinx-gallery writes each as a
# page with its output and figures, and as a downloadable .py and .ipynb
extensions.append("sphinx_gallery.gen_gallery")
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples"), "lessons"],
    "gallery_dirs": ["generated/examples", "generated/lessons"],
    "filename_pattern": r".*\.py$",           # execute every script, not only plot_*.py
    "ignore_pattern": r"__init__\.py",
    "reset_modules": ("matplotlib", "gallery_reset.reset_pyro"),
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 1,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",       # lesson 1 before lesson 2
}
