"""CGTP methods: ``dense`` (per path), ``fused`` (grouped, CG-sparsity aware), ``sparse`` (COO).

All three compute, for every path ``p`` of a :class:`tp_spec.CGTPDescriptor`,
``out[i_out] += coefficient * W . C(l1, l2, l3) . x1[i_in1] . x2[i_in2]`` contracted over the
channels according to the e3nn mode (DESIGN section 3). Unweighted paths use ``W = 1``.

``fused`` (the fast default) has two regimes:

* scalar channels (every path has ``mul_in1 == mul_in2 == 1``, e.g. the MIMO workload) with
  shared or no weights: the real CG tables only couple orders ``m3 = +-(|m1| +- |m2|)``. Inputs
  are reordered by order ``m``; for each pair ``(m1, m2)`` the outer product of the two order
  slices ``(N, n1 * n2)`` is multiplied by one small dense matrix ``K[(i1, i2), (i_out, w, m3)]``
  holding CG x coefficient x weight of *all* paths at once (weights folded in at run time with
  one gather and one scatter of a constant-size array). Cost ~ sum_{m1,m2} n1 n2 n3 instead of
  sum_paths (2l1+1)(2l2+1)(2l3+1): about 9x fewer MACs at L = 10, all in dense GEMMs.
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

from ._api import Method, const, ix, register

# ----------------------------------------------------------------------------- helpers


def _cg(l1: int, l2: int, l3: int) -> np.ndarray:
    return np.asarray(tp_spec.clebsch_gordan(l1, l2, l3), dtype=np.float64)


def _offsets(irreps: tp_spec.Irreps) -> list[int]:
    return [s.start for s in irreps.slices()]


def _block(x: jax.Array, irreps: tp_spec.Irreps, i: int) -> jax.Array:
    s = irreps.slices()[i]
    mul, ir = irreps[i]
    return x[:, s].reshape(x.shape[0], mul, ir.dim)


# (x1 channels, x2 channels, output channels, weight subscripts) per mode
_MODE_SUBSCRIPTS = {
    "uvw": ("u", "v", "w", "uvw"),
    "uvu": ("u", "v", "u", "uv"),
    "uvv": ("u", "v", "v", "uv"),
    "uuw": ("u", "u", "w", "uw"),
    "uuu": ("u", "u", "u", "u"),
    "uvuv": ("u", "v", "uv", "uv"),
}


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


def _cgtp_available(d) -> str | None:
    if not isinstance(d, CGTPDescriptor):
        return f"not a CGTP descriptor ({type(d).__name__})"
    return None


def _add(blocks: dict[int, jax.Array], i: int, v: jax.Array) -> None:
    blocks[i] = v if i not in blocks else blocks[i] + v


def _apply_mode(p: tp_spec.Path, z: jax.Array, w: jax.Array | None, dtype) -> jax.Array:
    """Channel weights of path ``p`` on ``z``: ``(N, u, v, k)`` or ``(N, u, k)`` (uu modes)."""
    a, b, o, ws = _mode_subscripts_p(p)
    W, batched = _path_weight(p, w, dtype)
    zin = "n" + (a if a == b else a + b) + "k"
    res = jnp.einsum(f"{zin},{'n' if batched else ''}{ws}->n{o}k", z, W)
    return res.reshape(z.shape[0], p.mul_out, p.ir_out.dim)


def _mode_subscripts_p(p: tp_spec.Path) -> tuple[str, str, str, str]:
    return _MODE_SUBSCRIPTS[p.mode]


# ----------------------------------------------------------------------------- dense


@dataclass
class _DensePlan:
    d: CGTPDescriptor
    cg: list[np.ndarray]  # per path, CG * coefficient


def _build_dense(d: CGTPDescriptor) -> _DensePlan:
    return _DensePlan(d, [_cg(*p.lll) * p.coefficient for p in d.paths])


def _run_dense(plan: _DensePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    d, n, dt = plan.d, x1.shape[0], x1.dtype
    blocks: dict[int, jax.Array] = {}
    for p, c in zip(d.paths, plan.cg, strict=True):
        if p.mul_in1 * p.mul_in2 * p.mul_out == 0:
            continue
        a, b, o, ws = _MODE_SUBSCRIPTS[p.mode]
        W, batched = _path_weight(p, w, dt)
        x = _block(x1, d.irreps_in1, p.i_in1)
        y = _block(x2, d.irreps_in2, p.i_in2)
        spec = f"n{a}i,n{b}j,ijk,{'n' if batched else ''}{ws}->n{o}k"
        z = jnp.einsum(spec, x, y, const(c, dt), W, optimize="optimal")
        _add(blocks, p.i_out, z.reshape(n, p.mul_out, p.ir_out.dim))
    return _assemble(d, blocks, n, dt)


# ----------------------------------------------------------------------------- sparse


@dataclass
class _SparsePlan:
    d: CGTPDescriptor
    i1: np.ndarray
    i2: np.ndarray
    out: np.ndarray
    val: np.ndarray
    widx: np.ndarray  # index into [weights, 1]; weight_numel means "unweighted"


def _build_sparse(d: CGTPDescriptor) -> _SparsePlan:
    o1, o2, oo = _offsets(d.irreps_in1), _offsets(d.irreps_in2), _offsets(d.irreps_out)
    rows: list[np.ndarray] = []
    values: list[np.ndarray] = []
    numel = d.weight_numel
    for p in d.paths:
        c = _cg(*p.lll) * p.coefficient
        a, b, k = np.nonzero(c)
        if a.size == 0 or p.mul_in1 * p.mul_in2 * p.mul_out == 0:
            continue
        m1, m2, mo = p.mul_in1, p.mul_in2, p.mul_out
        d1, d2, d3 = p.ir_in1.dim, p.ir_in2.dim, p.ir_out.dim
        if p.mode in ("uvw",):
            u, v, ww = np.meshgrid(np.arange(m1), np.arange(m2), np.arange(mo), indexing="ij")
            u, v, ww = u.ravel(), v.ravel(), ww.ravel()
            wflat = (u * m2 + v) * mo + ww
        elif p.mode in ("uvu", "uvv", "uvuv"):
            u, v = (g.ravel() for g in np.meshgrid(np.arange(m1), np.arange(m2), indexing="ij"))
            ww = {"uvu": u, "uvv": v, "uvuv": u * m2 + v}[p.mode]
            wflat = u * m2 + v
        elif p.mode == "uuw":
            u, ww = (g.ravel() for g in np.meshgrid(np.arange(m1), np.arange(mo), indexing="ij"))
            v = u
            wflat = u * mo + ww
        else:  # uuu
            u = np.arange(m1)
            v, ww, wflat = u, u, u
        wi = p.weight_offset + wflat if p.has_weight else np.full_like(wflat, numel)
        ii1 = o1[p.i_in1] + u[:, None] * d1 + a[None, :]
        ii2 = o2[p.i_in2] + v[:, None] * d2 + b[None, :]
        io = oo[p.i_out] + ww[:, None] * d3 + k[None, :]
        val = np.broadcast_to(c[a, b, k][None, :], ii1.shape)
        wi = np.broadcast_to(wi[:, None], ii1.shape)
        rows.append(np.stack([ii1.ravel(), ii2.ravel(), io.ravel(), wi.ravel()]).astype(np.int64))
        values.append(val.ravel())
    if rows:
        idx = np.concatenate(rows, axis=1)
        val = np.concatenate(values)
        order = np.argsort(idx[2], kind="stable")
        idx, val = idx[:, order], val[order]
    else:
        idx, val = np.zeros((4, 0), np.int64), np.zeros(0)
    return _SparsePlan(d, idx[0], idx[1], idx[2], val, idx[3])


def _run_sparse(plan: _SparsePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    d, n, dt = plan.d, x1.shape[0], x1.dtype
    dim_out = d.irreps_out.dim
    if plan.val.size == 0:
        return jnp.zeros((n, dim_out), dt)
    prod = x1[:, ix(plan.i1)] * x2[:, ix(plan.i2)] * const(plan.val, dt)
    if d.weight_numel:
        wext = jnp.concatenate([w, jnp.ones(w.shape[:-1] + (1,), dt)], axis=-1)
        prod = prod * wext[..., ix(plan.widx)]
    out_t = jax.ops.segment_sum(prod.T, ix(plan.out), num_segments=dim_out, indices_are_sorted=True)
    return out_t.T


# ----------------------------------------------------------------------------- fused


@dataclass
class _PairBlock:
    """One ``(m1, m2)`` order pair of the scalar-channel regime."""

    sel1: int  # index into the per-m1 gathers
    sel2: int
    n_rows: int
    targets: list[tuple[int, int, int]]  # (m3 group index, column start in K, width)
    k_start: int  # offset of this block's K (row-major (n_rows, n_cols)) in the flat K
    n_cols: int


@dataclass
class _FusedPlan:
    d: CGTPDescriptor
    scalar: bool
    # scalar regime
    m1_index: list[np.ndarray] = field(default_factory=list)  # flat x1 indices per m1 group
    m2_index: list[np.ndarray] = field(default_factory=list)
    blocks: list[_PairBlock] = field(default_factory=list)
    m3_sizes: list[int] = field(default_factory=list)
    out_perm: np.ndarray | None = None  # standard layout <- m3-major layout
    k_size: int = 0
    k_pos: np.ndarray | None = None  # positions in flat K of every CG entry
    k_val: np.ndarray | None = None
    k_widx: np.ndarray | None = None  # weight index, numel = unweighted
    k_const: np.ndarray | None = None  # whole K when there is nothing to fold
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


def _build_scalar(d: CGTPDescriptor, plan: _FusedPlan) -> None:
    o1, o2, oo = _offsets(d.irreps_in1), _offsets(d.irreps_in2), _offsets(d.irreps_out)
    lmax1 = max([ir.l for _, ir in d.irreps_in1], default=0)
    lmax2 = max([ir.l for _, ir in d.irreps_in2], default=0)
    numel = d.weight_numel
    # per-order gathers of the (mul 1) input blocks used by some path
    used1 = sorted({p.i_in1 for p in d.paths if p.mul_out})
    used2 = sorted({p.i_in2 for p in d.paths if p.mul_out})
    rows1 = {m: [i for i in used1 if d.irreps_in1[i].ir.l >= abs(m)]
             for m in range(-lmax1, lmax1 + 1)}
    rows2 = {m: [i for i in used2 if d.irreps_in2[i].ir.l >= abs(m)]
             for m in range(-lmax2, lmax2 + 1)}
    m1_keys = [m for m in rows1 if rows1[m]]
    m2_keys = [m for m in rows2 if rows2[m]]
    for m in m1_keys:
        plan.m1_index.append(np.array([o1[i] + d.irreps_in1[i].ir.l + m for i in rows1[m]]))
    for m in m2_keys:
        plan.m2_index.append(np.array([o2[i] + d.irreps_in2[i].ir.l + m for i in rows2[m]]))
    # output columns grouped by order m3: every output component (block, channel, m3)
    lmax_o = max([ir.l for _, ir in d.irreps_out], default=0)
    col_of: dict[tuple[int, int, int], tuple[int, int]] = {}  # (i_out, w, m3) -> (group, col)
    m3_cols: dict[int, list[int]] = {}
    for m3 in range(-lmax_o, lmax_o + 1):
        cols = []
        for io, (mul, ir) in enumerate(d.irreps_out):
            if ir.l < abs(m3):
                continue
            for w_ in range(mul):
                col_of[(io, w_, m3)] = (m3 + lmax_o, len(cols))
                cols.append(oo[io] + w_ * ir.dim + ir.l + m3)
        m3_cols[m3] = cols
    plan.m3_sizes = [len(m3_cols[m]) for m in range(-lmax_o, lmax_o + 1)]
    std = np.concatenate([np.array(m3_cols[m], dtype=np.int64)
                          for m in range(-lmax_o, lmax_o + 1)] + [np.zeros(0, np.int64)])
    perm = np.zeros(d.irreps_out.dim, dtype=np.int64)
    perm[std] = np.arange(std.size)
    has_col = np.zeros(d.irreps_out.dim, dtype=bool)
    has_col[std] = True
    plan.out_perm = perm if has_col.all() else None
    # entries per (m1, m2): row (r1, r2), target m3 group, column within group
    entries: dict[tuple[int, int], list[tuple[int, int, int, float, int]]] = defaultdict(list)
    for p in d.paths:
        if p.mul_out == 0:
            continue
        c = _cg(*p.lll) * p.coefficient
        l1, l2, l3 = p.lll
        for a, b, k in zip(*np.nonzero(c), strict=True):
            m1, m2, m3 = int(a) - l1, int(b) - l2, int(k) - l3
            r = rows1[m1].index(p.i_in1) * len(rows2[m2]) + rows2[m2].index(p.i_in2)
            for w_ in range(p.mul_out):
                if not p.has_weight:
                    wi = numel
                elif p.mode in ("uvw", "uuw"):
                    wi = p.weight_offset + w_
                else:
                    wi = p.weight_offset
                g, col = col_of[(p.i_out, w_, m3)]
                entries[(m1, m2)].append((r, g, col, float(c[a, b, k]), wi))
    pos, vals, widx = [], [], []
    k_start = 0
    for (m1, m2), ents in sorted(entries.items()):
        groups_hit = sorted({e[1] for e in ents})
        starts, width = {}, 0
        for g in groups_hit:
            starts[g] = width
            width += plan.m3_sizes[g]
        n_rows = len(rows1[m1]) * len(rows2[m2])
        for r, g, col, v, wi in ents:
            pos.append(k_start + r * width + starts[g] + col)
            vals.append(v)
            widx.append(wi)
        plan.blocks.append(_PairBlock(m1_keys.index(m1), m2_keys.index(m2), n_rows,
                                      [(g, starts[g], plan.m3_sizes[g]) for g in groups_hit],
                                      k_start, width))
        k_start += n_rows * width
    plan.k_size = k_start
    plan.k_pos = np.array(pos, dtype=np.int64)
    plan.k_val = np.array(vals, dtype=np.float64)
    plan.k_widx = np.array(widx, dtype=np.int64)
    if numel == 0 or (plan.k_widx == numel).all():
        k = np.zeros(k_start)
        np.add.at(k, plan.k_pos, plan.k_val)
        plan.k_const = k


def _run_scalar(plan: _FusedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    d, n, dt = plan.d, x1.shape[0], x1.dtype
    if plan.k_const is not None:
        kflat = const(plan.k_const, dt)
    else:
        wext = jnp.concatenate([w, jnp.ones((1,), dt)])
        kflat = jnp.zeros((plan.k_size,), dt).at[ix(plan.k_pos)].add(
            const(plan.k_val, dt) * wext[ix(plan.k_widx)])
    # Transposed layout (features, N): row gathers and row-wise outer products vectorize over
    # the batch, and the GEMMs are (cols, rows) @ (rows, N).
    x1t, x2t = x1.T, x2.T
    g1 = [x1t[ix(idx)] for idx in plan.m1_index]
    g2 = [x2t[ix(idx)] for idx in plan.m2_index]
    acc: list[jax.Array | None] = [None] * len(plan.m3_sizes)
    for blk in plan.blocks:
        a, b = g1[blk.sel1], g2[blk.sel2]
        outer = (a[:, None, :] * b[None, :, :]).reshape(blk.n_rows, n)
        k = kflat[blk.k_start:blk.k_start + blk.n_rows * blk.n_cols].reshape(blk.n_rows,
                                                                               blk.n_cols)
        z = k.T @ outer
        for g, start, width in blk.targets:
            part = z[start:start + width]
            acc[g] = part if acc[g] is None else acc[g] + part
    parts = [jnp.zeros((s, n), dt) if a is None else a
             for a, s in zip(acc, plan.m3_sizes, strict=True)]
    cat = jnp.concatenate(parts, axis=0) if parts else jnp.zeros((0, n), dt)
    if plan.out_perm is None:  # outputs with no column (zero-multiplicity edge cases)
        return jnp.zeros((n, d.irreps_out.dim), dt)
    return cat[ix(plan.out_perm)].T


def _run_grouped(plan: _FusedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    d, n, dt = plan.d, x1.shape[0], x1.dtype
    blocks: dict[int, jax.Array] = {}
    for i1, i2, diag, c, members in plan.groups:
        x = _block(x1, d.irreps_in1, i1)
        y = _block(x2, d.irreps_in2, i2)
        cc = const(c, dt)
        if diag:
            z = jnp.einsum("nui,nuj,ijk->nuk", x, y, cc, optimize="optimal")
        else:
            z = jnp.einsum("nui,nvj,ijk->nuvk", x, y, cc, optimize="optimal")
        for p, s, e in members:
            _add(blocks, p.i_out, _apply_mode(p, z[..., s:e], w, dt))
    return _assemble(d, blocks, n, dt)


def _run_fused(plan: _FusedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    if plan.scalar and (w is None or w.ndim == 1):
        return _run_scalar(plan, x1, x2, w)
    return _run_grouped(plan, x1, x2, w)


register(Method("cgtp", "dense", _cgtp_available, _build_dense, _run_dense,
                "one einsum per path (the e3nn way)"))
register(Method("cgtp", "fused", _cgtp_available, _build_fused, _run_fused,
                "order-blocked GEMMs with folded weights; grouped by input pair otherwise"))
register(Method("cgtp", "sparse", _cgtp_available, _build_sparse, _run_sparse,
                "gather / segment-sum over the nonzero CG entries"))
