"""cuEquivariance polynomials for a CGTP, one segmented tensor product per path.

Each path becomes a ``SegmentedTensorProduct`` in ``mul_ir`` layout whose coefficient tensor is
``coefficient * cue.clebsch_gordan(ir1, ir2, ir3) / sqrt(2 l3 + 1)``: the Clebsch-Gordan table
comes from cuEquivariance itself (its O(3) group), the path structure and coefficient from
``tp_spec``. Unweighted paths get a weight block of ones.
"""

from __future__ import annotations

import math

import cuequivariance as cue
import numpy as np
from tp_spec.descriptor import segment_subscripts


def path_polynomials(cg) -> list[tuple[object, cue.SegmentedPolynomial]]:
    """``[(path, polynomial(w_path, x1_block, x2_block) -> out_block)]``; blocks flat."""
    out = []
    for p in cg.paths:
        if p.mul_in1 == 0 or p.mul_in2 == 0 or p.mul_out == 0:
            continue  # an empty block contributes nothing
        stp = cue.SegmentedTensorProduct.from_subscripts(segment_subscripts(p.mode))
        d1, d2, d3 = p.ir_in1.dim, p.ir_in2.dim, p.ir_out.dim
        from tp_spec.descriptor import mode_weight_shape

        wshape = mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out)
        stp.add_segment(0, wshape)
        stp.add_segment(1, (p.mul_in1, d1))
        stp.add_segment(2, (p.mul_in2, d2))
        stp.add_segment(3, (p.mul_in1, p.mul_in2, d3) if p.mode == "uvuv" else (p.mul_out, d3))
        table = cue.clebsch_gordan(cue.O3(p.ir_in1.l, p.ir_in1.p), cue.O3(p.ir_in2.l, p.ir_in2.p),
                                   cue.O3(p.ir_out.l, p.ir_out.p))
        assert table.shape[0] == 1, "O(3) couplings are multiplicity free"
        stp.add_path(0, 0, 0, 0, c=p.coefficient * table[0] / math.sqrt(d3))
        out.append((p, cue.SegmentedPolynomial.eval_last_operand(stp)))
    return out


def weight_blocks(p) -> int:
    n = 1
    from tp_spec.descriptor import mode_weight_shape

    for s in mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out):
        n *= s
    return n


def ones_if_unweighted(p, w, batch: int, xp, dtype):
    """The path's ``(B, n)`` weight block: a slice of ``w`` or ones."""
    n = weight_blocks(p)
    if p.has_weight:
        return w[:, p.weight_slice]
    return xp.ones((batch, n), dtype=dtype)


__all__ = ["ones_if_unweighted", "path_polynomials", "weight_blocks", "np"]
