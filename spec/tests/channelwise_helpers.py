"""Builders shared by the GTP and MTP tests (channelwise descriptors and their inputs)."""

from __future__ import annotations

import numpy as np
import tp_spec as spec


def s2(L, cls=1):
    """Irreps 0..L of one parity class (``cls=1``: 0e+1o+2e..., ``-1``: 0o+1e+2o...)."""
    return spec.Irreps([(1, spec.Irrep(l, cls * (-1) ** l)) for l in range(L + 1)])


def times(irreps, c):
    """The same irreps with every multiplicity set to ``c``."""
    return spec.Irreps([(c, ir) for _, ir in spec.Irreps(irreps)])


def inputs(d, batch=(3,), seed=0, per_sample=False):
    """Random ``x1``, ``x2`` and (shared or per-sample) weights for descriptor ``d``."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=batch + (d.irreps_in1.dim,))
    x2 = rng.normal(size=batch + (d.irreps_in2.dim,))
    w = None
    if d.weight_numel:
        w = rng.normal(size=(batch if per_sample else ()) + (d.weight_numel,))
    return x1, x2, w


def block(x, irreps, ir):
    """The component slice of irrep ``ir`` (present once) in a feature array."""
    irreps = spec.Irreps(irreps)
    for s, (_, ir2) in zip(irreps.slices(), irreps, strict=True):
        if ir2 == spec.Irrep(ir):
            return x[..., s]
    raise KeyError(ir)
