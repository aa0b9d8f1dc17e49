"""The ``fused`` CGTP runner of the ``"channelwise"`` regime
(:class:`tp_spec.plan.fused.ChannelwisePlan`: every path ``uvu`` with ``mul_in2 == 1``, the
MACE/NequIP shape), as a :mod:`tp_jax._multilinear` primitive: the product and its transposes
written out, so every derivative order runs these functions and none is JAX's transpose of
another.

**Product** (:func:`_product`, per x1 block). ``M = x2 @ K_g`` ``(B, d1, S)`` (every path of
the block that is not a scale path); a path's product ``(B, m1, d1) @ M[..., c0:c1]`` is read
as the columns ``c0:c1`` of one batched product ``(B, m1, d1) @ M`` per block (in XLA one
batched dot per block runs faster than one per path), times its weights into its output block
(shared: expanded to the block; per sample: ``(B, m1, 1)``); a scale path (degree-0 x2 block)
is the flat multiply ``c x2_j x1``. The plan's zero padding of the contraction (``kp > d1``,
for torch's matmul dispatch) is dropped: only the first ``d1`` rows of ``K_g`` are used.

**Transposes** (:class:`_Transposes`), path by path in the blocks' own ``(B, U, d)`` layout,
with ``M_p = (x2 @ K)[:, cols_p]`` ``(B, d1, d3)`` (``K``: the plan's ``k_paths``, one GEMM):

* x1: ``w_p (ct_p @ M_p^T)`` summed into the path's x1 block, each ``@`` a sum of ``d3``
  broadcast products (one fused loop; a batched dot of these small per-row matrices, one call
  per row, ran 4x slower in XLA on CPU);
* weights: ``sum_i x1_p (ct_p @ M_p^T)`` over ``i`` (and the rows for shared weights): the same
  ``ct_p @ M_p^T``, shared with the x1 gradient where both are asked for;
* x2: per x1 block one batched ``X^T @ [w_p ct_p ...]`` over its paths' weighted cotangents
  side by side (one dot per path ran 1.1-1.7x slower), cut into the paths' ``(d1, d3)`` and
  contracted with ``K^T``.

Unweighted paths among weighted ones make the product affine in the weights; it is linear in
``[w, 1]``, the primitive's weight slot (the 1: every unweighted path's weight), whose last
gradient entry is the unweighted paths' products against the cotangent.

**On CPU** (float32 / float64, Numba present, ``TP_JAX_CPU_KERNELS`` not 0 when traced) each of
these four functions is instead one XLA FFI call (:mod:`tp_jax._cpu_ffi`) of the compiled
kernels that tp_torch runs (:class:`tp_kernels.ChannelwiseKernels`: one pass over the rows per
path, chunks in cache, XLA's intra-op thread count); the XLA code above is the GPU's (and the
fallback's), chosen per platform when the program is lowered. A backward pass that asks for
several gradients runs them as one kernel call (the primitive's joint transpose), as tp_torch's
backward does.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import tp_kernels
from tp_spec.plan.fused import ChannelwisePlan

from . import _cpu_ffi
from ._fused_blocks import add_block, assemble, block
from ._multilinear import Multilinear, Slot, dual_terms, joint_terms, multilinear
from ._ops import const, einsum, ix

__all__ = ["run_channelwise"]


def run_channelwise(plan: ChannelwisePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` None / ``(numel,)`` / ``(B, numel)`` ->
    ``(B, dim_out)``. The product is affine in ``w`` where unweighted paths are present; it is
    linear in ``[w, 1]`` (the 1: the weight of every unweighted path), the primitive's slot."""
    dt, cpu = jnp.dtype(x1.dtype), _use_cpu_kernels(plan, x1.dtype)
    if w is None:
        return multilinear(_primitive(plan, dt, None, cpu), x1, x2)
    fns = _primitive(plan, dt, "shared" if w.ndim == 1 else "per_sample", cpu)
    return multilinear(fns, x1, x2, jnp.concatenate([w, jnp.ones(w.shape[:-1] + (1,), w.dtype)],
                                                    axis=-1))


