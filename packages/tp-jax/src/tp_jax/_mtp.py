"""MTP methods: ``dense`` and ``sparse`` change of basis around per-sample ``n x n`` products.

Per channel, each input splits by parity ``p`` into ``X_p = sum x_lm B^(l)_m`` (``n x n``,
``B^(l)_m = sqrt(2l+1) C(lt, lt, l)[:, :, m]``); ``Z_e = X1e X2e + X1o X2o``,
``Z_o = X1e X2o + X1o X2e``; ``z_(l,p) = sqrt(n) <B^(l)_m, Z_p>``.

Everything runs batch-innermost: the batch (in chunks only when huge, ``CHUNK_ELEMENTS``) is
transposed once to ``(features, C, samples)``, so the embedding and the read-out are GEMMs whose
long dimension is ``C x samples``, and the ``n x n`` products are :func:`tp_jax._bmm.bmm`
(``n`` fused multiply-adds over whole rows, vectorised along the samples, whose derivatives are
again ``bmm``) instead of a batch of tiny matmuls. Reverse mode has no scatter: the transposes of
slices, reshapes and of :func:`row_take` gathers are slices, reshapes and gathers.

``dense``: embedding and read-out multiply by the dense ``(n^2, rows)`` basis (O(L^4) per
sample). ``sparse``: both are block-sparse: the basis rows are grouped by their column support
(each group one small dense block, so the work is the nonzeros of ``C(lt, lt, l)``, O(n^3) in
all); blocks of similar size are padded into a few batched GEMMs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.mtp import MTPDescriptor

from ._api import HIGHEST, Method, const, einsum, register
from ._bmm import bmm
from ._channels import ChannelLayout, buckets, channel_layout, finish, row_take, scale_inputs


def _mtp_available(d) -> str | None:
    if not isinstance(d, MTPDescriptor):
        return f"not an MTP descriptor ({type(d).__name__})"
    return None


@dataclass
class _Linear:
    """``v (R, M) -> mat @ v (Q, M)`` for a constant ``mat (Q, R)``, dense or block-sparse."""

    shape: tuple[int, int]
    dense: np.ndarray | None = None
    blocks: list[tuple] = field(default_factory=list)  # (gather rows of v, (G, Cp, Rp) blocks)
    perm: np.ndarray | None = None  # output row q -> row of the concatenated block outputs

    @classmethod
    def build(cls, mat: np.ndarray, sparse: bool, tol: float = 1e-14) -> _Linear:
        if not sparse:
            return cls(mat.shape, dense=mat)
        q, r = mat.shape
        support: dict[tuple[int, ...], list[int]] = {}
        for row in range(q):
            support.setdefault(tuple(np.nonzero(np.abs(mat[row]) > tol)[0]), []).append(row)
        groups = [(list(cols), rows) for cols, rows in support.items() if cols]
        out, total = [], 0
        perm = np.full(q, -1, dtype=np.int64)
        for members in buckets([(len(c), len(rw)) for c, rw in groups]):
            rp = max(len(groups[i][0]) for i in members)
            cp = max(len(groups[i][1]) for i in members)
            take = np.full((len(members), rp), r, dtype=np.int64)  # r: a zero row
            blocks = np.zeros((len(members), cp, rp))
            for gi, i in enumerate(members):
                cols, rows = groups[i]
                take[gi, :len(cols)] = cols
                blocks[gi, :len(rows), :len(cols)] = mat[np.ix_(rows, cols)]
                perm[rows] = total + gi * cp + np.arange(len(rows))
            out.append((take.reshape(-1), blocks))
            total += len(members) * cp
        perm[perm < 0] = total  # all-zero rows of mat read the zero row
        return cls(mat.shape, blocks=out, perm=perm)

    def __call__(self, v: jax.Array) -> jax.Array:
        dt = v.dtype
        if self.dense is not None:
            return jnp.matmul(const(self.dense, dt), v, precision=HIGHEST)
        r, m = v.shape
        parts = []
        for take, blocks in self.blocks:
            g, cp, rp = blocks.shape
            rows = row_take(take, r)(v).reshape(g, rp, m)
            y = einsum("gcr,grm->gcm", const(blocks, dt), rows)
            parts.append(y.reshape(g * cp, m))
        cat = jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        return row_take(self.perm, cat.shape[0])(cat)


def _basis_matrix(d: MTPDescriptor, degrees: list[int]) -> np.ndarray:
    """``(n*n, sum(2l+1))``: column ``(l, m)`` (degrees in the given order) is ``B^(l)_m``."""
    n = d.n
    return np.concatenate([d.basis(l).reshape(n * n, 2 * l + 1) for l in degrees], axis=1)


@dataclass
class _Side:
    """One input's parity part: its blocks (flat offset, degree) and its embedding."""

    blocks: list[tuple[int, int]]
    embed: _Linear


@dataclass
class _MTPPlan:
    d: MTPDescriptor
    layout: ChannelLayout
    in1: dict[int, _Side]  # parity -> part of x1
    in2: dict[int, _Side]
    read: dict[int, _Linear]  # output parity -> read-out (rows of that parity's blocks)
    out_blocks: list[tuple[int, int, int]]  # per output block: (parity, first row, degree)


