"""Sphinx configuration for depot's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import depot  # noqa: E402

project = "depot"
release = depot.__version__
version = ".".join(release.split(".")[:2])
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
