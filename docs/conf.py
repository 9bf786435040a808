"""Sphinx configuration of the semheat_widgets documentation site.

Built offline with warnings as errors (``sphinx-build -W``, see ``.ci/run``): the tutorials are the
notebooks of ``notebooks/`` executed at build time, the API pages come from the docstrings, the
command-line page from the real argument parser, and the figures pages from the JSON results kept
in ``benchmarks/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import semheat_widgets  # noqa: E402

project = "semheat_widgets"
author = "the semheat_widgets developers"
copyright = "2026, " + author
release = version = semheat_widgets.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
    "figure_tables",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# Tutorials: executed at build time so that they show what a user sees. The toy world they open
# comes from $SEMHEAT_TOY_DIR (unset, the user cache is used). CI executes every notebook once,
# in its notebook tests, and points $SEMHEAT_DOCS_NOTEBOOKS at the executed copies they keep:
# the site then shows those outputs instead of running the notebooks a second time.
EXECUTED = os.environ.get("SEMHEAT_DOCS_NOTEBOOKS")
nb_execution_mode = "off" if EXECUTED else os.environ.get("SEMHEAT_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = False

html_theme = "pydata_sphinx_theme"
html_title = "semheat_widgets"
html_theme_options = {
    "navigation_with_keys": True,
    "show_toc_level": 2,
    # Nothing from a CDN: the site must build and read offline.
    "icon_links": [],
}
html_static_path: list[str] = []


def _executed_tutorial(app, docname, source):
    """Serve a tutorial from the notebook tests' executed copy (same notebook, with outputs)."""
    if EXECUTED and docname.startswith("tutorials/") and docname != "tutorials/index":
        copy = Path(EXECUTED) / (docname.split("/", 1)[1] + ".ipynb")
        if not copy.is_file():
            from sphinx.errors import ExtensionError

            raise ExtensionError(f"no executed copy of {docname} in {EXECUTED} (did the "
                                 "notebook tests run with $SEMHEAT_DOCS_NOTEBOOKS set?)")
        source[0] = copy.read_text()


def setup(app):
    app.connect("source-read", _executed_tutorial)
