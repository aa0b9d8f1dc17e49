"""Expressivity, interactability and path counts (docs/expressivity.md).

**Interactability** of a descriptor: the set of irrep triples ``((l1,p1), (l2,p2), (l3,p3))``
connected by at least one path with a nonzero coefficient (of its emulating CGTP).

**Expressivity**: the dimension of the family ``{Lin_out o T o (Lin_1, Lin_2)}`` of equivariant
bilinear maps, where each ``Lin`` is an equivariant linear layer (per irrep type, a
``mul x mul`` matrix over all copies of that type) and ``T`` keeps its own weights. Every
equivariant bilinear map ``V1 x V2 -> Vout`` is, for each allowed irrep-type triple, a tensor
``c[u, v, w]`` (copies of ``ir1``, ``ir2``, ``ir3``) times the CG contraction, so the family is
the image of ``theta -> c(theta)`` with ``theta`` = (all Lin matrices, T's weights). Its
dimension is the generic rank of the Jacobian ``dc/dtheta``, computed at a random point.
Because ``c`` is affine in each single parameter (it is a product of Lin entries and weights,
each appearing at most once per term), the column of parameter ``k`` is exactly
``c(theta + e_k) - c(theta)``. The rank counts singular values above ``rtol * s_max``
(``rtol = 1e-9``).

**Path counts** for ``s2`` irreps ``0..L`` on both inputs and outputs up to ``2L``: all triangle
triples, the Gaunt-reachable ones (``l1 + l2 + l3`` even: ``(L+1)(L+2)(2L+3)/6``) and the odd-sum
ones (``L(L+1)(2L+1)/6``).

>>> path_counts(2)
{'all': 19, 'gaunt': 14, 'odd': 5}
>>> import tp_spec as spec
>>> expressivity(spec.gtp("0e + 1o", "0e + 1o"))      # 4L + 1 for L = 1
5
>>> ((1, -1), (1, -1), (1, 1)) in interactability(spec.mtp("1o", "1o"))   # the cross product
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .descriptor import Path, TensorProductDescriptor
from .irreps import Irrep, Irreps

__all__ = ["MAX_JACOBIAN_ENTRIES", "expressivity", "interactability", "path_counts"]

Triple = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def interactability(d: TensorProductDescriptor) -> set[Triple]:
    """``{((l1, p1), (l2, p2), (l3, p3))}`` of every path of ``d.as_cgtp()`` whose coefficient
    is nonzero and whose blocks are not empty (``p`` as +1 / -1)."""
    if not isinstance(d, TensorProductDescriptor):
        raise TypeError(
            f"interactability needs a tensor-product descriptor, got {type(d).__name__}"
        )
    return {
        ((p.ir_in1.l, p.ir_in1.p), (p.ir_in2.l, p.ir_in2.p), (p.ir_out.l, p.ir_out.p))
        for p in d.as_cgtp().paths
        if p.coefficient != 0.0 and p.mul_in1 > 0 and p.mul_in2 > 0 and p.mul_out > 0
    }


def path_counts(L: int) -> dict[str, int]:
    """Numbers of paths ``(l1, l2) -> l3`` for ``l1, l2 <= L`` (triangle rule, hence
    ``l3 <= 2L``), enumerated: ``all``, ``gaunt`` (``l1 + l2 + l3`` even), ``odd`` (odd sum).

    >>> [path_counts(L)["all"] for L in (1, 2, 3, 4)]
    [6, 19, 44, 85]
    """
    if isinstance(L, bool) or not isinstance(L, int) or L < 0:
        raise ValueError(f"L must be a non-negative int, got {L!r}")
    counts = {"all": 0, "gaunt": 0, "odd": 0}
    for l1 in range(L + 1):
        for l2 in range(L + 1):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                counts["all"] += 1
                counts["gaunt" if (l1 + l2 + l3) % 2 == 0 else "odd"] += 1
    return counts


def _copies(irreps: Irreps) -> tuple[dict[Irrep, int], list[int]]:
    """Total multiplicity per irrep type, and the first copy index of each block in its type."""
    total: dict[Irrep, int] = {}
    start = []
    for mul, ir in irreps:
        start.append(total.get(ir, 0))
        total[ir] = total.get(ir, 0) + mul
    return total, start


def _full_weight(p: Path, W: np.ndarray) -> np.ndarray:
    """The path's channel coupling as a dense ``(m1, m2, m_out)`` tensor."""
    m1, m2, mo = p.mul_in1, p.mul_in2, p.mul_out
    if p.mode == "uvw":
        return W
    if p.mode == "uvu":
        return np.einsum("uv,uw->uvw", W, np.eye(m1))
    if p.mode == "uvv":
        return np.einsum("uv,vw->uvw", W, np.eye(m2))
    if p.mode == "uuw":
        return np.einsum("uw,uv->uvw", W, np.eye(m1))
    if p.mode == "uuu":
        return np.einsum("u,uv,uw->uvw", W, np.eye(m1), np.eye(m1))
    # uvuv: output channel u * m2 + v
    return (W[:, :, None] * np.eye(mo).reshape(m1, m2, mo))


