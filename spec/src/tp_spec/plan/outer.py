"""CGTP ``fused`` plan of the ``"outer"`` regime: every path unweighted ``uvuv`` or ``uuu`` (the
full CGTP, e3nn ``FullTensorProduct`` / e3nn-jax ``tensor_product``, and ``uuu``).

Without weights the whole product is one fixed bilinear form of the flat features::

    out[b, o] = sum_t c[t] * x1[b, a[t]] * x2[b, j[t]]   over the entries t with o[t] = o

whose entries are the nonzero Clebsch-Gordan entries of every path (coefficient folded in),
expanded over the channels (``uvuv``: every ``(u, v)``, ``uuu``: every ``u``). Real CG blocks
are sparse (MIMO ``s2(L)`` full product: 20 % of the dense entries at L = 2, 11 % at L = 6), so
a kernel that runs the entries does 5-10x fewer multiply-adds than the dense GEMM of the
``"scalar"`` regime or e3nn's per-path einsums.

The gradients are the same form with the roles exchanged (``g x1 = sum c g[o] x2[j]`` into
``a``), so the plan stores the entries three times, each sorted by the index it accumulates
into: :attr:`OuterPlan.forward_form`, :attr:`OuterPlan.grad1_form`,
:attr:`OuterPlan.grad2_form`. A :class:`BilinearForm` ``(u, v, starts, c)``: output ``r`` sums
``c[t] * p[:, u[t]] * q[:, v[t]]`` over ``t`` in ``starts[r]:starts[r + 1]``.

For executors that run dense matmuls instead (XLA), :attr:`OuterPlan.pairs`: per input block
pair the paths' CG blocks stacked along ``k``, ``(i1, i2, uu, stack (d1 d2, tot), outs)`` with
``outs`` the paths' ``(i_out, c0, c1)`` columns of ``tot``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .base import Plan, folded_cg, offsets
from .cgtp_numpy import assemble_numpy, block
from .tuning import Tuning

__all__ = ["OUTER_MODES", "BilinearForm", "OuterPlan", "build_outer", "is_outer",
           "run_bilinear_numpy", "run_outer_numpy"]

#: The connection modes of the ``"outer"`` regime (unweighted paths only).
OUTER_MODES = ("uvuv", "uuu")


def is_outer(d) -> bool:
    """Whether every path of ``d`` is unweighted ``uvuv`` / ``uuu`` (and there is one)."""
    return bool(d.paths) and all(not p.has_weight and p.mode in OUTER_MODES for p in d.paths)


class BilinearForm(NamedTuple):
    """``y[:, r] = sum_{t in starts[r]:starts[r+1]} c[t] * p[:, u[t]] * q[:, v[t]]``: ``u``,
    ``v`` int64 ``(nnz,)``, ``starts`` int64 ``(n_out + 1,)``, ``c`` float64 ``(nnz,)``."""

    u: np.ndarray
    v: np.ndarray
    starts: np.ndarray
    c: np.ndarray


@dataclass(frozen=True, eq=False)
class OuterPlan(Plan):
    """``"outer"`` regime (module docstring). ``forward_form``: ``out = F(x1, x2)``;
    ``grad1_form``: ``g x1 = F(g, x2)``; ``grad2_form``: ``g x2 = F(g, x1)``."""

    forward_form: BilinearForm
    grad1_form: BilinearForm
    grad2_form: BilinearForm
    pairs: tuple[tuple[int, int, bool, np.ndarray, tuple[tuple[int, int, int], ...]], ...]
    #: The ``"scalar"`` regime's plan of the same product, for executors that run that layout
    #: instead (JAX): set by :func:`tp_spec.plan.fused.build_fused` for single-channel products
    #: of at most ``tuning.outer_jax_scalar_max_entries`` dense entries; else None.
    scalar: Plan | None = None


def _entries(d) -> tuple[np.ndarray, ...]:
    """Flat entries ``(a, j, o, c)`` of the bilinear form, every channel expanded."""
    off1, off2, offo = offsets(d.irreps_in1), offsets(d.irreps_in2), offsets(d.irreps_out)
    a_l, j_l, o_l, c_l = [], [], [], []
    for p in d.paths:
        cg = folded_cg(p)
        i, j, k = np.nonzero(cg)
        d1, d2, d3 = cg.shape
        if p.mode == "uuu":
            u = np.arange(p.mul_in1)[:, None]
            a_l.append(off1[p.i_in1] + u * d1 + i)
            j_l.append(off2[p.i_in2] + u * d2 + j)
            o_l.append(offo[p.i_out] + u * d3 + k)
            c_l.append(np.broadcast_to(cg[i, j, k], (p.mul_in1, len(i))))
        else:  # uvuv: output channel u * mul_in2 + v
            u = np.arange(p.mul_in1)[:, None, None]
            v = np.arange(p.mul_in2)[None, :, None]
            a_l.append(np.broadcast_to(off1[p.i_in1] + u * d1 + i, (p.mul_in1, p.mul_in2, len(i))))
            j_l.append(np.broadcast_to(off2[p.i_in2] + v * d2 + j, (p.mul_in1, p.mul_in2, len(i))))
            o_l.append(offo[p.i_out] + (u * p.mul_in2 + v) * d3 + k)
            c_l.append(np.broadcast_to(cg[i, j, k], (p.mul_in1, p.mul_in2, len(i))))
    return tuple(np.concatenate([x.ravel() for x in xs]) for xs in (a_l, j_l, o_l, c_l))


def _form(acc: np.ndarray, u: np.ndarray, v: np.ndarray, c: np.ndarray, n: int) -> BilinearForm:
    """The entries sorted by their accumulation index ``acc`` (then ``u``, ``v``)."""
    order = np.lexsort((v, u, acc))
    starts = np.searchsorted(acc[order], np.arange(n + 1)).astype(np.int64)
    return BilinearForm(u[order].astype(np.int64), v[order].astype(np.int64), starts,
                        np.ascontiguousarray(c[order], dtype=np.float64))


def build_outer(d, tuning: Tuning, scalar: Plan | None = None) -> OuterPlan:
    """The outer plan of ``d``; ``scalar``: :attr:`OuterPlan.scalar`."""
    if not is_outer(d):
        raise ValueError("the outer regime needs every path unweighted uvuv or uuu")
    a, j, o, c = _entries(d)
    dim1, dim2, dimo = d.irreps_in1.dim, d.irreps_in2.dim, d.irreps_out.dim
    by_pair: dict[tuple[int, int, bool], list] = defaultdict(list)
    for p in d.paths:
        by_pair[(p.i_in1, p.i_in2, p.mode == "uuu")].append(p)
    pairs = []
    for (i1, i2, uu), ps in by_pair.items():
        cs = [folded_cg(p) for p in ps]
        st = np.concatenate(cs, axis=2)
        bounds = np.cumsum([0] + [cg.shape[2] for cg in cs])
        outs = tuple((p.i_out, int(s), int(e))
                     for p, s, e in zip(ps, bounds[:-1], bounds[1:], strict=True))
        pairs.append((i1, i2, uu, st.reshape(st.shape[0] * st.shape[1], -1), outs))
    return OuterPlan(d, "fused", tuning, _form(o, a, j, c, dimo), _form(a, o, j, c, dim1),
                     _form(j, o, a, c, dim2), tuple(pairs), scalar)


def run_bilinear_numpy(form: BilinearForm, p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """``form`` applied to ``p (B, .)``, ``q (B, .)`` -> ``(B, n)``."""
    rows = np.repeat(np.arange(n), np.diff(form.starts))
    terms = form.c * p[:, form.u] * q[:, form.v]
    out = np.zeros((p.shape[0], n))
    np.add.at(out.T, rows, terms.T)
    return out


def run_outer_numpy(plan: OuterPlan, x1, x2, w):
    """The plan's product in NumPy, through :attr:`OuterPlan.pairs` (``w`` is None); the
    entries are checked against the same reference by :func:`run_bilinear_numpy`'s tests."""
    d, b = plan.descriptor, x1.shape[0]
    blocks: dict[int, np.ndarray] = {}
    for i1, i2, uu, st, outs in plan.pairs:
        xa, xb = block(x1, d.irreps_in1, i1), block(x2, d.irreps_in2, i2)  # (B, u, d1)
        k = xa.shape[2] * xb.shape[2]
        if uu:
            t = (xa[:, :, :, None] * xb[:, :, None, :]).reshape(b, xa.shape[1], k) @ st
        else:
            t = (xa[:, :, None, :, None] * xb[:, None, :, None, :]).reshape(
                b, xa.shape[1] * xb.shape[1], k) @ st
        for io, c0, c1 in outs:
            y = t[..., c0:c1]
            blocks[io] = blocks[io] + y if io in blocks else y
    return assemble_numpy(d, blocks, b)
