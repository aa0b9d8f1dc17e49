"""Sphinx configuration for the equivariant tensor products documentation."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

project = "Equivariant tensor products (tp-spec, tp-jax, tp-torch)"
author = "The tp developers"
copyright = "2026, the tp developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "tp_tables",
]
myst_enable_extensions = ["dollarmath", "amsmath"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
autodoc_typehints = "description"
napoleon_use_ivar = True  # "Attributes:" sections as field lists (no duplicate entries)
autodoc_member_order = "bysource"
# torch's generic extra_repr and Flax's dataclass field param_dtype (jnp.float32's docstring)
autodoc_default_options = {"exclude-members": "extra_repr, param_dtype"}
# Optional libraries of the integrations and adapters: imported only when called, mocked here so
# that a build without them never fails on an import.
autodoc_mock_imports = [
    "cuequivariance", "cuequivariance_jax", "cuequivariance_torch", "e3nn", "e3nn_jax",
    "mace", "nequip", "openequivariance", "s2fft",
]
nitpicky = False
html_theme = "alabaster"
html_static_path: list[str] = []
# The generated pages include Markdown tables from the benchmark results.
suppress_warnings = ["myst.header"]
