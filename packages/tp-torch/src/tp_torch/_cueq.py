"""``cueq``: adapter running a CGTP through cuEquivariance (``cuequivariance_torch``).

The descriptor's paths are rebuilt as one ``cue.SegmentedTensorProduct`` in ``mul_ir`` layout
(segments ``(mul, 2l+1)``, e3nn ordering, subscripts per connection mode, e.g.
``uvw,ui,vj,wk+ijk``) whose path coefficients are exactly ``coefficient * C(l1, l2, l3)`` from
``tp_spec`` (no cuEquivariance normalization is applied), and whose weight segments follow the
paths in order, so the flat weight vector is the descriptor's. It runs with
``cuet.SegmentedPolynomial(method="naive")`` (pure PyTorch; CPU and GPU) unless
``cuequivariance_ops_torch`` is importable and the device is CUDA, in which case ``"fused_tp"``
is used (untested here: no GPU).

Supported: CGTPs whose paths all share one connection mode and are all weighted (any mode) or
all unweighted (``uvu``, ``uvv``, ``uuu``, ``uvuv``), with no zero multiplicities.
:func:`cueq_unsupported_reason` names what is not. Importing this module does not import
cuEquivariance; building the kernel does.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from tp_spec import CGTPDescriptor, clebsch_gordan
from tp_spec.descriptor import segment_subscripts

from ._common import Kernel

__all__ = ["CGTPCueq", "cueq_unsupported_reason"]

#: Modes whose unweighted form has no output-only channel index (cuEquivariance needs every
#: output index to appear in an input).
_UNWEIGHTED = ("uvu", "uvv", "uuu", "uvuv")


def cueq_unsupported_reason(d) -> str | None:
    """Why ``cueq`` cannot run ``d`` (None if it can)."""
    if getattr(d, "kind", None) != "cgtp":
        return "the cueq adapter runs CGTP descriptors only"
    if not d.paths:
        return "cueq: descriptor has no paths"
    modes = {p.mode for p in d.paths}
    if len(modes) != 1:
        return f"cueq adapter needs a single connection mode, got {sorted(modes)}"
    mode = modes.pop()
    weighted = {p.has_weight for p in d.paths}
    if len(weighted) != 1:
        return "cueq adapter needs all paths weighted or all unweighted"
    if not weighted.pop() and mode not in _UNWEIGHTED:
        return f"cueq adapter: unweighted mode {mode!r} is not expressible (output-only index)"
    for irreps in (d.irreps_in1, d.irreps_in2, d.irreps_out):
        if any(mul == 0 for mul, _ in irreps):
            return "cueq adapter: zero multiplicities are not supported"
    if mode == "uvuv":
        seen: dict[int, tuple[int, int]] = {}
        for p in d.paths:
            if seen.setdefault(p.i_out, (p.mul_in1, p.mul_in2)) != (p.mul_in1, p.mul_in2):
                return "cueq adapter: uvuv output block fed by different (mul1, mul2)"
    if importlib.util.find_spec("cuequivariance") is None or (
        importlib.util.find_spec("cuequivariance_torch") is None
    ):
        return "needs cuequivariance and cuequivariance-torch (pip install 'tp-torch[cueq]')"
    return None


def build_polynomial(d: CGTPDescriptor):
    """The ``cue.SegmentedPolynomial`` computing ``d`` (inputs ``[w,] x1, x2``)."""
    import cuequivariance as cue

    mode = d.paths[0].mode
    weighted = d.paths[0].has_weight
    stp = cue.SegmentedTensorProduct.from_subscripts(
        segment_subscripts(mode, weighted))
    o = 1 if weighted else 0
    for mul, ir in d.irreps_in1:
        stp.add_segment(o, (mul, ir.dim))
    for mul, ir in d.irreps_in2:
        stp.add_segment(o + 1, (mul, ir.dim))
    uvuv = {p.i_out: (p.mul_in1, p.mul_in2) for p in d.paths} if mode == "uvuv" else {}
    for i, (mul, ir) in enumerate(d.irreps_out):
        if mode == "uvuv":
            a, b = uvuv.get(i, (mul, 1))
            stp.add_segment(o + 2, (a, b, ir.dim))
        else:
            stp.add_segment(o + 2, (mul, ir.dim))
    for p in d.paths:
        c = p.coefficient * np.asarray(clebsch_gordan(*p.lll), dtype=np.float64)
        if weighted:
            stp.add_path(None, p.i_in1, p.i_in2, p.i_out, c=c)
        else:
            stp.add_path(p.i_in1, p.i_in2, p.i_out, c=c)
    return cue.SegmentedPolynomial.eval_last_operand(stp)


class CGTPCueq(Kernel):
    """``cueq``: ``cuet.SegmentedPolynomial`` on a polynomial with our exact coefficients."""

    def __init__(self, d: CGTPDescriptor, device: str | torch.device = "cpu") -> None:
        super().__init__()
        import cuequivariance_torch as cuet

        self.d = d
        self.weighted = d.paths[0].has_weight
        method = "naive"
        if torch.device(device).type == "cuda" and (
            importlib.util.find_spec("cuequivariance_ops_torch") is not None
        ):
            method = "fused_tp"
        self.poly = build_polynomial(d)
        self.m = cuet.SegmentedPolynomial(self.poly, method=method)
        if self.weighted and self.poly.inputs[0].size != d.weight_numel:
            raise AssertionError("cueq weight layout mismatch")  # pragma: no cover

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        b = x1.shape[0]
        if b == 0:  # cuEquivariance does not accept empty batches
            return x1.new_zeros((0, self.d.irreps_out.dim)) + 0.0 * x1.sum() + 0.0 * x2.sum() + (
                0.0 * w.sum() if w is not None else 0.0)
        if self.weighted:
            w2 = w.unsqueeze(0) if w.dim() == 1 else w
            (out,) = self.m([w2, x1, x2])
        else:
            (out,) = self.m([x1, x2])
        if out.shape[0] != b:
            out = out.expand(b, out.shape[1])
        return out
