"""Sphinx configuration: the API reference from intquant's docstrings, plus the Markdown docs.

Build with ``make docs`` (warnings are errors). Nothing is fetched from the network: no
intersphinx, so references to numpy, torch, onnx and dask types render as plain text. For the
same reason the build is not nitpicky (``-n``): those types could never resolve.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Document the source tree next to this file, whichever intquant is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import intquant

project = "intquant"
author = "intquant contributors"
copyright = "intquant contributors"
release = intquant.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

# autodoc: real imports (torch, onnx, onnxruntime and dask are in the development venv; the
# intquant modules import them lazily anyway). Signatures keep the seed's spelling.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# numpydoc: no "Methods"/"Attributes" summary tables above each class; autodoc's :members: already
# documents every member in full right below it.
numpydoc_show_class_members = False

# MyST: headings get anchors so that Markdown pages can link to sections.
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"intquant {release}"
