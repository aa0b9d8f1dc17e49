"""MTP methods: ``dense`` and ``sparse`` change of basis around per-sample ``n x n`` products.

Per channel, each input splits by parity ``p`` into ``X_p = sum x_lm B^(l)_m`` (``n x n``,
``B^(l)_m = sqrt(2l+1) C(lt, lt, l)[:, :, m]``); ``Z_e = X1e X2e + X1o X2o``,
``Z_o = X1e X2o + X1o X2e``; ``z_(l,p) = sqrt(n) <B^(l)_m, Z_p>``.

Everything runs batch-innermost: the batch (in chunks only when huge, ``CHUNK_ELEMENTS``) is
transposed once to ``(features, C, samples)``, so the embedding and the read-out are GEMMs whose
long dimension is ``C x samples``, and the ``n x n`` products are :func:`tp_jax._bmm.bmm`
(``n`` fused multiply-adds over whole rows, vectorised along the samples, whose derivatives are
again ``bmm``) instead of a batch of tiny matmuls. Reverse mode has no scatter: the transposes of
slices, reshapes and concatenations are slices, reshapes and concatenations.

The two methods are the ones ``tp_torch`` has under the same names:

* ``sparse`` (default): per input parity, one GEMM with the basis of the degrees present only
  (natural-parity irreps: the even part holds the even degrees, the odd part the odd ones, so
  about half the multiply-adds of ``dense``); per output parity, one read-out GEMM onto the
  degrees present. With one channel the feature gathers, the parity sums and the output
  assembly are folded into the matrices: three GEMMs around one ``bmm`` (:class:`_Folded`).
* ``dense``: per input parity, the full basis of every degree ``0..L`` (absent ones as zero
  rows), and per output parity the full read-out: O(L^4) per sample either way, with the zero
  blocks multiplied.

An O(L^3) form (basis rows grouped by column support, one small GEMM per group, so the work is
the nonzeros of ``C(lt, lt, l)``) was measured and dropped: on CPU its gathers cost more than the
multiply-adds it saved up to L = 10 (backward 0.4-0.55x e3x ``FusedTensor`` where ``sparse`` is
0.8-2.2x; a gather / segment-sum form was 9-30x slower than the GEMM).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.mtp import MTPDescriptor

from ._ops import HIGHEST, const
from ._bmm import bmm
from ._channels import ChannelLayout, channel_layout, finish, scale_inputs


def _mtp_available(d) -> str | None:
    if not isinstance(d, MTPDescriptor):
        return f"not an MTP descriptor ({type(d).__name__})"
    return None


def _basis_matrix(d: MTPDescriptor, degrees: list[int]) -> np.ndarray:
    """``(n*n, sum(2l+1))``: column ``(l, m)`` (degrees in the given order) is ``B^(l)_m``."""
    n = d.n
    return np.concatenate([d.basis(l).reshape(n * n, 2 * l + 1) for l in degrees], axis=1)


@dataclass
class _Side:
    """One input's parity part: its blocks ``(flat offset or None for a zero block, degree)`` and
    the embedding matrix ``(n*n, sum(2l+1))`` of those degrees."""

    blocks: list[tuple[int | None, int]]
    embed: np.ndarray


@dataclass
class _MTPPlan:
    d: MTPDescriptor
    layout: ChannelLayout
    in1: dict[int, _Side]  # parity -> part of x1
    in2: dict[int, _Side]
    read: dict[int, np.ndarray]  # output parity -> read-out matrix (rows, n*n)
    out_blocks: list[tuple[int, int, int]]  # per output block: (parity, first row, degree)
    folded: _Folded | None = None  # one-channel ``sparse``: the whole pipeline as three GEMMs


@dataclass
class _Folded:
    """One channel (``C = C2 = 1``), ``sparse``: the feature gathers folded into the matrices.

    ``embed1 (R1, dim1)``, ``embed2 (R2, dim2)`` map the flat features straight to the stacked
    matrices, ``read (Ro, dim_out)`` maps the stacked products straight to the flat output; no
    concatenation, transpose or per-parity sum around them. With all four parity pairs
    (``pq``) the rows are ordered ``(a, b, s)``, ``s`` in ``[X, X'] = [Xe + Xo, Xe - Xo]``, so
    ``[P, Q]`` is ONE :func:`bmm` over ``(n, n, 2, S)`` and the read-out takes
    ``Z_e = (P + Q) / 2``, ``Z_o = (P - Q) / 2`` through its signs; else rows ``(k, a, b)``, one
    ``n x n`` matrix per parity class ``k`` (``classes1/2/out``), one product per parity pair.
    """

    pq: bool
    embed1: np.ndarray
    embed2: np.ndarray
    read: np.ndarray
    classes1: tuple[int, ...]
    classes2: tuple[int, ...]
    classes_out: tuple[int, ...]


def _degrees(present: list[int], lmax: int, full: bool) -> list[int]:
    """The degrees a parity part embeds: those present, or (``full``) every ``0..lmax``."""
    return list(range(lmax + 1)) if full else present


def _sides(d: MTPDescriptor, irreps, full: bool) -> dict[int, _Side]:
    out = {}
    offsets = [s.start for s in irreps.slices()]
    for p in (1, -1):
        at = {ir.l: offsets[i] for i, (_, ir) in enumerate(irreps) if ir.p == p}
        if at:
            degrees = _degrees(list(at), irreps.lmax, full)
            out[p] = _Side([(at.get(l), l) for l in degrees], _basis_matrix(d, degrees))
    return out


def _build(d: MTPDescriptor, full: bool) -> _MTPPlan:
    read, first_row, out_blocks = {}, {}, []
    for p in (1, -1):
        present = [ir.l for _, ir in d.irreps_out if ir.p == p]
        if present:
            degrees = _degrees(present, d.irreps_out.lmax, full)
            read[p] = d.scale * _basis_matrix(d, degrees).T
            starts = np.cumsum([0] + [2 * l + 1 for l in degrees])
            first_row[p] = dict(zip(degrees, starts[:-1].tolist(), strict=False))
    for _, ir in d.irreps_out:
        out_blocks.append((ir.p, first_row[ir.p][ir.l], ir.l))
    plan = _MTPPlan(d, channel_layout(d), _sides(d, d.irreps_in1, full),
                    _sides(d, d.irreps_in2, full), read, out_blocks)
    if not full and d.channels == 1 and d.channels_in2 == 1 and read:
        plan.folded = _fold(plan)
    return plan


def _stacked(d: MTPDescriptor, irreps, classes: tuple[int, ...], pq: bool) -> np.ndarray:
    """``(rows, dim)``: flat features of ``irreps`` -> the stacked matrices (:class:`_Folded`)."""
    n2 = d.n * d.n
    out = np.zeros((n2, 2, irreps.dim) if pq else (len(classes), n2, irreps.dim))
    for (_, ir), sl in zip(irreps, irreps.slices(), strict=True):
        basis = d.basis(ir.l).reshape(n2, ir.dim)
        if pq:
            out[:, 0, sl], out[:, 1, sl] = basis, ir.p * basis
        elif ir.p in classes:
            out[classes.index(ir.p), :, sl] = basis
    return out.reshape(-1, irreps.dim)


def _fold(plan: _MTPPlan) -> _Folded:
    d = plan.d
    cls1, cls2 = tuple(plan.in1), tuple(plan.in2)
    pq = len(cls1) == 2 and len(cls2) == 2 and set(plan.read) == {1, -1}
    # pq reads (P + Q) / 2 and (P - Q) / 2: the 1/2 goes into the read-out
    read = (0.5 if pq else 1.0) * d.scale * _stacked(d, d.irreps_out, tuple(plan.read), pq)
    return _Folded(pq, _stacked(d, d.irreps_in1, cls1, pq), _stacked(d, d.irreps_in2, cls2, pq),
                   read, cls1, cls2, tuple(plan.read))


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
    s, dt = xt.shape[1], xt.dtype
    rows = [jnp.zeros((2 * l + 1, channels, s), dt) if o is None else
            jnp.swapaxes(xt[o:o + channels * (2 * l + 1)].reshape(channels, 2 * l + 1, s), 0, 1)
            for o, l in side.blocks]  # (2l+1, channels, S) each
    v = jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
    x = jnp.matmul(const(side.embed, dt), v.reshape(v.shape[0], channels * s), precision=HIGHEST)
    return x.reshape(n, n, channels, s)


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


def _rows_times(mat: np.ndarray, x: jax.Array) -> jax.Array:
    """``mat (R, dim) @ x (S, dim)^T -> (R, S)`` (the transpose rides on the GEMM)."""
    return jax.lax.dot_general(const(mat, x.dtype), x, (((1,), (1,)), ((), ())),
                               precision=HIGHEST)


def _folded_core(f: _Folded, n: int, x1: jax.Array, x2: jax.Array) -> jax.Array:
    s = x1.shape[0]
    m1, m2 = _rows_times(f.embed1, x1), _rows_times(f.embed2, x2)
    if f.pq:
        z = bmm(m1.reshape(n, n, 2, s), m2.reshape(n, n, 2, s))  # [P, Q]
    else:
        a1, a2 = m1.reshape(-1, n, n, s), m2.reshape(-1, n, n, s)
        zs = _products(dict(zip(f.classes1, a1, strict=True)),
                       dict(zip(f.classes2, a2, strict=True)), set(f.classes_out))
        # an output parity that no parity pair reaches reads zeros
        z = jnp.stack([zs[p] if p in zs else jnp.zeros((n, n, s), x1.dtype)
                       for p in f.classes_out])
    # (rows, S)^T @ read (rows, dim_out) -> (S, dim_out)
    return jax.lax.dot_general(z.reshape(-1, s), const(f.read, x1.dtype),
                               (((0,), (0,)), ((), ())), precision=HIGHEST)


def _core(plan: _MTPPlan, x1: jax.Array, x2: jax.Array) -> jax.Array:
    d, s, dt, n = plan.d, x1.shape[0], x1.dtype, plan.d.n
    if plan.folded is not None:
        return _folded_core(plan.folded, n, x1, x2)
    c = d.channels
    x1t, x2t = x1.T, x2.T
    m1 = {p: _embed(side, x1t, c, n) for p, side in plan.in1.items()}
    m2 = {p: _embed(side, x2t, d.channels_in2, n) for p, side in plan.in2.items()}
    read = {p: jnp.matmul(const(plan.read[p], dt), z.reshape(n * n, c * s), precision=HIGHEST)
            .reshape(-1, c, s)
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


#: Methods not yet executed from a tp_spec plan: name -> ``(build(d), run(state, x1, x2, w))``.
BUILDERS = {
    "dense": (lambda d: _build(d, True), _run),
    "sparse": (lambda d: _build(d, False), _run),
}
