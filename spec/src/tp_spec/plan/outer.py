"""CGTP ``fused`` plan of the ``"outer"`` regime: every path unweighted ``uvuv`` or ``uuu`` (the
full CGTP, e3nn ``FullTensorProduct`` / e3nn-jax ``tensor_product``, and ``uuu``).

Without weights the whole product is one fixed bilinear form of the flat features, whose
entries are the nonzero Clebsch-Gordan entries of every path expanded over the channels
(:attr:`OuterPlan.coupling`, :mod:`tp_spec.plan.coupling`): what the compiled CPU kernels run.

For executors that run dense matmuls instead (XLA), :attr:`OuterPlan.pairs`: per input block
pair the paths' CG blocks stacked along ``k``, ``(i1, i2, uu, stack (d1 d2, tot), outs)`` with
``outs`` the paths' ``(i_out, c0, c1)`` columns of ``tot``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .base import Plan, folded_cg
from .cgtp_numpy import assemble_numpy, block
from .coupling import Coupling, build_coupling
from .tuning import Tuning

__all__ = ["OUTER_MODES", "OuterPlan", "build_outer", "is_outer", "run_outer_numpy"]

#: The connection modes of the ``"outer"`` regime (unweighted paths only).
OUTER_MODES = ("uvuv", "uuu")


def is_outer(d) -> bool:
    """Whether every path of ``d`` is unweighted ``uvuv`` / ``uuu`` (and there is one)."""
    return bool(d.paths) and all(not p.has_weight and p.mode in OUTER_MODES for p in d.paths)


@dataclass(frozen=True, eq=False)
class OuterPlan(Plan):
    """``"outer"`` regime (module docstring)."""

    pairs: tuple[tuple[int, int, bool, np.ndarray, tuple[tuple[int, int, int], ...]], ...]
    #: The ``"scalar"`` regime's plan of the same product, for executors that run that layout
    #: instead (JAX): set by :func:`tp_spec.plan.fused.build_fused` for single-channel products
    #: of at most ``tuning.outer_jax_scalar_max_entries`` dense entries; else None.
    scalar: Plan | None = None

    @cached_property
    def coupling(self) -> Coupling:
        """The product as its nonzero coupling entries (:mod:`tp_spec.plan.coupling`), the
        layout of the compiled CPU kernels. Built on first use."""
        return build_coupling(self.descriptor)


def build_outer(d, tuning: Tuning, scalar: Plan | None = None) -> OuterPlan:
    """The outer plan of ``d``; ``scalar``: :attr:`OuterPlan.scalar`."""
    if not is_outer(d):
        raise ValueError("the outer regime needs every path unweighted uvuv or uuu")
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
    return OuterPlan(d, "fused", tuning, tuple(pairs), scalar)


def run_outer_numpy(plan: OuterPlan, x1, x2, w):
    """The plan's product in NumPy, through :attr:`OuterPlan.pairs` (``w`` is None)."""
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
