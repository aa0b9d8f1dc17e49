"""Deliberately broken backends: test doubles proving that the suite catches real bugs.

Each wraps the NumPy reference (:class:`~tp_conformance.numpy_backend.NumpyBackend`) and
breaks exactly one thing; their derivatives are exact derivatives of their own (broken)
forward, so only the property that the bug violates fails:

* :class:`FlippedCGSignBackend`: one Clebsch-Gordan entry of one path has the wrong sign
  (breaks equality with the reference and equivariance).
* :class:`DroppedPathBackend`: one path is missing (still equivariant; breaks equality).
* :class:`WrongSecondDerivativeBackend`: forward and vjp are right; the force-loss gradient and
  the Hessian-vector product are slightly off (breaks the finite-difference checks).

They are not registered as entry points; ``conformance/tests/test_broken_backends.py`` runs the
checks on them and expects ``AssertionError``.
"""

from __future__ import annotations

import numpy as np
import tp_spec as spec
from tp_spec.cgtp import CGTPDescriptor

from .numpy_backend import NumpyBackend

__all__ = ["DroppedPathBackend", "FlippedCGSignBackend", "WrongSecondDerivativeBackend"]


def _as_cgtp(d, w):
    if d.kind == "cgtp":
        return d, w
    return d.as_cgtp(), (d.cgtp_weights(w) if d.weight_numel else None)


def _path_contribution(cg, index: int, x1, x2, w, entry=None) -> np.ndarray:
    """Output of path ``index`` alone; with ``entry = (a, b, c)`` only that CG entry's part."""
    p = cg.paths[index]
    single = CGTPDescriptor.from_paths(cg.irreps_in1, cg.irreps_in2, cg.irreps_out,
                                       [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight,
                                         p.coefficient)])
    ws = None if not p.has_weight or p.weight_numel == 0 else w[..., p.weight_slice]
    if ws is None and single.weight_numel:
        ws = np.zeros(single.weight_numel)
    if entry is None:
        return spec.reference.apply(single, x1, x2, ws)
    a, b, c = entry

    def mask(x, irreps, i, comp):
        m = np.zeros(irreps.dim)
        start = irreps.slices()[i].start
        mul, ir = irreps[i]
        for u in range(mul):
            m[start + u * ir.dim + comp] = 1.0
        return x * m

    out = spec.reference.apply(single, mask(x1, cg.irreps_in1, p.i_in1, a),
                               mask(x2, cg.irreps_in2, p.i_in2, b), ws)
    return mask(out, cg.irreps_out, p.i_out, c)


class FlippedCGSignBackend(NumpyBackend):
    """The largest entry of one path's CG table (the first path with ``l1, l2 >= 1``, else the
    first path) has its sign flipped."""

    name = "broken_cg_sign"

    def _forward(self, d, x1, x2, w):
        cg, cw = _as_cgtp(d, w)
        idx = next((i for i, p in enumerate(cg.paths) if min(p.lll[:2]) >= 1), 0)
        p = cg.paths[idx]
        table = spec.clebsch_gordan(*p.lll)
        entry = np.unravel_index(int(np.argmax(np.abs(table))), table.shape)
        delta = _path_contribution(cg, idx, x1, x2, cw, entry)
        return spec.reference.apply(d, x1, x2, w) - 2.0 * delta


class DroppedPathBackend(NumpyBackend):
    """The last path is missing."""

    name = "broken_dropped_path"

    def _forward(self, d, x1, x2, w):
        cg, cw = _as_cgtp(d, w)
        return spec.reference.apply(d, x1, x2, w) - _path_contribution(
            cg, len(cg.paths) - 1, x1, x2, cw)


class WrongSecondDerivativeBackend(NumpyBackend):
    """Right forward and vjp; the second-order results are off by 1e-3 relative."""

    name = "broken_second_derivative"

    def force_loss_grad(self, *args, **kwargs):
        g = super().force_loss_grad(*args, **kwargs)
        return (g[0], g[1] * (1 + 1e-3), g[2])

    def hvp(self, *args, **kwargs):
        g = super().hvp(*args, **kwargs)
        return (g[0] * (1 + 1e-3), g[1], g[2])
