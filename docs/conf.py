"""Sphinx configuration for the anyloss documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The plot on each loss's page is drawn at build time by ``_ext/lossplots.py``:
the curves are computed by anyloss and the gradients by ``jax.grad``.
``_ext/memoryplot.py`` draws linear_cross_entropy's memory plot from the table on its page.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))

import anyloss  # noqa: E402

project = "anyloss"
author = "The anyloss developers"
copyright = "The anyloss developers"
version = release = anyloss.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax ships with the docs: formulas render without network
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# The docstrings use Google style ("Args:", "Returns:", "Example:") with math.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Type hints in the signatures, by the names the code gives them: ``Array`` (an array
# of any library) and ``Reduction`` ('none', 'mean' or 'sum'), both described on the
# losses' index page, rather than what they stand for (``Any``, a ``Literal``).
autodoc_typehints = "signature"
autodoc_type_aliases = {"Array": "Array", "Reduction": "Reduction"}
autodoc_member_order = "bysource"
add_module_names = False

# MathJax 3, from the sphinx-mathjax-offline package, copied into _static/mathjax.
mathjax_path = "mathjax/tex-chtml.js"

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Plots: PNG only, no links to their source, drawn in a fixed style.
plot_formats = [("png", 150)]
plot_html_show_formats = False
plot_html_show_source_link = False
plot_include_source = False
plot_working_directory = HERE
plot_pre_code = ""
plot_rcparams = {"figure.autolayout": False}

html_theme = "furo"
html_title = f"anyloss {release}"
html_static_path = ["_static"]
html_css_files = ["anyloss.css"]
html_theme_options = {"navigation_with_keys": True}
pygments_style = "sphinx"
pygments_dark_style = "monokai"
