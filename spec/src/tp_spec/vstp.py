"""The vector-signal tensor product (VSTP) descriptor: multiply two vector fields on the sphere
by the pointwise cross product, project back (Xie et al., "The Price of Freedom", ICML 2025,
their "vector Gaunt" product; docs/families.md).

Reading: every nonscalar block ``(J, p)`` of a channel of ``x`` enters two vector fields, one
of each vector parity ``P`` (``+1``: pseudovector field, ``-1``: true vector field), with
coefficient 1 on each of its vector spherical harmonics ``V^{J,l}`` there
(:func:`tp_spec.vsh.slots`: ``l = J`` in the field ``P = p (-1)**J``, ``l = J -+ 1`` in the
other). The output fields are ``H_{+} = F1_{+} x F2_{+} + F1_{-} x F2_{-}`` and
``H_{-} = F1_{+} x F2_{-} + F1_{-} x F2_{+}`` (all four field-parity pairs; the paper's model
uses three), and::

    VSTP(x1, x2)_{J3 m3} = sum_P sum_{l in slots(J3, p3, P)} (1/4pi) int V^{J3,l}_{m3} . H_P

The scalar blocks do not enter the fields: they go through a CGTP of their own,
``(0, p1) x (0, p2) -> (0, p1 p2)`` with coefficient 1 (as in the paper's model). Scalar x
nonscalar products do not exist.

As a CGTP (:meth:`VSTPDescriptor.as_cgtp`) a path ``(J1, p1) x (J2, p2) -> (J3, p1 p2)``
(``J1, J2 >= 1``) has the coefficient ``c`` with::

    c * clebsch_gordan(J1, J2, J3) = sum_{P1, P2} sum_{l1, l2, l3} eps_ijk
        Q^{J1,l1}[i, a, :] Q^{J2,l2}[j, b, :] Q^{J3,l3}[k, c, :] G_{l1 l2 l3}[a, b, c]

(``l1 in slots(J1, p1, P1)``, ``l2 in slots(J2, p2, P2)``, ``l3 in slots(J3, p3, P1 P2)``;
``G = sqrt(4pi) * gaunt`` the Gaunt table of component harmonics, :func:`vstp_coefficient`).
Unlike GTP, paths of both ``J1 + J2 + J3`` parities exist: ``1o x 1o -> 1e`` is the cross
product. :func:`tp_spec.reference.apply` computes the VSTP on a quadrature grid instead.

Channels and per-degree weights: as :func:`tp_spec.gtp` (each irrep at most once per input
and output; ``x1`` blocks all of multiplicity ``C``, ``x2`` all ``C`` or 1).

>>> vstp("1o", "1o").irreps_out                      # only the cross product
1x1e
>>> d = vstp("4x0e + 4x1o", "0e + 1o + 2e", per_degree_weights=True)
>>> d.irreps_out, d.weight_numel
(4x0e+4x1e+4x2o+4x3o, 27)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from .cgtp import CGTPDescriptor
from .errors import InstructionError
from .gtp import (
    ChannelwiseFixedDescriptor,
    _check_channels,
    _check_flag,
    _check_output,
)
from .irreps import Irrep, Irreps
from .vsh import coupling, field_degree, slots

__all__ = ["VSTPDescriptor", "vstp", "vstp_coefficient"]

#: A coefficient below this (relative to the largest Gaunt-scale entry, 1) is an exact zero
#: left over by cancellation in floating point.
ZERO_TOL = 1e-12

_EPS = np.zeros((3, 3, 3))
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    _EPS[_i, _j, _k], _EPS[_i, _k, _j] = 1.0, -1.0


@cache
def _slot_tensor(J1: int, l1: int, J2: int, l2: int, J3: int, l3: int) -> np.ndarray:
    """``(2J1+1, 2J2+1, 2J3+1)``: ``(1/4pi) int V^{J3,l3} . (V^{J1,l1} x V^{J2,l2})``."""
    from .gaunt import gaunt

    if not abs(l1 - l2) <= l3 <= l1 + l2 or (l1 + l2 + l3) % 2:
        return np.zeros((2 * J1 + 1, 2 * J2 + 1, 2 * J3 + 1))
    g = math.sqrt(4 * math.pi) * np.asarray(gaunt(l1, l2, l3), dtype=np.float64)
    # einsum("ijk,iau,jbv,kcw,abc->uvw") as BLAS contractions, the Levi-Civita one early
    t = np.tensordot(g, coupling(J1, l1), axes=([0], [1]))  # (b, c, i, u)
    t = np.tensordot(t, coupling(J2, l2), axes=([0], [1]))  # (c, i, u, j, v)
    t = np.tensordot(t, _EPS, axes=([1, 3], [0, 1]))  # (c, u, v, k)
    t = np.tensordot(t, coupling(J3, l3), axes=([0, 3], [1, 0]))  # (u, v, w)
    t.setflags(write=False)
    return t


@cache
def vstp_coefficient(ir1: Irrep, ir2: Irrep, ir3: Irrep) -> float:
    """The CGTP coefficient of the VSTP path ``ir1 x ir2 -> ir3`` (module docstring; 0 where
    there is no path). Scalar x scalar: 1; scalar x nonscalar: 0. Raises
    :class:`InstructionError` if the projected tensor is not a multiple of the CG table
    (to 1e-12): a broken coupling, never expected."""
    from .clebsch_gordan import clebsch_gordan

    ir1, ir2, ir3 = Irrep(ir1), Irrep(ir2), Irrep(ir3)
    if ir3 not in ir1 * ir2:
        return 0.0
    if ir1.l == 0 or ir2.l == 0:
        return 1.0 if ir1.l == ir2.l == 0 else 0.0
    t = np.zeros((ir1.dim, ir2.dim, ir3.dim))
    for P1 in (1, -1):
        for P2 in (1, -1):
            for l1 in slots(ir1.l, ir1.p, P1):
                for l2 in slots(ir2.l, ir2.p, P2):
                    for l3 in slots(ir3.l, ir3.p, P1 * P2):
                        t += _slot_tensor(ir1.l, l1, ir2.l, l2, ir3.l, l3)
    cg = np.asarray(clebsch_gordan(ir1.l, ir2.l, ir3.l), dtype=np.float64)
    c = float(np.sum(t * cg) / np.sum(cg * cg))
    if np.max(np.abs(t - c * cg)) > ZERO_TOL:
        raise InstructionError(  # pragma: no cover - Schur's lemma
            f"vstp: the coupling of {ir1!r} x {ir2!r} -> {ir3!r} is not a multiple of CG")
    return 0.0 if abs(c) < ZERO_TOL else c


@dataclass(frozen=True)
class VSTPDescriptor(ChannelwiseFixedDescriptor):
    """A vector-signal tensor product (module docstring). Build it with :func:`vstp`."""

    kind = "vstp"

    @property
    def vector_active(self) -> bool:
        """True if both inputs have a nonscalar block and some output is reached by the
        vector fields (otherwise only the scalar CGTP part computes)."""
        return any(p.ir_in1.l > 0 for p in self.paths)

    def field_degrees(self) -> tuple[int, int, int]:
        """``(L1 + 1, L2 + 1, Lo + 1)``: the highest Cartesian-component degrees of the two
        input fields and of the output VSH (``L`` over the nonscalar blocks; 0 if none),
        :func:`tp_spec.vsh.field_degree`; the output's scalars read ``V^{0,1}`` (degree 1)."""
        lo = max([ir.l + 1 for _, ir in self.irreps_out], default=0)
        return field_degree(self.irreps_in1), field_degree(self.irreps_in2), lo

    def grid_shape(self) -> tuple[int, int]:
        """Minimal exact Gauss-Legendre x uniform grid ``(n_theta, n_phi)`` for the fields
        of :meth:`field_degrees` (``s2grid_for(*field_degrees())``)."""
        total = sum(self.field_degrees())
        return ((total + 2) // 2, total + 1)


def vstp(
    irreps_in1: Irreps | str,
    irreps_in2: Irreps | str,
    irreps_out: Irreps | str | None = None,
    *,
    per_degree_weights: bool = False,
) -> VSTPDescriptor:
    """Describe a vector-signal tensor product (module docstring: reading, paths, channels).

    ``irreps_out=None``: every irrep reached by a path with a nonzero coefficient,
    multiplicity ``C``, once each, sorted. Given: blocks of multiplicity ``C``, each irrep
    once; outputs reached by no path are zero. Raises :class:`InstructionError` naming the
    violated channel rule.
    """
    irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    _check_flag("vstp", "per_degree_weights", per_degree_weights)
    channels, channels_in2 = _check_channels("vstp", irreps_in1, irreps_in2)
    if irreps_out is None:
        found = {ir3 for _, ir1 in irreps_in1 for _, ir2 in irreps_in2 for ir3 in ir1 * ir2
                 if vstp_coefficient(ir1, ir2, ir3) != 0.0}
        irreps_out = Irreps([(channels, ir) for ir in sorted(found)])
    else:
        irreps_out = Irreps(irreps_out)
        _check_output("vstp", irreps_out, channels)
    mode = "uuu" if channels_in2 == channels else "uvu"
    specs = []
    for i1, (_, ir1) in enumerate(irreps_in1):
        for i2, (_, ir2) in enumerate(irreps_in2):
            for io, (_, ir3) in enumerate(irreps_out):
                coef = vstp_coefficient(ir1, ir2, ir3)
                if coef != 0.0:
                    specs.append((i1, i2, io, mode, bool(per_degree_weights), coef))
    cg = CGTPDescriptor.from_paths(irreps_in1, irreps_in2, irreps_out, specs)
    return VSTPDescriptor(irreps_in1, irreps_in2, irreps_out, cg.paths, bool(per_degree_weights),
                          channels, channels_in2)