def _product(plan: ChannelwisePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """The product: ``(B, dim1)``, ``(B, dim2)``, ``[w, 1]`` ``(numel + 1,)`` or
    ``(B, numel + 1)`` (or None) -> ``(B, dim_out)``."""
    per_sample = w is not None and w.ndim == 2
    d, b, dt = plan.descriptor, x1.shape[0], x1.dtype
    wexp = None if w is None or per_sample else w[ix(plan.widx)]
    blocks: dict[int, jax.Array] = {}
    for (i1, mul1, kp, s_tot, cols), kg in zip(plan.groups, plan.kg, strict=True):
        d1 = d.irreps_in1[i1].ir.dim
        u = block(x1, d.irreps_in1, i1)  # (B, m1, d1)
        y_all = None
        if s_tot:
            k = kg.reshape(kg.shape[0], kp, s_tot)[:, :d1].reshape(kg.shape[0], d1 * s_tot)
            m = einsum("bj,jk->bk", x2, const(k, dt)).reshape(b, d1, s_tot)
            y_all = einsum("bui,bis->bus", u, m)  # every path's product: column slices
        for n, c0, c1, w0, _, _ in cols:
            p = d.paths[n]
            size = mul1 * p.ir_out.dim
            if n in plan.scale:
                j, c = plan.scale[n]
                y = x1[:, d.irreps_in1.slices()[i1]] * (x2[:, j:j + 1] * c)
            else:
                y = y_all[:, :, c0:c1].reshape(b, size)
            if per_sample:
                wp = (w[:, p.weight_slice, None] if p.has_weight and p.weight_numel
                      else w[:, -1:, None])
                y = (y.reshape(b, mul1, -1) * wp).reshape(b, size)
            elif wexp is not None:
                y = y * wexp[w0:w0 + size]
            add_block(blocks, p.i_out, y)
    return assemble(d, blocks, b, dt)


@dataclass(frozen=True)
class _Path:
    """One path's static layout: ``mul`` (``U``), ``d1``, ``d3``; the columns of its x1 block
    ``x1``, its output block ``out``, its weights ``w`` in ``[w, 1]`` (None: unweighted, the 1)
    and of its ``M (B, d1 * d3)`` in ``x2 @ K``, ``m``; ``i1``: its x1 block."""

    mul: int
    d1: int
    d3: int
    x1: slice
    out: slice
    w: slice | None
    m: slice
    i1: int


class _Transposes:
    """The product's transposes path by path (module docstring) at one dtype; ``M = x2 @ k``
    (the plan's ``k_paths``) holds every path's ``(d1, d3)`` matrix per row."""

    def __init__(self, plan: ChannelwisePlan, dt) -> None:
        d = self.descriptor = plan.descriptor
        self.dt, self.numel, self.k = dt, d.weight_numel, plan.k_paths
        self.paths = [
            _Path(p.mul_in1, p.ir_in1.dim, p.ir_out.dim, d.irreps_in1.slices()[p.i_in1],
                  d.irreps_out.slices()[p.i_out],
                  p.weight_slice if p.has_weight and p.weight_numel else None,
                  slice(int(plan.k_cols[n]), int(plan.k_cols[n + 1])), p.i_in1)
            for n, p in enumerate(d.paths)]

    def _m(self, x2: jax.Array) -> jax.Array:
        return einsum("bj,jk->bk", x2, const(self.k, self.dt))

    @staticmethod
    def _blk(x: jax.Array, cols: slice, mul: int, dim: int) -> jax.Array:
        """Columns ``cols`` of ``x`` as ``(B, mul, dim)``."""
        return x[:, cols].reshape(x.shape[0], mul, dim)

    @staticmethod
    def _mat(m: jax.Array, q: _Path) -> jax.Array:
        return m[:, q.m].reshape(m.shape[0], q.d1, q.d3)

    def _w(self, w: jax.Array | None, q: _Path) -> jax.Array | None:
        """The path's weights, broadcastable to ``(B, U, 1)``."""
        if w is None:
            return None
        piece = w[..., q.w] if q.w is not None else w[..., -1:]
        return piece[..., None] if w.ndim == 2 else piece[:, None]

    def _g(self, ct: jax.Array, w: jax.Array | None, q: _Path) -> jax.Array:
        """The path's output cotangent times its weights ``(B, U, d3)``."""
        g = self._blk(ct, q.out, q.mul, q.d3)
        wq = self._w(w, q)
        return g if wq is None else g * wq

    @staticmethod
    def _apply(x: jax.Array, m: jax.Array) -> jax.Array:
        """``x (B, U, d1) @ m (B, d1, d3)`` per row as a sum of ``d1`` broadcast products (one
        fused loop in XLA; a batched dot of these small matrices runs 4x slower on CPU)."""
        out = x[:, :, 0:1] * m[:, None, 0, :]
        for i in range(1, m.shape[1]):
            out = out + x[:, :, i:i + 1] * m[:, None, i, :]
        return out

    def _h(self, ct: jax.Array, m: jax.Array, q: _Path) -> jax.Array:
        """``ct_p @ M_p^T`` ``(B, U, d1)``: the path's unweighted x1 gradient (shared by the x1
        and weight gradients)."""
        return self._apply(self._blk(ct, q.out, q.mul, q.d3), jnp.swapaxes(self._mat(m, q), 1, 2))

    def grad_x1(self, x2: jax.Array, w: jax.Array | None, ct: jax.Array) -> jax.Array:
        m, blocks = self._m(x2), {}
        for q in self.paths:
            h, wq = self._h(ct, m, q), self._w(w, q)
            add_block(blocks, q.i1, h if wq is None else h * wq)
        return assemble(self.descriptor, blocks, ct.shape[0], self.dt, in1=True)

    def grad_x2(self, x1: jax.Array, w: jax.Array | None, ct: jax.Array) -> jax.Array:
        """Per x1 block one batched ``X^T @ [G_p ...]`` over its paths' weighted cotangents
        (one dot per path runs 1.1-1.7x slower), cut into the paths' ``(d1, d3)``, then
        ``@ K^T``."""
        b = ct.shape[0]
        dm: dict[int, jax.Array] = {}
        by_block: dict[int, list[int]] = {}
        for n, q in enumerate(self.paths):
            by_block.setdefault(q.i1, []).append(n)
        for ns in by_block.values():
            qs = [self.paths[n] for n in ns]
            gs = [self._g(ct, w, q) for q in qs]
            g = jnp.concatenate(gs, axis=2) if len(gs) > 1 else gs[0]
            t = einsum("bui,bus->bis", self._blk(x1, qs[0].x1, qs[0].mul, qs[0].d1), g)
            cols = np.cumsum([0] + [q.d3 for q in qs]).tolist()
            for c, n in enumerate(ns):
                dm[n] = t[:, :, cols[c]:cols[c + 1]].reshape(b, -1)
        parts = [dm[n] for n in range(len(self.paths))]
        flat = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        return einsum("bk,jk->bj", flat, const(self.k, self.dt))

    def grad_w(self, x1: jax.Array, x2: jax.Array, ct: jax.Array, per_sample: bool
               ) -> jax.Array:
        """The gradient of ``[w, 1]``: ``(numel + 1,)`` or ``(B, numel + 1)`` (the last entry:
        the unweighted paths' products against the cotangent)."""
        b, m = ct.shape[0], self._m(x2)
        lead = (b,) if per_sample else ()
        pieces: dict[int, jax.Array] = {}
        last = jnp.zeros(lead, self.dt)
        for q in self.paths:
            g = (self._blk(x1, q.x1, q.mul, q.d1) * self._h(ct, m, q)).sum(axis=2)  # (B, U)
            g = g if per_sample else g.sum(axis=0)
            if q.w is None:
                last = last + g.sum(axis=-1)
            else:
                pieces[q.w.start] = g
        parts, pos = [], 0
        for start in sorted(pieces):
            if start > pos:
                parts.append(jnp.zeros(lead + (start - pos,), self.dt))
            parts.append(pieces[start])
            pos = start + pieces[start].shape[-1]
        if pos < self.numel:
            parts.append(jnp.zeros(lead + (self.numel - pos,), self.dt))
        return jnp.concatenate([*parts, last[..., None]], axis=-1)


def _use_cpu_kernels(plan: ChannelwisePlan, dtype) -> bool:
    """Whether the CPU lowering runs the compiled kernels (read when traced)."""
    return (jnp.dtype(dtype) in (jnp.float32, jnp.float64)
            and tp_kernels.available("TP_JAX_CPU_KERNELS")
            and tp_kernels.supports(plan.descriptor))


class _Kernels:
    """The product, its transposes, its joint transpose and the joint's derivative (``dual``)
    as FFI calls of the compiled CPU kernels (module doc): the signatures of :func:`_product`,
    :class:`_Transposes` and :class:`tp_jax._multilinear.Multilinear`, ``w`` being ``[w, 1]``;
    one target per function and subset of gradients, registered when the product is traced.

    A kernel reads only the operands the result depends on (x1's gradient never reads x1, x2's
    never uses x2's values, the weights' never reads the weights), so each call passes its
    result array in the place of the operand it lacks."""

    def __init__(self, plan: ChannelwisePlan, dt, weights: str | None) -> None:
        d = plan.descriptor
        k = tp_kernels.ChannelwiseKernels(d)
        k.prepare(dt)  # compile (or load) now, not inside the program
        self.dt, self.d, self.weighted = dt, d, weights is not None
        tag = hashlib.sha1(f"{k.key()}|{dt}|{weights}".encode()).hexdigest()[:16]
        scaled = self.weighted

        def threads() -> int:
            return _cpu_ffi.num_threads()

        if self.weighted:
            def fwd(x1, x2, w, out):
                k.forward(x1, x2, w, threads(), out=out, scaled=scaled)

            def bwd1(x2, w, ct, g1):
                k.backward(g1, x2, w, ct, (True, False, False), threads(),
                           out=(g1, None, None), scaled=scaled)

            def bwd2(x1, w, ct, g2):
                k.backward(x1, g2, w, ct, (False, True, False), threads(),
                           out=(None, g2, None), scaled=scaled)

            def bwdw(x1, x2, ct, gw):
                k.backward(x1, x2, gw, ct, (False, False, True), threads(),
                           out=(None, None, gw), scaled=scaled)

            self.names = {n: _cpu_ffi.register(f"tp_jax_cw_{tag}_{n}", f) for n, f in
                          (("fwd", fwd), ("x1", bwd1), ("x2", bwd2), ("w", bwdw))}
            inputs = 3
        else:
            def fwd0(x1, x2, out):
                k.forward(x1, x2, None, threads(), out=out)

            def bwd10(x2, ct, g1):
                k.backward(g1, x2, None, ct, (True, False, False), threads(),
                           out=(g1, None, None))

            def bwd20(x1, ct, g2):
                k.backward(x1, g2, None, ct, (False, True, False), threads(),
                           out=(None, g2, None))

            self.names = {n: _cpu_ffi.register(f"tp_jax_cw_{tag}_{n}", f) for n, f in
                          (("fwd", fwd0), ("x1", bwd10), ("x2", bwd20))}
            inputs = 2

        def joint_fn(need: tuple[bool, ...]):
            """Every gradient in ``need`` in one pass over the rows (tp_torch's backward)."""
            def fn(*arrays):
                ops, outs = arrays[:inputs + 1], iter(arrays[inputs + 1:])
                x1, x2, *w, ct = ops
                res = tuple(next(outs) if n else None for n in (*need, False)[:3])
                k.backward(x1, x2, w[0] if w else None, ct, (*need, False)[:3], threads(),
                           out=res, scaled=scaled)
            return fn

        def dual_fn(need: tuple[bool, ...]):
            """The gradients' derivative along the inputs' directions, one pass."""
            def fn(*arrays):
                x1, x2, *w, ct = arrays[:inputs + 1]
                v1, v2, *vw = arrays[inputs + 1:2 * inputs + 1]
                outs = iter(arrays[2 * inputs + 1:])
                res = tuple(next(outs) if n else None for n in (*need, False)[:3])
                k.backward_dual(x1, x2, w[0] if w else None, ct,
                                (v1, v2, vw[0] if vw else None), (*need, False)[:3],
                                threads(), out=res, scaled=scaled)
            return fn

        for need in itertools.product((False, True), repeat=inputs):
            tail = "".join("1" if v else "0" for v in need)
            if any(need):  # one gradient too: what dead-code elimination leaves of a joint
                self.names[need] = _cpu_ffi.register(f"tp_jax_cw_{tag}_joint{tail}",
                                                     joint_fn(need))
                self.names[("dual", need)] = _cpu_ffi.register(f"tp_jax_cw_{tag}_dual{tail}",
                                                               dual_fn(need))
        self.kernels = k

    def _call(self, name: str, shape: tuple[int, ...], *ops: jax.Array) -> jax.Array:
        (out,) = _cpu_ffi.call(self.names[name], [jax.ShapeDtypeStruct(shape, self.dt)],
                               *(jnp.asarray(o, self.dt) for o in ops))
        return out

    def product(self, x1, x2, w=None):
        ops = (x1, x2) if w is None else (x1, x2, w)
        return self._call("fwd", (x1.shape[0], self.d.irreps_out.dim), *ops)

    def grad_x1(self, x2, w, ct):
        ops = (x2, ct) if w is None else (x2, w, ct)
        return self._call("x1", (ct.shape[0], self.d.irreps_in1.dim), *ops)

    def grad_x2(self, x1, w, ct):
        ops = (x1, ct) if w is None else (x1, w, ct)
        return self._call("x2", (ct.shape[0], self.d.irreps_in2.dim), *ops)

    def grad_w(self, x1, x2, ct, per_sample):
        n = self.d.weight_numel + 1
        return self._call("w", (ct.shape[0], n) if per_sample else (n,), x1, x2, ct)

    def dual(self, *operands, need, per_sample=False):
        """``operands``: ``x1, x2[, w], ct`` then the directions ``v1, v2[, vw]``; the
        derivative of the gradients flagged in ``need`` along them, one call."""
        self.kernels.prepare(self.dt, ("bwd_dual",))  # compiled when first traced
        return self._grads(("dual", tuple(need)), operands, need, per_sample)

    def _grads(self, name, operands, need, per_sample):
        b = operands[0].shape[0]
        n = self.d.weight_numel + 1
        shapes = [(b, self.d.irreps_in1.dim), (b, self.d.irreps_in2.dim),
                  (b, n) if per_sample else (n,)]
        res = [jax.ShapeDtypeStruct(shapes[i], self.dt) for i, f in enumerate(need) if f]
        return tuple(_cpu_ffi.call(self.names[name], res,
                                   *(jnp.asarray(o, self.dt) for o in operands)))

    def joint(self, *operands, need, per_sample=False):
        """``operands``: ``x1, x2[, w], ct``; the gradients flagged in ``need``, one call."""
        return self._grads(tuple(need), operands, need, per_sample)


@lru_cache(maxsize=128)
def _primitive(plan: ChannelwisePlan, dt, weights: str | None, cpu_kernels: bool
               ) -> Multilinear:
    """The product as a :mod:`tp_jax._multilinear` primitive: slots ``x1, x2[, w], out``;
    ``weights`` None, ``"shared"`` or ``"per_sample"``; ``cpu_kernels``: on CPU, the compiled
    kernels."""
    d, t = plan.descriptor, _Transposes(plan, dt)
    slots = [Slot(d.irreps_in1.dim), Slot(d.irreps_in2.dim)]
    if weights is None:
        fns = (lambda x2, ct: t.grad_x1(x2, None, ct), lambda x1, ct: t.grad_x2(x1, None, ct),
               lambda x1, x2: _product(plan, x1, x2, None))
    else:
        per_sample = weights == "per_sample"
        slots.append(Slot(d.weight_numel + 1, 0 if per_sample else None))
        fns = (t.grad_x1, t.grad_x2, lambda x1, x2, ct: t.grad_w(x1, x2, ct, per_sample),
               lambda x1, x2, w: _product(plan, x1, x2, w))
    if not cpu_kernels:
        return Multilinear(fns=fns, slots=(*slots, Slot(d.irreps_out.dim)))
    kern = _Kernels(plan, dt, weights)
    per_sample = weights == "per_sample"
    if weights is None:
        kfns = (lambda x2, ct: kern.grad_x1(x2, None, ct),
                lambda x1, ct: kern.grad_x2(x1, None, ct), kern.product)
    else:
        kfns = (kern.grad_x1, kern.grad_x2,
                lambda x1, x2, ct: kern.grad_w(x1, x2, ct, per_sample), kern.product)

    def separate(i, ops):
        return fns[i](*ops)

    def joint(*operands, need):
        """The gradients in ``need``: one kernel call on CPU, the transposes elsewhere."""
        return _cpu_ffi.on_cpu(lambda *ops: kern.joint(*ops, need=need, per_sample=per_sample),
                       lambda *ops: tuple(joint_terms(separate, ops, need)))(*operands)

    def joint_dual(*operands, need):
        """The gradients' derivative along the inputs' directions: one kernel call on CPU,
        sums of the transposes elsewhere."""
        return _cpu_ffi.on_cpu(lambda *ops: kern.dual(*ops, need=need, per_sample=per_sample),
                       lambda *ops: tuple(dual_terms(separate, ops, need)))(*operands)

    return Multilinear(fns=tuple(_cpu_ffi.on_cpu(kf, f) for kf, f in zip(kfns, fns, strict=True)),
                       slots=(*slots, Slot(d.irreps_out.dim)), joint=joint,
                       joint_dual=joint_dual)
