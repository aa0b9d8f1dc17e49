"""CGTP methods: ``dense`` (per path), ``fused`` (grouped, CG-sparsity aware), ``sparse`` (COO).

All three compute, for every path ``p`` of a :class:`tp_spec.CGTPDescriptor`,
``out[i_out] += coefficient * W . C(l1, l2, l3) . x1[i_in1] . x2[i_in2]`` contracted over the
channels according to the e3nn mode. Unweighted paths use ``W = 1``.

``fused`` (the fast default) has two regimes:

* scalar channels (every path has ``mul_in1 == mul_in2 == 1``, e.g. the MIMO workload) with
  shared or no weights: the whole product is ``out[k] = sum K[(i, j), k] x1[i] x2[j]`` with
  ``K`` = CG x coefficient x weight of *all* paths (weights folded in at run time by one gather
  of a constant-size array). The real CG couples orders only as ``|m3| = |m1| +- |m2|``, and the
  four products ``x1[+-a] x2[+-b]`` enter two at a time with fixed relative sign +-1 (a complex
  product in disguise), so the rows are the combined products ``x1[i] x2[j] + s x1[i'] x2[j']``
  (half the plain outer product). Output columns are grouped by ``(|m3|, sign m3, l3 mod 2)``;
  a group's rows and columns form one small dense GEMM (nonzero density ~0.3 instead of ~0.01
  for the dense product), and groups of similar size are padded into a few batched GEMMs
  (``dot_general`` with a batch dimension: few HLO ops, fast compiles). The batch runs through
  ``lax.map`` in chunks of ``CHUNK`` rows, transposed to ``(features, rows)``, so that the
  products of one chunk stay in cache (that, not the MACs, bounds the speed on CPU).
  Reverse mode: every fixed row gather is a ``row_take`` (``_rows``) whose transpose is a
  gather + reshape-sum, not a scatter-add, and the chunk step is ``jax.checkpoint``ed (the
  backward recomputes a chunk's products in cache instead of storing them for the batch).
* otherwise: paths sharing the input blocks ``(i1, i2)`` are contracted with one concatenated
  CG tensor ``(d1, d2, sum d3)`` (one GEMM per pair instead of one per path), then the
  per-path channel weights are applied by mode.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import tp_spec
from tp_spec import CGTPDescriptor
from tp_spec.descriptor import mode_subscripts
from tp_spec.plan.cgtp import DensePlan, SparsePlan

from ._channels import buckets
from ._ops import const, einsum, ix
from ._rows import row_take

# ----------------------------------------------------------------------------- helpers


def _cg(l1: int, l2: int, l3: int) -> np.ndarray:
    return np.asarray(tp_spec.clebsch_gordan(l1, l2, l3), dtype=np.float64)


def _offsets(irreps: tp_spec.Irreps) -> list[int]:
    return [s.start for s in irreps.slices()]


def _block(x: jax.Array, irreps: tp_spec.Irreps, i: int) -> jax.Array:
    s = irreps.slices()[i]
    mul, ir = irreps[i]
    return x[:, s].reshape(x.shape[0], mul, ir.dim)




def _path_weight(p: tp_spec.Path, w: jax.Array | None, dtype) -> tuple[jax.Array, bool]:
    """The weight block of path ``p``: ``(W, batched)``; ones for unweighted paths."""
    from tp_spec.descriptor import mode_weight_shape

    shape = mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out)
    if not p.has_weight:
        return jnp.ones(shape, dtype), False
    blk = w[..., p.weight_slice]
    if w.ndim == 1:
        return blk.reshape(shape), False
    return blk.reshape((w.shape[0],) + shape), True


def _assemble(d: CGTPDescriptor, blocks: dict[int, jax.Array], n: int, dtype) -> jax.Array:
    """Concatenate per-output-block results ``(N, mul, 2l+1)`` into ``(N, irreps_out.dim)``."""
    parts = []
    for i, (mul, ir) in enumerate(d.irreps_out):
        if mul * ir.dim == 0:
            continue
        blk = blocks.get(i)
        parts.append(jnp.zeros((n, mul * ir.dim), dtype) if blk is None
                     else blk.reshape(n, mul * ir.dim))
    if not parts:
        return jnp.zeros((n, 0), dtype)
    return jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def _add(blocks: dict[int, jax.Array], i: int, v: jax.Array) -> None:
    blocks[i] = v if i not in blocks else blocks[i] + v


def _apply_mode(p: tp_spec.Path, z: jax.Array, w: jax.Array | None, dtype) -> jax.Array:
    """Channel weights of path ``p`` on ``z``: ``(N, u, v, k)`` or ``(N, u, k)`` (uu modes)."""
    a, b, o, ws = mode_subscripts(p.mode)
    W, batched = _path_weight(p, w, dtype)
    zin = "n" + (a if a == b else a + b) + "k"
    res = einsum(f"{zin},{'n' if batched else ''}{ws}->n{o}k", z, W)
    return res.reshape(z.shape[0], p.mul_out, p.ir_out.dim)


# ----------------------------------------------------------------------------- dense
def _run_dense(plan: DensePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``dense``: one einsum per path with its folded CG block."""
    d, n, dt = plan.descriptor, x1.shape[0], x1.dtype
    blocks: dict[int, jax.Array] = {}
    for p, c in zip(d.paths, plan.cg, strict=True):
        if p.mul_in1 * p.mul_in2 * p.mul_out == 0:
            continue
        a, b, o, ws = mode_subscripts(p.mode)
        W, batched = _path_weight(p, w, dt)
        x = _block(x1, d.irreps_in1, p.i_in1)
        y = _block(x2, d.irreps_in2, p.i_in2)
        spec = f"n{a}i,n{b}j,ijk,{'n' if batched else ''}{ws}->n{o}k"
        z = einsum(spec, x, y, const(c, dt), W, optimize="optimal")
        _add(blocks, p.i_out, z.reshape(n, p.mul_out, p.ir_out.dim))
    return _assemble(d, blocks, n, dt)


