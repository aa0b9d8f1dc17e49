"""The backend registry: entry points are listed without importing, and loaded on request."""

from __future__ import annotations

import subprocess
import sys

from tp_spec.backend import load_backends, registered_backend_names


def test_names_are_listed_without_loading():
    names = registered_backend_names()
    assert names == sorted(set(names))
    if "numpy" in names:  # tp-conformance installed
        errors: dict[str, str] = {}
        loaded = load_backends(errors, names=["numpy"])
        assert set(loaded) == {"numpy"} and not errors


def test_loading_one_backend_imports_no_other_framework():
    """Selecting the NumPy reference must not import torch or jax (entry points of the other
    backends stay unloaded)."""
    code = ("import sys; from tp_spec.backend import load_backends, registered_backend_names;"
            "assert 'numpy' in registered_backend_names() or sys.exit(0);"
            "load_backends(names=['numpy']);"
            "print(sorted(m for m in ('torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("[]", ""), out.stdout