def _sides(d: MTPDescriptor, irreps, sparse: bool) -> dict[int, _Side]:
    out = {}
    offsets = [s.start for s in irreps.slices()]
    for p in (1, -1):
        blocks = [(offsets[i], ir.l) for i, (_, ir) in enumerate(irreps) if ir.p == p]
        if blocks:
            mat = _basis_matrix(d, [l for _, l in blocks])
            out[p] = _Side(blocks, _Linear.build(mat, sparse))
    return out


def _build(d: MTPDescriptor, sparse: bool) -> _MTPPlan:
    read, rows_of, out_blocks = {}, {}, []
    for p in (1, -1):
        degrees = [ir.l for _, ir in d.irreps_out if ir.p == p]
        if degrees:
            read[p] = _Linear.build(d.scale * _basis_matrix(d, degrees).T, sparse)
            rows_of[p] = 0
    for _, ir in d.irreps_out:
        out_blocks.append((ir.p, rows_of[ir.p], ir.l))
        rows_of[ir.p] += ir.dim
    return _MTPPlan(d, channel_layout(d), _sides(d, d.irreps_in1, sparse),
                    _sides(d, d.irreps_in2, sparse), read, out_blocks)


#: Chunking bound: the batch runs in one piece while its ``n x n x C x batch`` matrices have at
#: most this many elements, else in chunks of that size (``lax.map`` over checkpointed chunks,
#: which bounds memory). Measured on CPU (L = 4, one channel, batch 10,000): one piece 12.6 ms
#: backward, 512- or 2048-sample checkpointed chunks 28-32 ms (the loop's reverse pass), forward
#: equal.
CHUNK_ELEMENTS = 1 << 24


def _chunk_rows(plan: _MTPPlan) -> int:
    return max(256, CHUNK_ELEMENTS // (plan.d.n ** 2 * plan.d.channels))


def _run(plan: _MTPPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    x1, x2, mult = scale_inputs(plan.layout, x1, x2, w)
    rows = _chunk_rows(plan)

    def core(a: jax.Array, b: jax.Array) -> jax.Array:
        return _core(plan, a, b)

    out = core(x1, x2) if x1.shape[0] <= rows else chunked(jax.checkpoint(core), x1, x2, rows)
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


def _embed(side: _Side, xt: jax.Array, channels: int, n: int) -> jax.Array:
    """``xt (dim, S)`` -> ``X (n, n, channels, S)``."""
    s = xt.shape[1]
    rows = [jnp.swapaxes(xt[o:o + channels * (2 * l + 1)].reshape(channels, 2 * l + 1, s), 0, 1)
            for o, l in side.blocks]  # (2l+1, channels, S) each
    v = jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
    return side.embed(v.reshape(v.shape[0], channels * s)).reshape(n, n, channels, s)


def _products(m1: dict, m2: dict, wanted: set[int]) -> dict[int, jax.Array]:
    """``Z_p = sum_{p1 p2 = p} X1_p1 X2_p2`` for the output parities ``wanted``. With all four
    parity pairs, two products instead of four: ``P = (X1e + X1o)(X2e + X2o)``,
    ``Q = (X1e - X1o)(X2e - X2o)``, ``Z_e = (P + Q) / 2``, ``Z_o = (P - Q) / 2``."""
    if len(m1) == 2 and len(m2) == 2 and wanted == {1, -1}:
        pp = bmm(m1[1] + m1[-1], m2[1] + m2[-1])
        qq = bmm(m1[1] - m1[-1], m2[1] - m2[-1])
        return {1: 0.5 * (pp + qq), -1: 0.5 * (pp - qq)}
    out = {}
    for p in wanted:
        terms = [bmm(a, m2[p * p1]) for p1, a in m1.items() if p * p1 in m2]
        if terms:
            out[p] = sum(terms[1:], terms[0])
    return out


def _core(plan: _MTPPlan, x1: jax.Array, x2: jax.Array) -> jax.Array:
    d, s, dt, n = plan.d, x1.shape[0], x1.dtype, plan.d.n
    c = d.channels
    x1t, x2t = x1.T, x2.T
    m1 = {p: _embed(side, x1t, c, n) for p, side in plan.in1.items()}
    m2 = {p: _embed(side, x2t, d.channels_in2, n) for p, side in plan.in2.items()}
    read = {p: plan.read[p](z.reshape(n * n, c * s)).reshape(-1, c, s)
            for p, z in _products(m1, m2, set(plan.read)).items()}
    parts = []
    for p, row, l in plan.out_blocks:
        if p in read:
            blk = jnp.swapaxes(read[p][row:row + 2 * l + 1], 0, 1)  # (C, 2l+1, S)
            parts.append(blk.reshape(c * (2 * l + 1), s))
        else:  # no parity pair reaches this output parity
            parts.append(jnp.zeros((c * (2 * l + 1), s), dt))
    if not parts:
        return jnp.zeros((s, 0), dt)
    return (jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]).T


register(Method("mtp", "dense", _mtp_available, lambda d: _build(d, False), _run,
                "dense change of basis GEMMs around n x n products"))
register(Method("mtp", "sparse", _mtp_available, lambda d: _build(d, True), _run,
                "block-sparse change of basis (GEMM per support group) around n x n products"))
