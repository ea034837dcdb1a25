"""Sphinx configuration of the reference: ``python -m sphinx -W -b html docs docs/_build/html``
(``-W``: a warning, e.g. from a broken docstring, fails the build, as it fails CI)."""
import shutil
from pathlib import Path

import srgnn

# autosummary writes a page per module into generated/ and never removes one: start afresh, so
# that a module that was moved or removed leaves no page that fails to import.
shutil.rmtree(Path(__file__).parent / "generated", ignore_errors=True)

project = "srgnn"
release = version = srgnn.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinxarg.ext", "myst_parser"]
templates_path = ["_templates"]
# The reference and the guides that are part of it; the other pages are read on GitHub as they are.
include_patterns = ["index.rst", "reference.rst", "cli.rst", "generated/**", "your-graph.md", "distributed.md"]
exclude_patterns = ["_build"]
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
myst_heading_anchors = 3
html_theme = "alabaster"
suppress_warnings = ["myst.xref_missing"]
