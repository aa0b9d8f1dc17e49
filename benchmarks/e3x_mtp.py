"""e3x ``FusedTensor`` as this repository's MTP: the change of basis, and the layout adapter.

Facts about e3x 1.0.2 (read from its source and documentation; checked numerically in
``benchmarks/tests/test_e3x_mtp.py``):

1. **Basis.** e3x's real spherical harmonics (``cartesian_order=True``, its default) are the
   standard real ones (polar axis z, no Condon-Shortley phase) in "Cartesian order": position
   ``i`` of degree ``l`` holds standard index ``p_l[i]`` (0-based ``m + l``),
   ``p_l = (2l, 0, 2l-1, 1, ..., l+1, l-1, l)``, so that degree 1 reads ``(x, y, z)``; with its
   default ``racah`` normalization ``|Y^l| = 1``. tp_spec (e3nn's convention) uses the same
   functions with the polar axis on y: ``Y(x, y, z) = Y_std(z, x, y)``. With ``R`` the proper
   rotation ``(x, y, z) -> (y, z, x)`` and ``D^l`` = :func:`tp_spec.wigner_D`::

       sqrt(2l + 1) * Y_e3x^l(r) = M_l @ Y^l(r),      M_l = P_l D^l(R)

   (``P_l`` the permutation matrix ``P[i, p_l[i]] = 1``; ``M_1`` is the identity). ``M_l`` is
   orthogonal; a tp_spec degree-``l`` feature ``x`` has the e3x components ``M_l @ x``.
2. **Clebsch-Gordan.** ``e3x.so3.clebsch_gordan`` block ``(l1, l2, l3)`` equals
   ``sqrt(2 l3 + 1) * C(l1, l2, l3)`` (:func:`tp_spec.clebsch_gordan`) carried to e3x's basis by
   ``(M_l1, M_l2, M_l3)``: no sign and no other scale.
3. **The product.** ``FusedTensor`` embeds ``X = sum_l w_l sum_m CG_e3x[:, :, (l, m)] x_lm``
   (``CG`` of ``(lt, lt, l)``, ``lt = ceil(max(L1, L2, L3) / 2)``), multiplies the parity pairs
   ``X1e X2e + X1o X2o`` (even) and ``X1e X2o + X1o X2e`` (odd), and reads out
   ``z_lm = w'_l <CG_e3x[:, :, (l, m)], Z>_F``. tp_spec's MTP embeds with
   ``B^(l) = sqrt(2l+1) C(lt, lt, l)`` and reads out with ``sqrt(n) <B^(l)_m, Z>``,
   ``n = 2 lt + 1``. By 1 and 2 the e3x matrices are ``M_lt X M_lt^T``, so with every input
   kernel ``w_l = 1`` and every output kernel ``w'_l = sqrt(n)``::

       FusedTensor(M x1, M x2) = M MTP(x1, x2)        (block by block, exactly)

   e3x's product is therefore the same bilinear map as ``tp_spec.mtp`` (not merely a similar
   one): a change of basis per irrep plus fixed values of its learnable kernels. (Because the
   MTP is equivariant, ``M_l = P_l D^l(R')`` with any fixed rotation ``R'`` also works, e.g.
   the bare reordering ``P_l``; ``M_l = P_l D^l(R)`` is the one under which both libraries
   describe the same geometric object.)

Layout: e3x features are ``(..., P, (L+1)^2, F)``. ``P = 1`` holds irreps of parity class +1
(``0e, 1o, 2e, ...``); ``P = 2`` holds parity +1 irreps (``0e, 1e, 2e, ...``) at index 0 and
parity -1 irreps at index 1. ``F`` = channels; e3x needs the same ``F`` on both inputs, so a
broadcast second input (one channel) is repeated to ``C`` channels. The conversions below are
NumPy and run outside the timed call: the timed call is e3x on its own layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["E3xPlan", "e3x_basis", "e3x_cartesian_order", "fused_tensor_params", "from_e3x",
           "plan", "to_e3x"]

#: The proper rotation (x, y, z) -> (y, z, x) that carries tp_spec's polar axis (y) to e3x's (z).
CYCLIC = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])

INPUT_KERNELS = ("kernel_e1", "kernel_o1", "kernel_e2", "kernel_o2")
OUTPUT_KERNELS = ("kernel_eee", "kernel_ooe", "kernel_eoo", "kernel_oeo")


def e3x_cartesian_order(l: int) -> np.ndarray:
    """``p_l`` (``(2l + 1,)`` ints): e3x position ``i`` holds standard index ``p_l[i]`` (0-based
    ``m + l``): ``2l, 0, 2l-1, 1, ..., l+1, l-1, l``, i.e. ``m = +l, -l, +(l-1), ..., -1, 0``."""
    order: list[int] = []
    for k in range(l):
        order += [2 * l - k, k]
    return np.asarray(order + [l], dtype=np.int64)


def e3x_basis(l: int) -> np.ndarray:
    """``M_l`` (float64 ``(2l+1, 2l+1)``, orthogonal): tp_spec component vector ``x`` of degree
    ``l`` -> e3x components ``M_l @ x`` (module docstring, fact 1)."""
    from tp_spec import Irrep, Irreps, wigner_D

    d = wigner_D(Irreps([(1, Irrep(l, 1))]), CYCLIC)
    return np.asarray(d)[e3x_cartesian_order(l), :]


@dataclass(frozen=True)
class E3xPlan:
    """How one tp_spec MTP descriptor maps onto ``e3x.nn.FusedTensor``.

    ``blocks1``/``blocks2``/``blocks_out``: ``(offset, l, parity index)`` per irrep of the
    tp_spec layout (parity index into e3x's ``P`` axis); ``L1, L2, L3`` the e3x max degrees
    (``L3`` = ``max_degree``), ``P1, P2`` the input parity axes, ``lt`` the matrix degree.
    """

    L1: int
    L2: int
    L3: int
    P1: int
    P2: int
    lt: int
    channels: int
    channels_in2: int
    blocks1: tuple[tuple[int, int, int], ...]
    blocks2: tuple[tuple[int, int, int], ...]
    blocks_out: tuple[tuple[int, int, int], ...]  # parity index: +1 -> 0, -1 -> 1
    class_out: tuple[bool, ...]  # per output block: parity class +1?

    @property
    def n(self) -> int:
        return 2 * self.lt + 1


def _blocks(irreps: Any, parities: int) -> tuple[tuple[int, int, int], ...]:
    out, offset = [], 0
    for mul, ir in irreps:
        out.append((offset, ir.l, 0 if parities == 1 or ir.p == 1 else 1))
        offset += mul * ir.dim
    return tuple(out)


def plan(d: Any) -> E3xPlan:
    """The :class:`E3xPlan` of MTP descriptor ``d``; ``ValueError`` saying why if e3x cannot
    compute it (per-degree weights, or no e3x ``max_degree`` gives the descriptor's ``lt``)."""
    if getattr(d, "kind", None) != "mtp":
        raise ValueError("the e3x adapter computes MTP descriptors only")
    if d.weight_numel:
        raise ValueError("per-degree weights are not wired into the e3x adapter (fixed MTP only)")

    def one_class(irreps: Any) -> bool:
        return all(ir.p == (-1) ** ir.l for _, ir in irreps)

    L1, L2 = d.irreps_in1.lmax, d.irreps_in2.lmax
    lout = d.irreps_out.lmax if len(d.irreps_out) else 0
    L3 = next((L for L in range(min(lout, L1 + L2), L1 + L2 + 1)
               if math.ceil(max(L1, L2, L) / 2) == d.lt), None)
    if L3 is None:
        raise ValueError(f"no e3x max_degree <= L1 + L2 = {L1 + L2} gives the descriptor's matrix "
                         f"degree lt = {d.lt}")
    P1 = 1 if one_class(d.irreps_in1) else 2
    P2 = 1 if one_class(d.irreps_in2) else 2
    return E3xPlan(L1, L2, L3, P1, P2, d.lt, d.channels, d.channels_in2,
                   _blocks(d.irreps_in1, P1), _blocks(d.irreps_in2, P2),
                   _blocks(d.irreps_out, 2),
                   tuple(ir.p == (-1) ** ir.l for _, ir in d.irreps_out))


def to_e3x(p: E3xPlan, which: int, x: np.ndarray) -> np.ndarray:
    """tp_spec input ``which`` (1 or 2), ``(B, dim)`` -> e3x ``(B, P, (L+1)^2, C)``."""
    blocks, L, P, C = ((p.blocks1, p.L1, p.P1, p.channels) if which == 1 else
                       (p.blocks2, p.L2, p.P2, p.channels_in2))
    x = np.asarray(x)
    out = np.zeros(x.shape[:-1] + (P, (L + 1) ** 2, C), dtype=x.dtype)
    for offset, l, pidx in blocks:
        blk = x[..., offset:offset + C * (2 * l + 1)].reshape(x.shape[:-1] + (C, 2 * l + 1))
        out[..., pidx, l * l:(l + 1) ** 2, :] = np.einsum("ij,...cj->...ic", e3x_basis(l), blk)
    if C != p.channels:  # broadcast second input: e3x wants the same feature count
        out = np.repeat(out, p.channels, axis=-1)
    return out


def from_e3x(p: E3xPlan, z: np.ndarray) -> np.ndarray:
    """e3x output ``(B, P3, (L3+1)^2, C)`` -> tp_spec ``(B, irreps_out.dim)``; irreps e3x does
    not produce (degree above ``L3``; parity class -1 when ``P3 = 1``) are zero, as no path
    reaches them."""
    z = np.asarray(z, dtype=np.float64)
    lead, P3, C = z.shape[:-3], z.shape[-3], z.shape[-1]
    parts = []
    for (_, l, pidx), natural in zip(p.blocks_out, p.class_out, strict=True):
        if l > p.L3 or (P3 == 1 and not natural):
            parts.append(np.zeros(lead + (C * (2 * l + 1),)))
            continue
        blk = z[..., 0 if P3 == 1 else pidx, l * l:(l + 1) ** 2, :]  # (..., 2l+1, C)
        ours = np.einsum("ij,...ic->...cj", e3x_basis(l), blk)
        parts.append(ours.reshape(lead + (C * (2 * l + 1),)))
    return np.concatenate(parts, axis=-1)


def fused_tensor_params(p: E3xPlan, dtype: Any) -> dict[str, Any]:
    """``FusedTensor`` variables that make it tp_spec's MTP (module docstring, fact 3): input
    kernels ``(L + 1, C)`` of ones, output kernels ``(L3 + 1, C)`` of ``sqrt(2 lt + 1)``. Built
    directly (``module.init`` costs seconds); a name e3x does not know fails in ``apply``."""
    import jax.numpy as jnp

    C = p.channels
    inner = {}
    for name, L in zip(INPUT_KERNELS, (p.L1, p.L1, p.L2, p.L2), strict=True):
        inner[name] = jnp.ones((L + 1, C), dtype)
    for name in OUTPUT_KERNELS:
        inner[name] = jnp.full((p.L3 + 1, C), math.sqrt(2 * p.lt + 1), dtype)
    return {"params": inner}