class _Family:
    """``theta -> c(theta)`` for ``Lin_out o T o (Lin_1, Lin_2)``."""

    def __init__(self, d: TensorProductDescriptor) -> None:
        self.d = d
        self.cg = d.as_cgtp()
        self.t1, self.s1 = _copies(d.irreps_in1)
        self.t2, self.s2 = _copies(d.irreps_in2)
        self.t3, self.s3 = _copies(d.irreps_out)
        self.triples = sorted(
            {(a, b, c) for a in self.t1 for b in self.t2 for c in self.t3 if c in a * b},
            key=lambda t: tuple((ir.l, ir.p) for ir in t),
        )
        # parameter layout: A1 per type, A2 per type, A3 per type, then T's weights
        self.layout: list[tuple[str, Any, int, tuple[int, ...]]] = []
        offset = 0
        for name, types in (("A1", self.t1), ("A2", self.t2), ("A3", self.t3)):
            for ir, m in types.items():
                self.layout.append((name, ir, offset, (m, m)))
                offset += m * m
        self.t_offset = offset
        self.size = offset + d.weight_numel

    def coefficients(self, theta: np.ndarray) -> np.ndarray:
        mats: dict[tuple[str, Any], np.ndarray] = {}
        for name, ir, off, shape in self.layout:
            mats[(name, ir)] = theta[off:off + shape[0] * shape[1]].reshape(shape)
        wt = theta[self.t_offset:]
        if self.cg is self.d:
            w_cg = wt if self.d.weight_numel else None
        else:
            w_cg = self.d.cgtp_weights(wt if self.d.weight_numel else None)  # type: ignore
        cT = {t: np.zeros((self.t1[t[0]], self.t2[t[1]], self.t3[t[2]])) for t in self.triples}
        for p in self.cg.paths:
            if p.has_weight:
                W = w_cg[p.weight_slice].reshape(p.weight_shape)  # type: ignore[index]
            else:
                from .descriptor import mode_weight_shape

                W = np.ones(mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out))
            u0, v0, w0 = self.s1[p.i_in1], self.s2[p.i_in2], self.s3[p.i_out]
            key = (p.ir_in1, p.ir_in2, p.ir_out)
            cT[key][u0:u0 + p.mul_in1, v0:v0 + p.mul_in2, w0:w0 + p.mul_out] += (
                p.coefficient * _full_weight(p, W))
        parts = []
        for a, b, c in self.triples:
            full = np.einsum("uvw,uU,vV,Ww->UVW", cT[(a, b, c)], mats[("A1", a)],
                             mats[("A2", b)], mats[("A3", c)])
            parts.append(full.ravel())
        return np.concatenate(parts) if parts else np.zeros(0)


#: Largest Jacobian (entries) :func:`expressivity` builds by default: 2e7 float64 entries are
#: 160 MB and a few seconds; model shapes with many channels (MACE's 128) would need ~1e13.
MAX_JACOBIAN_ENTRIES = 20_000_000


def expressivity(d: TensorProductDescriptor, *, seed: int = 0, rtol: float = 1e-9,
                 max_entries: int | None = MAX_JACOBIAN_ENTRIES) -> int:
    """Dimension of ``{Lin_out o T o (Lin_1, Lin_2)}`` (module docstring): the rank of the
    Jacobian of (Lin matrices, T's weights) -> coefficients in the CG path basis, at a random
    point (``seed``), singular values above ``rtol * s_max``.

    ``ValueError`` (before any work) when that Jacobian has more than ``max_entries`` entries
    (``None``: no bound); its size grows as the sixth power of the multiplicities.

    >>> import tp_spec as spec
    >>> expressivity(spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o + 1e + 2e", mode="uvw"))
    6
    """
    if not isinstance(d, TensorProductDescriptor):
        raise TypeError(f"expressivity needs a tensor-product descriptor, got {type(d).__name__}")
    fam = _Family(d)
    if fam.size == 0 or not fam.triples:
        return 0
    rows = sum(fam.t1[a] * fam.t2[b] * fam.t3[c] for a, b, c in fam.triples)
    if max_entries is not None and rows * fam.size > max_entries:
        raise ValueError(
            f"expressivity: the Jacobian of this descriptor has {rows} x {fam.size} = "
            f"{rows * fam.size:.3g} entries, over max_entries = {max_entries:.3g} (multiplicities "
            f"{d.irreps_in1} x {d.irreps_in2} -> {d.irreps_out}); pass max_entries=None to "
            "compute it anyway")
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=fam.size)
    base = fam.coefficients(theta)
    jac = np.empty((base.size, fam.size))
    for k in range(fam.size):
        shifted = theta.copy()
        shifted[k] += 1.0
        jac[:, k] = fam.coefficients(shifted) - base
    s = np.linalg.svd(jac, compute_uv=False)
    if s.size == 0 or s[0] == 0.0:
        return 0
    return int(np.sum(s > rtol * s[0]))
