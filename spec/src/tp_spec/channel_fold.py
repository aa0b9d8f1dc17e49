"""A channelwise CGTP with ``C`` channels as ``C`` single-channel products.

A channelwise (``uvu``) product whose second input has one channel computes, for each channel
``u`` of the first input, the single-channel product of ``x1[u]`` with ``x2`` weighted by the
``u``-th weight of every path. :func:`channel_fold` gives that single-channel descriptor and the
index maps between the two layouts, so that a backend can run few-channel products through its
single-channel (``MIMO``-style) kernel:

``out = y[:, out_index]`` with ``y = stack_u(single(x1[:, x1_index].reshape(B, C, -1)[:, u],
x2, w[weight_index[u]]))`` flattened to ``(B, C * dim_out_single)``.

>>> from tp_spec import cgtp
>>> f = channel_fold(cgtp("2x0e + 2x1o", "0e + 1o", mode="uvu"))
>>> f.channels, str(f.single.irreps_in1), f.x1_index.tolist()
(2, '1x0e+1x1o', [0, 2, 3, 4, 1, 5, 6, 7])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cgtp import CGTPDescriptor
from .irreps import Irreps

__all__ = ["ChannelFold", "channel_count", "channel_fold"]


@dataclass(frozen=True)
class ChannelFold:
    """``single``: the descriptor with every multiplicity 1 (same paths, coefficients, one
    weight per weighted path, ``uvw``). ``x1_index (C * dim1_single,)``: x1 columns in
    ``(channel, block, component)`` order. ``weight_index (C, n_weighted)``: channel ``u``'s
    weights. ``out_index (dim_out,)``: for each output column, its column in the stacked
    ``(B, C * dim_out_single)`` per-channel outputs."""

    channels: int
    single: CGTPDescriptor
    x1_index: np.ndarray
    weight_index: np.ndarray
    out_index: np.ndarray


def channel_count(d: CGTPDescriptor) -> int | None:
    """``C`` if ``d`` can be folded: every path ``uvu``, every x2 block of multiplicity 1 and
    every x1 and output block of multiplicity ``C``; otherwise ``None``."""
    if not d.paths or any(p.mode != "uvu" for p in d.paths):
        return None
    muls = {mul for mul, _ in d.irreps_in1} | {mul for mul, _ in d.irreps_out}
    if len(muls) != 1 or any(mul != 1 for mul, _ in d.irreps_in2):
        return None
    return next(iter(muls))


def channel_fold(d: CGTPDescriptor) -> ChannelFold:
    """The single-channel form of a channelwise ``d`` (see the module docstring). Raises
    ``ValueError`` if ``d`` is not channelwise with one multiplicity (:func:`channel_count`)."""
    c = channel_count(d)
    if c is None:
        raise ValueError("channel_fold needs every path 'uvu', x2 blocks of multiplicity 1 and "
                         f"one multiplicity in x1 and the output; got {d.irreps_in1} x "
                         f"{d.irreps_in2} -> {d.irreps_out}")

    def one(irreps: Irreps) -> Irreps:
        return Irreps([(1, ir) for _, ir in irreps])

    single = CGTPDescriptor.from_paths(
        one(d.irreps_in1), one(d.irreps_in2), one(d.irreps_out),
        [(p.i_in1, p.i_in2, p.i_out, "uvw", p.has_weight, p.coefficient) for p in d.paths])
    x1_index = np.array([s.start + u * ir.dim + k for u in range(c)
                         for s, (_, ir) in zip(d.irreps_in1.slices(), d.irreps_in1, strict=True)
                         for k in range(ir.dim)], dtype=np.int64)
    # a uvu path's weight block is (mul1,): channel u reads offset + u
    weight_index = np.array([[p.weight_offset + u for p in d.paths if p.has_weight]
                             for u in range(c)], dtype=np.int64).reshape(c, -1)
    dim_single = single.irreps_out.dim
    out_index = np.empty(d.irreps_out.dim, dtype=np.int64)
    for s, s1, (_, ir) in zip(d.irreps_out.slices(), single.irreps_out.slices(), d.irreps_out,
                              strict=True):
        for u in range(c):
            out_index[s.start + u * ir.dim + np.arange(ir.dim)] = (
                u * dim_single + s1.start + np.arange(ir.dim))
    return ChannelFold(c, single, x1_index, weight_index, out_index)
