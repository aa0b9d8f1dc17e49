"""The matrix tensor product (MTP, e3x ``FusedTensor``): embed as matrices, multiply, decompose.

With ``lt = ceil(max(L1, L2, Lout) / 2)`` and ``n = 2 lt + 1``, the basis matrices

    B^(l)_m = sqrt(2l + 1) * C(lt, lt, l)[:, :, m],   l = 0 .. 2 lt

(:func:`mtp_basis`, ``C`` = :func:`tp_spec.clebsch_gordan`) are a Frobenius-orthonormal basis of
``R^{n x n}``, symmetric for even ``l`` and antisymmetric for odd ``l``. Each input is split by
parity ``p`` into an even part (irreps with ``p = +1``) and an odd part (``p = -1``), each embedded
as ``X = sum x_lm B^(l)_m`` (per channel). The four products ``X1e X2e + X1o X2o`` (even) and
``X1e X2o + X1o X2e`` (odd) are read out as

    z_{(l, p)} = s * <B^(l)_m, Z_p>_F,     s = sqrt(n)

The scale ``s = sqrt(n)`` makes ``0e`` the unit (``B^(0) = I / sqrt(n)``): ``MTP(x, e0) = x``.
As a CGTP (the identity in docs/families.md) a path ``(l1, p1) x (l2, p2) -> (l3, p1 p2)`` has the
coefficient

    s * (-1)**l3 * sqrt((2l1+1)(2l2+1)(2l3+1)) * {l1 l2 l3; lt lt lt}

times ``C(l1, l2, l3)``; paths with a zero 6j symbol are dropped. Matrix products do not commute,
so odd-sum (antisymmetric) paths such as ``1o x 1o -> 1e`` are reached.

Channels and per-degree weights follow :mod:`tp_spec.gtp` exactly.

>>> d = mtp("0e + 1o", "0e + 1o")
>>> d.lt, d.n, d.irreps_out
(1, 3, 1x0e+1x1o+1x1e+1x2e)
>>> [(p.ir_in1, p.ir_in2, p.ir_out) for p in d.paths if p.ir_out == Irrep("1e")]
[(1o, 1o, 1e)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cgtp import CGTPDescriptor
from .errors import InstructionError
from .gtp import (
    ChannelwiseFixedDescriptor,
    _check_channels,
    _check_flag,
    _check_output,
    _default_outputs,
)
from .irreps import Irrep, Irreps

__all__ = ["MTPDescriptor", "mtp", "mtp_basis", "mtp_coefficient"]


def mtp_basis(lt: int, l: int) -> np.ndarray:
    """``B^(l)`` for matrices of size ``n = 2 lt + 1``: float64 ``(n, n, 2l + 1)``,
    ``B[:, :, m + l] = sqrt(2l + 1) * C(lt, lt, l)[:, :, m + l]`` (``0 <= l <= 2 lt``).

    >>> b = mtp_basis(1, 0)
    >>> bool(np.allclose(b[:, :, 0], np.eye(3) / np.sqrt(3)))
    True
    """
    from .clebsch_gordan import clebsch_gordan

    return math.sqrt(2 * l + 1) * clebsch_gordan(lt, lt, l)


def mtp_coefficient(l1: int, l2: int, l3: int, lt: int) -> float:
    """Path coefficient ``sqrt(2lt+1) (-1)^l3 sqrt((2l1+1)(2l2+1)(2l3+1)) {l1 l2 l3; lt lt lt}``.

    >>> mtp_coefficient(0, 0, 0, 1)  # the unit path: sqrt(3) * (1/3) * sqrt(3)
    1.0
    """
    from .sqrt_rational import SqrtRational
    from .wigner_6j import wigner_6j

    sixj = wigner_6j(l1, l2, l3, lt, lt, lt)
    if not sixj:
        return 0.0
    factor = SqrtRational(1, (2 * lt + 1) * (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1), 1)
    value = float(sixj * factor)
    return -value if l3 % 2 else value


@dataclass(frozen=True)
class MTPDescriptor(ChannelwiseFixedDescriptor):
    """A matrix tensor product (see the module docstring). Build it with :func:`mtp`."""

    kind = "mtp"
    lt: int = 0

    @property
    def n(self) -> int:
        """Matrix size ``2 lt + 1``."""
        return 2 * self.lt + 1

    @property
    def scale(self) -> float:
        """The read-out scale ``s = sqrt(n)`` (makes ``0e`` the unit)."""
        return math.sqrt(self.n)

    def basis(self, l: int) -> np.ndarray:
        """:func:`mtp_basis` ``(self.lt, l)``: ``(n, n, 2l + 1)``."""
        return mtp_basis(self.lt, l)


def mtp(
    irreps_in1: Irreps | str,
    irreps_in2: Irreps | str,
    irreps_out: Irreps | str | None = None,
    *,
    per_degree_weights: bool = False,
    lt: int | None = None,
) -> MTPDescriptor:
    """Describe a matrix tensor product (module docstring); channel rules as :func:`tp_spec.gtp`.

    ``lt``: the matrices are ``(2 lt + 1) x (2 lt + 1)``; default
    ``ceil(max(L1, L2, Lout) / 2)``, the smallest that holds every degree. The operation depends
    on ``lt``: asking for higher output degrees than the default grows the matrices and changes
    every path coefficient, so pass ``lt`` explicitly to keep one operation while changing
    ``irreps_out``.

    ``irreps_out=None``: every ``(l, p)`` with ``l <= 2 lt`` reachable by a path with a nonzero
    6j symbol, multiplicity ``C``, sorted (natural order). Given: blocks of multiplicity ``C``,
    each irrep once.
    """
    irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    _check_flag("mtp", "per_degree_weights", per_degree_weights)
    channels, channels_in2 = _check_channels("mtp", irreps_in1, irreps_in2)
    lmax_in = max(irreps_in1.lmax, irreps_in2.lmax)
    lmax_out = lmax_in if irreps_out is None or len(Irreps(irreps_out)) == 0 else max(
        lmax_in, Irreps(irreps_out).lmax)
    if lt is None:
        lt = (lmax_out + 1) // 2
    elif isinstance(lt, (bool, np.bool_)) or not isinstance(lt, (int, np.integer)) or lt < 0:
        raise InstructionError(
            f"mtp: lt must be None (the smallest that fits, here {(lmax_out + 1) // 2}) or a "
            f"non-negative int, got lt={lt!r} of type {type(lt).__name__}"
        )
    elif 2 * lt < lmax_out:
        raise InstructionError(
            f"mtp: lt={lt!r} is too small: (2 lt + 1)-dimensional matrices hold degrees up to "
            f"2 lt = {2 * lt}, but the inputs and outputs reach degree {lmax_out}; use lt >= "
            f"{(lmax_out + 1) // 2}"
        )
    lt = int(lt)
    if irreps_out is None:

        def keep(ir1: Irrep, ir2: Irrep, ir3: Irrep) -> bool:
            return ir3.l <= 2 * lt and mtp_coefficient(ir1.l, ir2.l, ir3.l, lt) != 0.0

        irreps_out = _default_outputs(
            ((a.ir, b.ir) for a in irreps_in1 for b in irreps_in2), keep, channels)
    else:
        irreps_out = Irreps(irreps_out)
        _check_output("mtp", irreps_out, channels)
    mode = "uuu" if channels_in2 == channels else "uvu"
    specs = []
    for i1, (_, ir1) in enumerate(irreps_in1):
        for i2, (_, ir2) in enumerate(irreps_in2):
            for io, (_, ir3) in enumerate(irreps_out):
                if ir3 in ir1 * ir2:
                    coef = mtp_coefficient(ir1.l, ir2.l, ir3.l, lt)
                    if coef != 0.0:
                        specs.append((i1, i2, io, mode, bool(per_degree_weights), coef))
    cg = CGTPDescriptor.from_paths(irreps_in1, irreps_in2, irreps_out, specs)
    return MTPDescriptor(irreps_in1, irreps_in2, irreps_out, cg.paths, bool(per_degree_weights),
                         channels, channels_in2, lt)
