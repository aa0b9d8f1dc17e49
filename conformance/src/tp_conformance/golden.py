"""Golden vectors: inputs, weights and float64 reference outputs for a fixed catalogue subset.

One ``<case>.npz`` per case tagged ``golden`` (:data:`tp_conformance.cases.GOLDEN`) with arrays
``x1``, ``x2``, ``weights`` (empty ``(0,)`` if none), ``out`` and the descriptor's irreps as
strings. Inputs come from ``numpy.random.default_rng(seed)`` (seed fixed per case), outputs from
``tp_spec.reference.apply`` in float64. Regenerate with
``python conformance/golden/generate.py`` (the test ``test_golden.py`` checks that regeneration
reproduces the committed files).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import tp_spec as spec

from .cases import GOLDEN, get_case, random_inputs

__all__ = ["GOLDEN_DIR", "generate", "golden_arrays", "load"]

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden"
BATCH = (4,)


def golden_arrays(name: str) -> dict[str, np.ndarray]:
    """The golden record of case ``name``, computed now."""
    d = get_case(name).descriptor
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x1, x2, w = random_inputs(d, BATCH, rng)
    out = spec.reference.apply(d, x1, x2, w)
    return {
        "x1": x1, "x2": x2, "weights": np.zeros(0) if w is None else w, "out": out,
        "irreps_in1": np.array(str(d.irreps_in1)), "irreps_in2": np.array(str(d.irreps_in2)),
        "irreps_out": np.array(str(d.irreps_out)),
    }


def load(name: str, directory: Path | None = None) -> dict[str, np.ndarray]:
    with np.load((directory or GOLDEN_DIR) / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def generate(directory: Path | None = None) -> list[Path]:
    """Write every golden file; return the paths."""
    directory = Path(directory or GOLDEN_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in GOLDEN:
        path = directory / f"{name}.npz"
        np.savez_compressed(path, **golden_arrays(name))
        written.append(path)
    return written
