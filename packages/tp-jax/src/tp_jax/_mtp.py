"""MTP methods: ``dense`` and ``sparse`` change of basis around batched ``n x n`` matmuls.

Per channel, each input splits by parity ``p`` into ``X_p = sum x_lm B^(l)_m`` (``n x n``,
``B^(l)_m = sqrt(2l+1) C(lt, lt, l)[:, :, m]``); ``Z_e = X1e X2e + X1o X2o``,
``Z_o = X1e X2o + X1o X2e``; ``z_(l,p) = sqrt(n) <B^(l)_m, Z_p>``.

``dense``: embedding and read-out are GEMMs with the dense ``(rows, n^2)`` basis (O(L^4)).
``sparse``: both are block-sparse: the basis columns are grouped by their row support (each
group one small dense block, so the work is the nonzeros of ``C(lt, lt, l)``, O(n^3) in all,
instead of the dense O(L^4)); blocks of similar size are padded into a few batched GEMMs.
Both methods run the batch in chunks of ``CHUNK`` rows (``lax.map``) so the ``n x n``
intermediates stay in cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.mtp import MTPDescriptor

from ._api import Method, const, ix, register
from ._channels import (
    ChannelLayout,
    block_index,
    buckets,
    channel_layout,
    finish,
    scale_inputs,
    with_zero_column,
)


def _mtp_available(d) -> str | None:
    if not isinstance(d, MTPDescriptor):
        return f"not an MTP descriptor ({type(d).__name__})"
    return None


def _rows(irreps, p: int) -> tuple[list[int], list[tuple[int, int]]]:
    blocks = [i for i, (_, ir) in enumerate(irreps) if ir.p == p]
    rows = [(irreps[i].ir.l, m) for i in blocks for m in range(-irreps[i].ir.l,
                                                              irreps[i].ir.l + 1)]
    return blocks, rows


def _basis_rows(d: MTPDescriptor, rows: list[tuple[int, int]]) -> np.ndarray:
    """``(len(rows), n*n)``: row ``(l, m)`` is ``B^(l)_m`` flattened."""
    n = d.n
    out = np.zeros((len(rows), n * n))
    cache: dict[int, np.ndarray] = {}
    for r, (l, m) in enumerate(rows):
        if l not in cache:
            cache[l] = d.basis(l)
        out[r] = cache[l][:, :, l + m].reshape(n * n)
    return out


def _block_sparse(mat: np.ndarray, tol: float = 1e-14) -> tuple:
    """Block-sparse form of ``mat (R, Q)`` for ``out = mat.T @ v``.

    The columns are grouped by their row support ``S`` (each group one small dense block
    ``mat[S][:, cols].T``, so the MACs equal the nonzeros); groups of similar size are padded
    into buckets, one batched GEMM each. Returns ``(buckets, perm)``: ``buckets`` a list of
    ``(rows (G * Rp,), blocks (G, Cp, Rp))`` (row index ``R`` is a zero row) and ``perm``
    mapping column ``q`` to its row in the concatenated bucket outputs (plus a final zero
    row for all-zero columns)."""
    support: dict[tuple[int, ...], list[int]] = {}
    for q in range(mat.shape[1]):
        support.setdefault(tuple(np.nonzero(np.abs(mat[:, q]) > tol)[0]), []).append(q)
    groups = [(list(rows), cols) for rows, cols in support.items() if rows]
    total = 0
    perm = np.full(mat.shape[1], -1, dtype=np.int64)
    out = []
    for members in buckets([(len(r), len(c)) for r, c in groups]):
        rp = max(len(groups[i][0]) for i in members)
        cp = max(len(groups[i][1]) for i in members)
        rows = np.full((len(members), rp), mat.shape[0], dtype=np.int64)
        blocks = np.zeros((len(members), cp, rp))
        for gi, i in enumerate(members):
            r, c = groups[i]
            rows[gi, :len(r)] = r
            blocks[gi, :len(c), :len(r)] = mat[np.ix_(r, c)].T
            perm[c] = total + gi * cp + np.arange(len(c))
        out.append((rows.reshape(-1), blocks))
        total += len(members) * cp
    perm[perm < 0] = total
    return out, perm


@dataclass
class _MTPPlan:
    d: MTPDescriptor
    sparse: bool
    layout: ChannelLayout
    idx1: dict[int, np.ndarray] = field(default_factory=dict)  # parity -> (rows, C) gather
    idx2: dict[int, np.ndarray] = field(default_factory=dict)
    embed1: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict)
    embed2: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict)
    read: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict)  # out parity
    out_order: list[int] = field(default_factory=list)
    out_index: np.ndarray | None = None


def _build(d: MTPDescriptor, sparse: bool) -> _MTPPlan:
    plan = _MTPPlan(d, sparse, channel_layout(d))
    for p in (1, -1):
        for irreps, idx, emb, ch in ((d.irreps_in1, plan.idx1, plan.embed1, d.channels),
                                     (d.irreps_in2, plan.idx2, plan.embed2, d.channels_in2)):
            blocks, rows = _rows(irreps, p)
            if not rows:
                continue
            idx[p] = block_index(irreps, blocks, rows, ch, irreps.dim)
            e = _basis_rows(d, rows)
            emb[p] = _block_sparse(e) if sparse else (e,)
    # read-out
    base = 0
    pos: dict[int, tuple[int, int, dict[tuple[int, int], int]]] = {}
    for p in (1, -1):
        _, rows = _rows(d.irreps_out, p)
        if not rows:
            continue
        plan.out_order.append(p)
        r = d.scale * _basis_rows(d, rows).T  # (n*n, rows)
        plan.read[p] = _block_sparse(r) if sparse else (r,)
        pos[p] = (base, len(rows), {rw: k for k, rw in enumerate(rows)})
        base += len(rows) * d.channels
    idx = []
    for mul, ir in d.irreps_out:
        b, nrows, rmap = pos[ir.p]
        for c in range(mul):
            for m in range(-ir.l, ir.l + 1):
                idx.append(b + c * nrows + rmap[(ir.l, m)])
    plan.out_index = np.array(idx, dtype=np.int64)
    return plan


def _apply_sparse(vt: jax.Array, blocks_: list, perm: np.ndarray, dt) -> jax.Array:
    """Transposed layout: ``vt (R, B)`` -> ``(Q, B)``, ``out = mat.T @ vt`` block-sparse."""
    b = vt.shape[1]
    zero = jnp.zeros((1, b), dt)
    vz = jnp.concatenate([vt, zero], axis=0)
    parts = []
    for rows, blocks in blocks_:
        g, cp, rp = blocks.shape
        y = jnp.einsum("gcr,grb->gcb", const(blocks, dt), vz[ix(rows)].reshape(g, rp, b))
        parts.append(y.reshape(g * cp, b))
    parts.append(zero)
    return jnp.concatenate(parts, axis=0)[ix(perm)]


#: Batch rows per chunk (``lax.map``): the per-chunk intermediates stay in cache.
CHUNK = 512


def _run(plan: _MTPPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    x1, x2, mult = scale_inputs(plan.layout, x1, x2, w)
    out = chunked(lambda a, b: _core(plan, a, b), x1, x2, CHUNK)
    return finish(out, mult)


def chunked(fn, x1: jax.Array, x2: jax.Array, chunk: int) -> jax.Array:
    """``fn`` (row-wise, ``(B, d1), (B, d2) -> (B, d)``) over batch chunks of ``chunk`` rows."""
    n = x1.shape[0]
    if n <= chunk:
        return fn(x1, x2)
    nc = -(-n // chunk)
    pad = nc * chunk - n
    a = jnp.pad(x1, ((0, pad), (0, 0))).reshape(nc, chunk, x1.shape[1])
    b = jnp.pad(x2, ((0, pad), (0, 0))).reshape(nc, chunk, x2.shape[1])
    out = jax.lax.map(lambda ab: fn(*ab), (a, b))
    return out.reshape(nc * chunk, out.shape[-1])[:n]


def _core(plan: _MTPPlan, x1: jax.Array, x2: jax.Array) -> jax.Array:
    d, nb, dt, n = plan.d, x1.shape[0], x1.dtype, plan.d.n
    x1e, x2e = with_zero_column(x1), with_zero_column(x2)

    def embed(xe, idx, emb) -> dict[int, jax.Array]:
        out = {}
        for p, gi in idx.items():
            rows = xe[:, ix(gi)]  # (N, rows, C)
            ch = rows.shape[2]
            if plan.sparse:
                rt = jnp.transpose(rows, (1, 0, 2)).reshape(rows.shape[1], nb * ch)
                flat = _apply_sparse(rt, *emb[p], dt).reshape(n, n, nb, ch)
                out[p] = jnp.transpose(flat, (2, 3, 0, 1))
            else:
                flat = jnp.swapaxes(rows, 1, 2) @ const(emb[p][0], dt)
                out[p] = flat.reshape(nb, ch, n, n)
        return out

    m1 = embed(x1e, plan.idx1, plan.embed1)
    m2 = embed(x2e, plan.idx2, plan.embed2)
    parts = []
    for p in plan.out_order:
        z = None
        for p1, a in m1.items():
            p2 = p * p1
            if p2 in m2:
                prod = jnp.matmul(a, m2[p2])  # one x2 channel broadcasts
                z = prod if z is None else z + prod
        nrows = len(_rows(d.irreps_out, p)[1])
        if z is None:
            parts.append(jnp.zeros((nb, d.channels * nrows), dt))
            continue
        zf = z.reshape(nb, d.channels, n * n)
        if plan.sparse:
            zt = jnp.transpose(zf, (2, 0, 1)).reshape(n * n, nb * d.channels)
            r = _apply_sparse(zt, *plan.read[p], dt).reshape(-1, nb, d.channels)
            r = jnp.transpose(r, (1, 2, 0))  # (N, C, rows)
        else:
            r = zf @ const(plan.read[p][0], dt)
        parts.append(r.reshape(nb, -1))
    if not parts:
        return jnp.zeros((nb, 0), dt)
    cat = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return cat[:, ix(plan.out_index)]


register(Method("mtp", "dense", _mtp_available, lambda d: _build(d, False), _run,
                "dense change of basis GEMMs around n x n matmuls"))
register(Method("mtp", "sparse", _mtp_available, lambda d: _build(d, True), _run,
                "block-sparse change of basis (GEMM per support group) around n x n matmuls"))