# ----------------------------------------------------------------------------- sparse
def _run_sparse(plan: SparsePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``sparse``: one gather-multiply over every nonzero term, one sorted segment sum."""
    n, dt = x1.shape[0], x1.dtype
    dim_out = plan.descriptor.irreps_out.dim
    if plan.value.size == 0:
        return jnp.zeros((n, dim_out), dt)
    prod = x1[:, ix(plan.i1)] * x2[:, ix(plan.i2)] * const(plan.value, dt)
    if w is not None:
        wext = jnp.concatenate([w, jnp.ones(w.shape[:-1] + (1,), dt)], axis=-1)
        prod = prod * wext[..., ix(plan.widx)]
    out_t = jax.ops.segment_sum(prod.T, ix(plan.out), num_segments=dim_out,
                                indices_are_sorted=True)
    return out_t.T


# ----------------------------------------------------------------------------- fused


@dataclass
class _Bucket:
    """Output groups of similar size, padded to ``(G, C, R)``: one batched GEMM per chunk.

    Row ``r`` of group ``g`` is ``x1[i1] x2[i2] + s x1[j1] x2[j2]`` (flat feature indices;
    index ``dim`` is a zero row, used for padding)."""

    rows: np.ndarray  # (4, G * R) indices (i1, i2, j1, j2)
    sign: np.ndarray  # (G * R,) in {-1, 0, 1}
    n_groups: int
    n_rows: int  # R (padded)
    n_cols: int  # C (padded)
    k_start: int  # offset of this bucket's K (G, C, R), row-major, in the flat K
    out_start: int  # offset of this bucket's (G * C) output rows in the concatenated output
    take1: object = None  # row_take of x1 rows [i1; j1] (or i1 alone without signs)
    take2: object = None  # row_take of x2 rows [i2; j2]


@dataclass
class _FusedPlan:
    d: CGTPDescriptor
    scalar: bool
    # scalar regime
    buckets: list[_Bucket] = field(default_factory=list)
    out_index: np.ndarray | None = None  # standard layout <- concatenated bucket outputs
    k_size: int = 0
    k_layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (val, widx)
    k_const: np.ndarray | None = None  # whole K when there is nothing to fold
    k_takes: list = field(default_factory=list)  # per layer: row_take of the weights
    out_take: object = None  # row_take: standard layout <- concatenated bucket outputs
    # grouped regime
    groups: list[tuple[int, int, bool, np.ndarray, list[tuple[tp_spec.Path, int, int]]]] = \
        field(default_factory=list)


def _is_scalar(d: CGTPDescriptor) -> bool:
    return all(p.mul_in1 == 1 and p.mul_in2 == 1 for p in d.paths)


def _build_fused(d: CGTPDescriptor) -> _FusedPlan:
    plan = _FusedPlan(d, _is_scalar(d))
    _build_grouped(d, plan)
    if plan.scalar:
        _build_scalar(d, plan)
    return plan


def _build_grouped(d: CGTPDescriptor, plan: _FusedPlan) -> None:
    groups: dict[tuple[int, int, bool], list[tp_spec.Path]] = defaultdict(list)
    for p in d.paths:
        if p.mul_in1 * p.mul_in2 * p.mul_out == 0:
            continue
        groups[(p.i_in1, p.i_in2, p.mode in ("uuw", "uuu"))].append(p)
    for (i1, i2, diag), ps in groups.items():
        cs, members, start = [], [], 0
        for p in ps:
            c = _cg(*p.lll) * p.coefficient
            cs.append(c)
            members.append((p, start, start + p.ir_out.dim))
            start += p.ir_out.dim
        plan.groups.append((i1, i2, diag, np.concatenate(cs, axis=2), members))


def _scalar_entries(d: CGTPDescriptor, c: np.ndarray, p: tp_spec.Path, o1: int, o2: int):
    """Nonzero CG entries of path ``p`` as combined rows: ``(row, m3, value)``.

    The real CG couples the orders ``(+-a, +-b)`` with ``a, b > 0`` through a complex product:
    with ``k`` fixed, ``C[-a, -m2, k] = s C[+a, m2, k]`` with ``s = +-1`` (checked here, entry by
    entry). So the four products ``x1[+-a] x2[+-b]`` enter as two combined rows
    ``x1[+a] x2[m2] + s x1[-a] x2[-m2]`` (half the rows of the plain outer product).
    A row is ``(i1, i2, j1, j2, s)`` (flat feature indices; ``s = 0``: a plain product).
    """
    l1, l2, l3 = p.lll
    out = []
    tol = 1e-12 * max(1.0, float(np.max(np.abs(c))))
    for i, j, k in zip(*np.nonzero(np.abs(c) > tol), strict=True):
        m1, m2, m3 = int(i) - l1, int(j) - l2, int(k) - l3
        v = float(c[i, j, k])
        if m1 != 0 and m2 != 0:
            partner = float(c[l1 - m1, l2 - m2, k])
            s = partner / v
            if abs(abs(s) - 1.0) < 1e-9:
                if m1 < 0:
                    continue  # folded into the row of (-m1, -m2)
                s = 1 if s > 0 else -1
                row = (o1 + l1 + m1, o2 + l2 + m2, o1 + l1 - m1, o2 + l2 - m2, s)
                out.append((row, m3, v))
                continue
        i1, i2 = o1 + l1 + m1, o2 + l2 + m2
        out.append(((i1, i2, i1, i2, 0), m3, v))
    return out


#: Batch rows per chunk: every intermediate of one chunk stays in the L2 cache.
CHUNK = 256


def _build_scalar(d: CGTPDescriptor, plan: _FusedPlan) -> None:
    o1, o2, oo = _offsets(d.irreps_in1), _offsets(d.irreps_in2), _offsets(d.irreps_out)
    numel = d.weight_numel
    z1, z2 = d.irreps_in1.dim, d.irreps_in2.dim  # zero rows
    # Output groups (|m3|, sign m3, l3 mod 2): entries[key][(row, col)] = [(value, w index)]
    entries: dict[tuple[int, int, int], dict[tuple, list[tuple[float, int]]]] = \
        defaultdict(lambda: defaultdict(list))
    cols: dict[tuple[int, int, int], set[int]] = defaultdict(set)
    for p in d.paths:
        if p.mul_out == 0:
            continue
        c = _cg(*p.lll) * p.coefficient
        l3 = p.ir_out.l
        for row, m3, v in _scalar_entries(d, c, p, o1[p.i_in1], o2[p.i_in2]):
            key = (abs(m3), 1 if m3 >= 0 else -1, l3 % 2)
            for w_ in range(p.mul_out):
                if not p.has_weight:
                    wi = numel
                elif p.mode in ("uvw", "uuw"):
                    wi = p.weight_offset + w_
                else:
                    wi = p.weight_offset
                col = oo[p.i_out] + w_ * p.ir_out.dim + l3 + m3
                cols[key].add(col)
                entries[key][(row, col)].append((v, wi))
    keys = sorted(entries)
    g_rows = [sorted({r for r, _ in entries[k]}) for k in keys]
    g_cols = [sorted(cols[k]) for k in keys]
    dim_out = d.irreps_out.dim
    out_index = np.full(dim_out, -1, dtype=np.int64)
    layers: list[tuple[list[int], list[float], list[int]]] = []
    k_start = out_start = 0
    for members in buckets([(len(g_rows[i]), len(g_cols[i])) for i in range(len(keys))]):
        nr = max(len(g_rows[i]) for i in members)
        nc = max(len(g_cols[i]) for i in members)
        rows = np.empty((5, len(members), nr), dtype=np.int64)
        rows[:] = np.array([z1, z2, z1, z2, 0])[:, None, None]
        for gi, i in enumerate(members):
            rows[:, gi, :len(g_rows[i])] = np.array(g_rows[i], dtype=np.int64).T
            rpos = {r: j for j, r in enumerate(g_rows[i])}
            cpos = {cc: j for j, cc in enumerate(g_cols[i])}
            for cc, j in cpos.items():
                out_index[cc] = out_start + gi * nc + j
            for (r, cc), lst in entries[keys[i]].items():
                pos = k_start + (gi * nc + cpos[cc]) * nr + rpos[r]
                for layer, (v, wi) in enumerate(lst):
                    while len(layers) <= layer:
                        layers.append(([], [], []))
                    layers[layer][0].append(pos)
                    layers[layer][1].append(v)
                    layers[layer][2].append(wi)
        flat = rows.reshape(5, -1)
        bk = _Bucket(flat[:4].copy(), flat[4].astype(np.float64), len(members),
                     nr, nc, k_start, out_start)
        paired = bool(np.any(bk.sign != 0))
        bk.take1 = row_take(np.concatenate([flat[0], flat[2]]) if paired else flat[0], z1)
        bk.take2 = row_take(np.concatenate([flat[1], flat[3]]) if paired else flat[1], z2)
        plan.buckets.append(bk)
        k_start += len(members) * nc * nr
        out_start += len(members) * nc
    plan.k_size = k_start
    for pos, vals, widx in layers:
        val = np.zeros(k_start)
        wix = np.full(k_start, numel, dtype=np.int64)
        val[pos] = vals
        wix[pos] = widx
        plan.k_layers.append((val, wix))
    if numel == 0 or all((wix == numel).all() for _, wix in plan.k_layers):
        plan.k_const = sum((v for v, _ in plan.k_layers), np.zeros(k_start))
    out_index[out_index < 0] = out_start  # never reached: a zero row
    plan.out_index = out_index
    plan.out_take = row_take(out_index, out_start)
    plan.k_takes = [row_take(wix, numel) for _, wix in plan.k_layers]


def _run_scalar(plan: _FusedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    n, dt = x1.shape[0], x1.dtype
    if plan.k_const is not None:
        kflat = const(plan.k_const, dt)
    else:
        # unweighted entries (index numel) read a zero row: add their values separately
        kflat = None
        for (val, wix), take in zip(plan.k_layers, plan.k_takes, strict=True):
            v = const(val, dt)
            part = v * take(w[:, None])[:, 0]
            if np.any(wix == w.shape[0]):
                part = part + const(np.where(wix == w.shape[0], val, 0.0), dt)
            kflat = part if kflat is None else kflat + part
    ks = [kflat[b.k_start:b.k_start + b.n_groups * b.n_cols * b.n_rows]
          .reshape(b.n_groups, b.n_cols, b.n_rows) for b in plan.buckets]

    def body(x1t: jax.Array, x2t: jax.Array) -> jax.Array:
        """One batch chunk, transposed: ``(d1, B), (d2, B) -> (dim_out, B)``."""
        bsz = x1t.shape[1]
        parts = []
        for b, k in zip(plan.buckets, ks, strict=True):
            a1, a2 = b.take1(x1t), b.take2(x2t)
            nrow = b.rows.shape[1]
            if a1.shape[0] > nrow:  # sign-paired rows
                rows = a1[:nrow] * a2[:nrow] + const(b.sign, dt)[:, None] * (a1[nrow:] * a2[nrow:])
            else:
                rows = a1 * a2
            rows = rows.reshape(b.n_groups, b.n_rows, bsz)
            y = einsum("gcr,grb->gcb", k, rows)
            parts.append(y.reshape(b.n_groups * b.n_cols, bsz))
        cat = jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        return plan.out_take(cat)

    if n <= CHUNK:
        return body(x1.T, x2.T).T
    nc = -(-n // CHUNK)
    pad = nc * CHUNK - n
    a = jnp.pad(x1, ((0, pad), (0, 0))).reshape(nc, CHUNK, -1).transpose(0, 2, 1)
    b = jnp.pad(x2, ((0, pad), (0, 0))).reshape(nc, CHUNK, -1).transpose(0, 2, 1)
    # checkpoint: reverse mode recomputes a chunk's products (cheap, in cache) instead of
    # stacking them for the whole batch as scan residuals (memory bound)
    step = jax.checkpoint(lambda ab: body(*ab))
    out = jax.lax.map(step, (a, b))  # (nc, dim_out, CHUNK)
    return out.transpose(0, 2, 1).reshape(nc * CHUNK, -1)[:n]


def _run_grouped(plan: _FusedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    d, n, dt = plan.d, x1.shape[0], x1.dtype
    blocks: dict[int, jax.Array] = {}
    for i1, i2, diag, c, members in plan.groups:
        x = _block(x1, d.irreps_in1, i1)
        y = _block(x2, d.irreps_in2, i2)
        cc = const(c, dt)
        if diag:
            z = einsum("nui,nuj,ijk->nuk", x, y, cc, optimize="optimal")
        else:
            z = einsum("nui,nvj,ijk->nuvk", x, y, cc, optimize="optimal")
        for p, s, e in members:
            _add(blocks, p.i_out, _apply_mode(p, z[..., s:e], w, dt))
    return _assemble(d, blocks, n, dt)


def _run_fused(plan: _FusedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    if plan.scalar and (w is None or w.ndim == 1):
        return _run_scalar(plan, x1, x2, w)
    return _run_grouped(plan, x1, x2, w)


#: Methods not yet executed from a tp_spec plan: name -> ``(build(d), run(state, x1, x2, w))``.
BUILDERS = {"fused": (_build_fused, _run_fused)}

#: tp_spec plan type -> executor.
RUNNERS = {DensePlan: _run_dense, SparsePlan: _run_sparse}
