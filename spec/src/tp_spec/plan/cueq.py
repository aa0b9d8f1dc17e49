"""The ``cueq`` adapter's neutral part: how a CGTP becomes cuEquivariance segmented polynomials.

Both backends run a CGTP through cuEquivariance the same way: the paths are split by connection
mode, each mode group is one ``cue.SegmentedTensorProduct`` in ``mul_ir`` layout (segments
``(mul, 2l+1)``, e3nn ordering, subscripts of the mode such as ``uvw,ui,vj,wk+ijk``) whose path
coefficients are exactly :func:`~tp_spec.plan.base.folded_cg` (no cuEquivariance
normalization), with a weight operand for every path (ones for unweighted paths). The groups'
outputs add up. tp_spec does not import cuEquivariance: the caller passes the module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..descriptor import MODES, mode_weight_shape, segment_subscripts
from .base import folded_cg

__all__ = ["CueqGroup", "cueq_groups", "cueq_unsupported_reason", "group_weights"]


@dataclass(frozen=True, eq=False)
class CueqGroup:
    """One connection mode's paths as a ``cue.SegmentedPolynomial`` (inputs ``w, x1, x2``).
    ``pieces``: its weight operand, path by path: ``(start, stop)`` of the user's flat weights,
    or ``(-1, size)`` for ``size`` ones (an unweighted path)."""

    mode: str
    polynomial: Any
    pieces: tuple[tuple[int, int], ...]


def cueq_unsupported_reason(d: Any) -> str | None:
    """Why a CGTP cannot be written as segmented polynomials (None if it can)."""
    if d.kind != "cgtp":
        return f"not a CGTP descriptor ({type(d).__name__})"
    if any(p.mul_in1 * p.mul_in2 * p.mul_out == 0 for p in d.paths):
        return "cuEquivariance cannot express paths with a zero multiplicity"
    for io in {p.i_out for p in d.paths if p.mode == "uvuv"}:
        if len({(p.mul_in1, p.mul_in2) for p in d.paths
                if p.mode == "uvuv" and p.i_out == io}) > 1:
            return "cuEquivariance: a uvuv output block fed by inputs of different multiplicities"
    return None


def cueq_groups(d: Any, cue: Any) -> tuple[CueqGroup, ...]:
    """The mode groups of ``d`` built with the ``cuequivariance`` module ``cue``."""
    groups = []
    for mode in MODES:
        paths = [p for p in d.paths if p.mode == mode]
        if not paths:
            continue
        stp = cue.SegmentedTensorProduct.from_subscripts(segment_subscripts(mode))
        for mul, ir in d.irreps_in1:
            stp.add_segment(1, (mul, ir.dim))
        for mul, ir in d.irreps_in2:
            stp.add_segment(2, (mul, ir.dim))
        for io, (mul, ir) in enumerate(d.irreps_out):
            if mode != "uvuv":
                stp.add_segment(3, (mul, ir.dim))
                continue
            # a uvuv output segment is (u, v, k) with u, v the multiplicities of its inputs
            m12 = {(p.mul_in1, p.mul_in2) for p in paths if p.i_out == io}
            u, v = m12.pop() if m12 else (mul, 1)
            stp.add_segment(3, (u, v, ir.dim))
        pieces = []
        for p in paths:
            shape = mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out)
            size = int(np.prod(shape))
            stp.add_path(shape, p.i_in1, p.i_in2, p.i_out, c=folded_cg(p))
            pieces.append((p.weight_offset, p.weight_offset + size) if p.has_weight
                          else (-1, size))
        groups.append(CueqGroup(mode, cue.SegmentedPolynomial.eval_last_operand(stp),
                                tuple(pieces)))
    return tuple(groups)


def group_weights(group: CueqGroup, w: Any, ones: Any, concat: Any) -> Any:
    """A group's weight operand from the user's weights ``w`` (``(numel,)`` or ``(B, numel)``,
    or None): ``ones(size)`` makes the ones of an unweighted path (with ``w``'s leading axes),
    ``concat(parts)`` joins the pieces along the last axis (framework functions)."""
    parts = [ones(b) if a < 0 else w[..., a:b] for a, b in group.pieces]
    return parts[0] if len(parts) == 1 else concat(parts)
