"""Vector spherical harmonics (VSH): the vector fields on the sphere that the VSTP reads
features as (:mod:`tp_spec.vstp`, docs/families.md).

A vector field ``F: S^2 -> R^3`` whose three Cartesian components (the ``1`` irrep basis,
``x, y, z``) are spherical functions of degree ``l`` decomposes, like ``1 x l``, into degrees
``J = |l - 1| .. l + 1``. The VSH of degree ``J`` built from degree ``l`` is::

    V^{J,l}_m(s) = sum_{i, a} Q^{J,l}[i, a, m] e_i Y_{l,a}(s),
    Q^{J,l} = sqrt(2J + 1) * clebsch_gordan(1, l, J)            (3, 2l + 1, 2J + 1)

with ``component`` spherical harmonics, so that ``(1/4pi) int V^{J,l}_m . V^{J',l'}_{m'} = delta``.
A field has a *vector parity* ``P``: ``+1`` for a pseudovector field, ``-1`` for a true vector
field (the ``1e`` / ``1o`` of its values). ``V^{J,l}`` in a field of parity ``P`` transforms as
the irrep ``(J, P * (-1)**l)``; :func:`slots` lists the degrees ``l`` through which an irrep
``(J, p)`` enters a field of parity ``P``: ``l = J`` when ``p * (-1)**J == P`` (the tangential
"curl" harmonic), ``l = J - 1, J + 1`` when ``p * (-1)**J == -P`` (the radial and gradient
pair), and for ``J = 0`` only ``l = 1`` (the radial field ``s``) when ``p == -P``.

>>> slots(1, -1, -1), slots(1, 1, -1), slots(0, 1, -1)   # 1o, 1e, 0e in a true vector field
((0, 2), (1,), (1,))
>>> q = coupling(1, 0)                                   # V^{1,0}_m = e_m: constant fields
>>> bool(np.allclose(q[:, 0, :], np.eye(3)))
True
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from .clebsch_gordan import clebsch_gordan
from .errors import InstructionError

__all__ = ["coupling", "embedding", "field_degree", "slots"]


def _check_parity(name: str, value: Any) -> int:
    if isinstance(value, bool) or value not in (1, -1):
        raise InstructionError(f"{name} must be +1 or -1, got {value!r}")
    return int(value)


def slots(J: int, p: int, P: int) -> tuple[int, ...]:
    """Degrees ``l`` of the VSH ``V^{J,l}`` of irrep ``(J, p)`` in a field of vector parity
    ``P`` (module docstring), ascending; empty if the irrep does not occur there."""
    if isinstance(J, bool) or not isinstance(J, (int, np.integer)) or J < 0:
        raise InstructionError(f"J must be a non-negative int, got {J!r}")
    p, P = _check_parity("p", p), _check_parity("P", P)
    return tuple(l for l in (J - 1, J, J + 1)
                 if l >= 0 and abs(l - 1) <= J <= l + 1 and P * (-1) ** l == p)


@cache
def _coupling(J: int, l: int) -> np.ndarray:
    q = np.sqrt(2 * J + 1) * np.asarray(clebsch_gordan(1, l, J), dtype=np.float64)
    q.setflags(write=False)
    return q


def coupling(J: int, l: int) -> np.ndarray:
    """``Q^{J,l}`` ``(3, 2l + 1, 2J + 1)``, read-only: the Cartesian SH coefficients of
    ``V^{J,l}_m`` (column ``m``); orthonormal columns."""
    if not (isinstance(J, (int, np.integer)) and isinstance(l, (int, np.integer))
            and J >= 0 and l >= 0 and abs(l - 1) <= J <= l + 1):
        raise InstructionError(f"no vector spherical harmonic of degree J={J!r} from l={l!r}")
    return _coupling(int(J), int(l))


def field_degree(irreps: Any) -> int:
    """Highest degree of the Cartesian components of the fields of ``irreps``' nonscalar
    blocks (``lmax + 1``; 0 when every block is a scalar)."""
    ls = [ir.l for _, ir in irreps if ir.l > 0]
    return max(ls) + 1 if ls else 0


def embedding(irreps: Any, P: int, lmax: int, *, scalars: bool = False) -> np.ndarray:
    """``(n, 3, (lmax + 1)**2)``: one channel's features of ``irreps`` (``n = sum of 2J + 1``,
    block after block, every block counted once whatever its multiplicity) -> the Cartesian
    SH coefficients (index ``l*l + l + a``) of the field of vector parity ``P``: every block
    ``(J, p)`` enters with coefficient 1 in each of its :func:`slots` (scalar blocks only if
    ``scalars``). Read back by the transpose: ``z_m = sum Q[i, a, m] c_{i, (l, a)}``."""
    P = _check_parity("P", P)
    n = sum(ir.dim for _, ir in irreps)
    out = np.zeros((n, 3, (lmax + 1) ** 2))
    row = 0
    for _, ir in irreps:
        if ir.l > 0 or scalars:
            for l in slots(ir.l, ir.p, P):
                if l > lmax:
                    raise InstructionError(
                        f"embedding: {ir!r} needs field degree {l} > lmax = {lmax}")
                out[row:row + ir.dim, :, l * l:(l + 1) ** 2] += coupling(ir.l, l).transpose(2, 0, 1)
        row += ir.dim
    return out
