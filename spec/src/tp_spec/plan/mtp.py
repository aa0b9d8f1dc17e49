"""MTP plans: ``dense`` and ``sparse`` change of basis to ``n x n`` matrices around the matrix
products.

Each channel of an input is split by parity into an even and an odd ``n x n`` matrix
``X = sum x_lm B^(l)_m``; the products ``Z_e = X1e X2e + X1o X2o``, ``Z_o = X1e X2o + X1o X2e``
are read out as ``z_lm = sqrt(n) <B^(l)_m, Z>_F``.

When all four parity pairs occur (``pq``), two products replace the four: with
``X = Xe + Xo`` and ``X' = Xe - Xo``, ``P = X1 X2`` and ``Q = X1' X2'`` give
``Z_e = (P + Q) / 2`` and ``Z_o = (P - Q) / 2`` (the 1/2 is folded into the read-out). Otherwise
one product per parity pair. With all four pairs and one channel (``fused_out``), the read-out is
one matmul from ``[P, Q]`` straight into the flat output (``read_pq``).

* ``dense``: the change of basis is one dense matmul with the full ``((L+1)^2, n^2)`` basis
  matrix (every degree ``0..L``, zero rows for absent ones; features gathered into that layout,
  ``[X, X']`` from the sum and difference of the gathered parity parts), and the read-out one
  dense matmul with its ``(n^2, (Lo+1)^2)`` transpose: ``O(L^4)``.
* ``sparse``: the change of basis keeps only the nonzero blocks of the basis matrix: per parity
  class, only the degrees present, with the signs of ``[X, X']`` and, for one channel, the
  feature gather folded into the matrix (``x @ W`` straight from the flat features); the
  read-out produces only the present output degrees of each class. When each input holds
  natural irreps only (``p = (-1)^l``) or pseudo irreps only (signs ``s1, s2``),
  ``X' = s X^T`` is redundant (odd-``l`` basis matrices are antisymmetric, even-``l``
  symmetric): the embedding makes ``X`` alone and an output ``(l, p)`` reads
  ``1/2 <B_l, X1 X2 + t X2 X1>`` with ``t = p s1 s2 (-1)^l``, the anticommutator (``t = 1``) or
  the commutator (``t = -1``) ("transpose regime", from ``n = tuning.mtp_transpose_min_n``).

An ``O(L^3)`` variant that groups ``B^(l)_m`` by order ``m`` (small matmuls + gathers) was
measured and rejected: on CPU the gathers cost more than the multiply-adds they save up to
L = 10 (torch at L=6: 60 ms per read-out against 6 ms for the dense ``(B, 169) @ (169, 169)``).

Tables: ``index*`` are gathers into the flat features (value ``dim``: a zero), ``blocks*`` the
same gathers as contiguous blocks ``(flat offset or None, degree)`` of ``channels x (2l + 1)``
features (for executors that slice instead of gathering), ``out_index`` the gather of the flat
output from the read-out rows (value ``rows``: a zero; ``None``: the identity) and
``out_blocks`` the same as blocks ``(read class, first row, degree)`` or ``None`` (zeros).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cost import per_degree_flops
from .base import Method, Plan, chunk_rows
from .tuning import DEFAULT_TUNING

if TYPE_CHECKING:
    from ..mtp import MTPDescriptor
    from .tuning import Tuning

__all__ = ["METHODS", "DenseMTPPlan", "MTPPlan", "SparseMTPPlan", "build_dense", "build_sparse",
           "run_numpy"]

Block = tuple  # (flat offset or None, degree)


def _is_mtp(d) -> str | None:
    return None if d.kind == "mtp" else f"not an MTP descriptor ({type(d).__name__})"


@dataclass(frozen=True, eq=False)
class MTPPlan(Plan):
    """What both MTP plans share.

    ``classes1/2/out``: the parities taking part (``+1`` first), ``pairs`` the products as class
    indices ``(k1, k2, ko)``; ``pq``: all four pairs (``[P, Q]``); ``half``: read-out factor
    (1/2 with ``pq``); ``batch_last``: torch runs the products batch-last (``n^3 <
    tuning.batch_last_max_n3``; JAX always does); ``fused_out``, ``read_pq (n^2, 2, dim_out)``:
    one channel and ``pq``, ``[P, Q]`` read straight into the output; ``w_index*``: per flat
    feature, its per-degree weight (``None`` without); ``row_entries``: entries of the largest
    intermediate per batch row (torch chunks: ``tuning.function_chunk_*``); ``jax_chunk_rows``:
    JAX's checkpointed chunk (``tuning.jax_mtp_chunk_elements``)."""

    n: int
    channels: int
    channels2: int
    classes1: tuple[int, ...]
    classes2: tuple[int, ...]
    classes_out: tuple[int, ...]
    pairs: tuple[tuple[int, int, int], ...]
    pq: bool
    half: float
    batch_last: bool
    fused_out: bool
    read_pq: np.ndarray | None
    w_index1: np.ndarray | None
    w_index2: np.ndarray | None
    w_index_out: np.ndarray | None
    row_entries: int
    jax_chunk_rows: int
    out_index: np.ndarray | None
    out_rows: int
    out_blocks: tuple[tuple[int, int, int] | None, ...]

    @property
    def active(self) -> bool:
        """Whether any parity pair reaches an output (else the product is zero)."""
        return bool(self.pairs)


@dataclass(frozen=True, eq=False)
class DenseMTPPlan(MTPPlan):
    """``dense``: ``index1 (ncls1, C, K1)``, ``blocks1`` (per class, degrees ``0..lmax1``),
    ``embed1 (K1, n^2)`` the full basis (likewise for x2); ``read (n^2, Ko)`` with
    ``half * scale``; read-out rows ``((ko * C + c) * Ko + l^2 + m)``."""

    lmax1: int
    lmax2: int
    lmax_out: int
    index1: np.ndarray
    index2: np.ndarray
    blocks1: tuple[tuple[Block, ...], ...]
    blocks2: tuple[tuple[Block, ...], ...]
    embed1: np.ndarray
    embed2: np.ndarray
    read: np.ndarray


@dataclass(frozen=True, eq=False)
class SparseMTPPlan(MTPPlan):
    """``sparse``: ``mats1`` matrices per channel of x1 (1 in the transpose regime, 2 with
    ``pq``, else one per class); ``embed1 (K1, mats1 * n^2)`` one row per used feature of
    channel 0 (``index1 (K1, C)``, ``blocks1``), or with one channel ``(dim1, mats1 * n^2)``
    (``index1 = None``); ``transpose`` (the regime; its sign ``s1 s2`` is folded into
    ``read_classes``); ``read_classes`` the output
    parities, or in the transpose regime ``+1`` (anticommutator) / ``-1`` (commutator), each
    with ``read[k] (n^2, K_k)`` onto its present degrees; read-out rows
    ``c * read_total + (offset of k) + j``; ``read_tr (n^2, 2, dim_out)``: one channel in the
    transpose regime, ``[X1 X2, X2 X1]`` read straight into the flat output (the JAX
    executor's read-out; else ``None``)."""

    transpose: bool
    mats1: int
    mats2: int
    index1: np.ndarray | None
    index2: np.ndarray | None
    blocks1: tuple[Block, ...]
    blocks2: tuple[Block, ...]
    embed1: np.ndarray
    embed2: np.ndarray
    read_classes: tuple[int, ...]
    read: tuple[np.ndarray, ...]
    read_total: int
    read_tr: np.ndarray | None


# ----------------------------------------------------------------------------- planning
def _weight_index(irreps, offset: int, channels: int) -> np.ndarray:
    """For per-degree weights ``w[offset + i * channels + c]`` scaling block ``i``, channel
    ``c``: the weight index of every flat feature, ``(irreps.dim,)``."""
    out = np.zeros(irreps.dim, dtype=np.int64)
    for i, ((mul, ir), sl) in enumerate(zip(irreps, irreps.slices(), strict=True)):
        for c in range(mul):
            out[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = offset + i * channels + c
    return out


def _common(d: MTPDescriptor, tuning: Tuning) -> dict:
    """The :class:`MTPPlan` fields that do not depend on the method (less the output tables)."""
    present = [{ir.p for _, ir in irr} for irr in (d.irreps_in1, d.irreps_in2, d.irreps_out)]
    pairs = [(q1, q2) for q1 in (1, -1) for q2 in (1, -1)
             if q1 in present[0] and q2 in present[1] and q1 * q2 in present[2]]
    cls1 = tuple(sorted({q1 for q1, _ in pairs}, reverse=True))
    cls2 = tuple(sorted({q2 for _, q2 in pairs}, reverse=True))
    clso = tuple(sorted({q1 * q2 for q1, q2 in pairs}, reverse=True))
    n, c, c2 = d.n, d.channels, d.channels_in2
    pq = len(pairs) == 4
    half = 0.5 if pq else 1.0
    w1 = w2 = wo = None
    if d.weight_numel:
        n1, n2 = len(d.irreps_in1), len(d.irreps_in2)
        w1 = _weight_index(d.irreps_in1, 0, c)
        w2 = _weight_index(d.irreps_in2, n1 * c, c2)
        wo = _weight_index(d.irreps_out, n1 * c + n2 * c2, c)
    fused_out = pq and c == 1
    rpq = None
    if fused_out:
        n2 = n * n
        rpq = np.zeros((n2, 2, d.irreps_out.dim))
        for (_, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
            bl = half * d.scale * d.basis(ir.l).reshape(n2, ir.dim)
            rpq[:, 0, sl] = bl  # Z_e = (P + Q) / 2, Z_o = (P - Q) / 2
            rpq[:, 1, sl] = ir.p * bl
    return dict(
        descriptor=d, tuning=tuning, n=n, channels=c, channels2=c2, classes1=cls1,
        classes2=cls2, classes_out=clso,
        pairs=tuple((cls1.index(q1), cls2.index(q2), clso.index(q1 * q2)) for q1, q2 in pairs),
        pq=pq, half=half, batch_last=n ** 3 < tuning.batch_last_max_n3, fused_out=fused_out,
        read_pq=rpq, w_index1=w1, w_index2=w2, w_index_out=wo, row_entries=2 * n * n * c,
        jax_chunk_rows=max(256, tuning.jax_mtp_chunk_elements // (n * n * c)))


def _lmax(irreps, classes) -> int:
    ls = [ir.l for _, ir in irreps if ir.p in classes]
    return max(ls) if ls else 0


def _basis_matrix(d: MTPDescriptor, lmax: int) -> np.ndarray:
    """``E[l*l + l + m, a*n + b] = B^(l)_m[a, b]`` for ``l <= lmax``: ``((lmax+1)^2, n^2)``."""
    n2 = d.n * d.n
    return np.concatenate([d.basis(l).reshape(n2, 2 * l + 1).T for l in range(lmax + 1)])


def _out_tables(d, row_of, rows: int) -> tuple[np.ndarray | None, tuple]:
    """``row_of(ir) -> (read class, first row in its class, first read-out row, rows per
    channel)`` or None (zeros); returns ``(out_index or None if the identity, out_blocks)``."""
    idx = np.full(d.irreps_out.dim, rows, dtype=np.int64)
    blocks = []
    for (mul, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
        r = row_of(ir)
        blocks.append(None if r is None else (r[0], r[1], ir.l))
        if r is None:
            continue
        base, stride = r[2], r[3]
        for c in range(mul):
            idx[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = (
                base + c * stride + np.arange(ir.dim))
    identity = len(idx) == rows and bool((idx == np.arange(rows)).all())
    return (None if identity else idx), tuple(blocks)


def build_dense(d: MTPDescriptor, tuning: Tuning) -> DenseMTPPlan:
    """The ``dense`` plan of ``d``."""
    com = _common(d, tuning)
    c = com["channels"]
    tabs = {}
    for w, irreps, classes, ch in ((1, d.irreps_in1, com["classes1"], c),
                                   (2, d.irreps_in2, com["classes2"], com["channels2"])):
        lmax = _lmax(irreps, classes)
        idx = np.full((len(classes), ch, (lmax + 1) ** 2), irreps.dim, dtype=np.int64)
        at: list[dict[int, int]] = [{} for _ in classes]
        for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
            if ir.p not in classes:
                continue
            k = classes.index(ir.p)
            at[k][ir.l] = sl.start
            for ci in range(min(mul, ch)):
                start = sl.start + ci * ir.dim
                idx[k, ci, ir.l * ir.l:(ir.l + 1) ** 2] = np.arange(start, start + ir.dim)
        tabs[f"lmax{w}"] = lmax
        tabs[f"index{w}"] = idx
        tabs[f"blocks{w}"] = tuple(tuple((a.get(l), l) for l in range(lmax + 1)) for a in at)
        tabs[f"embed{w}"] = _basis_matrix(d, lmax)
    lo = _lmax(d.irreps_out, com["classes_out"])
    ko = (lo + 1) ** 2
    clso = com["classes_out"]

    def row_of(ir):
        if ir.p not in clso:
            return None
        k = clso.index(ir.p)
        return k, ir.l * ir.l, k * c * ko + ir.l * ir.l, ko

    rows = len(clso) * c * ko
    out_index, out_blocks = _out_tables(d, row_of, rows)
    return DenseMTPPlan(
        method="dense", **com, out_index=out_index, out_rows=rows, out_blocks=out_blocks,
        lmax_out=lo, read=com["half"] * d.scale * _basis_matrix(d, lo).T.copy(), **tabs)


def _transpose_sign(irreps, classes) -> int | None:
    """``sigma`` if every irrep of ``classes`` has parity ``p = sigma (-1)^l`` (all natural:
    ``+1``, all pseudo: ``-1``), else None. Then ``X' = Xe - Xo = sigma X^T``."""
    signs = {ir.p * (-1) ** ir.l for _, ir in irreps if ir.p in classes}
    return signs.pop() if len(signs) == 1 else None


def build_sparse(d: MTPDescriptor, tuning: Tuning) -> SparseMTPPlan:
    """The ``sparse`` plan of ``d``."""
    com = _common(d, tuning)
    n2, c = d.n * d.n, com["channels"]
    s1 = _transpose_sign(d.irreps_in1, com["classes1"])
    s2 = _transpose_sign(d.irreps_in2, com["classes2"])
    tr = (com["pq"] and s1 is not None and s2 is not None
          and d.n >= tuning.mtp_transpose_min_n)
    sign = s1 * s2 if tr else 1
    if tr:
        com["fused_out"], com["read_pq"] = False, None

    def read_class(ir) -> int:
        return ir.p * sign * (-1) ** ir.l if tr else ir.p

    read_classes = (tuple(sorted({read_class(ir) for _, ir in d.irreps_out}, reverse=True))
                    if tr else com["classes_out"])
    half = 0.5 if tr else com["half"]
    tabs = {}
    for w, irreps, classes, ch in ((1, d.irreps_in1, com["classes1"], c),
                                   (2, d.irreps_in2, com["classes2"], com["channels2"])):
        s = 1 if tr else 2 if com["pq"] else len(classes)
        rows, pos, blocks = [], [], []  # one row per used feature of channel 0
        for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
            if ir.p not in classes:
                continue
            k = classes.index(ir.p)
            blocks.append((sl.start, ir.l))
            bl = d.basis(ir.l).reshape(n2, ir.dim).T  # (2l+1, n^2)
            for mi in range(ir.dim):
                row = np.zeros((s, n2))
                if tr:  # X alone
                    row[0] = bl[mi]
                elif com["pq"]:  # [X, X'] with X' = Xe - Xo: sign = parity
                    row[0], row[1] = bl[mi], ir.p * bl[mi]
                else:
                    row[k] = bl[mi]
                rows.append(row.reshape(-1))
                pos.append([sl.start + ci * ir.dim + mi for ci in range(mul)])
        emb = np.array(rows).reshape(len(rows), s * n2)
        index = np.array(pos, dtype=np.int64).reshape(len(pos), ch)  # (K, ch)
        if ch == 1:  # fold the gather into the matrix: rows indexed by flat feature
            full = np.zeros((irreps.dim, emb.shape[1]))
            full[index[:, 0]] = emb
            emb, index = full, None
        tabs.update({f"mats{w}": s, f"embed{w}": emb, f"index{w}": index,
                     f"blocks{w}": tuple(blocks)})
    reads, first, col = [], {}, {}
    total = 0
    for k, q in enumerate(read_classes):
        cols = [d.basis(ir.l).reshape(n2, ir.dim) for _, ir in d.irreps_out if read_class(ir) == q]
        reads.append(half * d.scale * np.concatenate(cols, axis=1))  # (n^2, K_k)
        first[k], col[k] = total, 0
        total += reads[-1].shape[1]

    def row_of(ir):
        q = read_class(ir)
        if q not in read_classes:
            return None
        k = read_classes.index(q)
        j = col[k]
        col[k] += ir.dim
        return k, j, first[k] + j, total

    rows = c * total
    out_index, out_blocks = _out_tables(d, row_of, rows)
    read_tr = None
    if tr and c == 1:  # Z = X1 X2 + t X2 X1 read by read[k]: columns [R, t R]
        read_tr = np.zeros((n2, 2, d.irreps_out.dim))
        for blk, sl in zip(out_blocks, d.irreps_out.slices(), strict=True):
            if blk is not None:
                k, j, l = blk
                cols = reads[k][:, j:j + 2 * l + 1]
                read_tr[:, 0, sl], read_tr[:, 1, sl] = cols, read_classes[k] * cols
    return SparseMTPPlan(
        method="sparse", **com, out_index=out_index, out_rows=rows, out_blocks=out_blocks,
        transpose=tr, read_classes=read_classes, read=tuple(reads),
        read_total=total, read_tr=read_tr, **tabs)


# ----------------------------------------------------------------------------- NumPy executor
def _embed_numpy(p: MTPPlan, x: np.ndarray, w: int) -> np.ndarray:
    """``x (B, dim)`` -> ``(B, ch, s, n, n)``."""
    b, n = x.shape[0], p.n
    index, emb = getattr(p, f"index{w}"), getattr(p, f"embed{w}")
    ch = p.channels if w == 1 else p.channels2
    if isinstance(p, DenseMTPPlan):
        xp = np.concatenate([x, np.zeros((b, 1))], axis=1)
        ncls, _, k = index.shape
        co = xp[:, index.reshape(-1)].reshape(b, ncls, ch, k).transpose(0, 2, 1, 3)
        if p.pq:
            co = np.stack([co[:, :, 0] + co[:, :, 1], co[:, :, 0] - co[:, :, 1]], axis=2)
        return (co @ emb).reshape(b, ch, co.shape[2], n, n)
    s = getattr(p, f"mats{w}")
    if index is None:
        return (x @ emb).reshape(b, 1, s, n, n)
    xg = x[:, index.T.reshape(-1)].reshape(b * ch, index.shape[0])
    return (xg @ emb).reshape(b, ch, s, n, n)


def _readout_numpy(p: MTPPlan, zs: list[np.ndarray]) -> np.ndarray:
    """One ``(B, C, n, n)`` per read class -> ``(B, dim_out)``."""
    b, n2 = zs[0].shape[0], p.n * p.n
    if isinstance(p, DenseMTPPlan):
        z = np.stack(zs, axis=1).reshape(-1, n2) @ p.read
    else:
        z = np.concatenate([(zk.reshape(b, p.channels, n2) @ r) for zk, r in
                            zip(zs, p.read, strict=True)], axis=2)
    z = z.reshape(b, -1)
    if p.out_index is None:
        return z
    return np.concatenate([z, np.zeros((b, 1))], axis=1)[:, p.out_index]


def _product_numpy(p: MTPPlan, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    m1, m2 = _embed_numpy(p, x1, 1), _embed_numpy(p, x2, 2)
    b = x1.shape[0]
    if getattr(p, "transpose", False):
        a, a2 = m1[:, :, 0] @ m2[:, :, 0], m2[:, :, 0] @ m1[:, :, 0]
        zs = [a + a2 if q == 1 else a - a2 for q in p.read_classes]
    elif p.pq:
        pq = m1 @ m2  # (B, C, 2, n, n): [P, Q]
        if p.fused_out:  # rows (s, a, b)
            return pq.reshape(b, -1) @ p.read_pq.transpose(1, 0, 2).reshape(2 * p.n * p.n, -1)
        zs = [pq[:, :, 0] + pq[:, :, 1], pq[:, :, 0] - pq[:, :, 1]]
    else:
        acc: list = [None] * len(p.classes_out)
        for k1, k2, ko in p.pairs:
            t = m1[:, :, k1] @ m2[:, :, k2]
            acc[ko] = t if acc[ko] is None else acc[ko] + t
        zs = acc
    return _readout_numpy(p, zs)


def run_numpy(p: MTPPlan, x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Either MTP plan in NumPy: ``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` ``None``,
    ``(numel,)`` or ``(B, numel)`` -> ``(B, dim_out)``, in :func:`chunk_rows` chunks."""
    b = x1.shape[0]
    if not p.active:
        return np.zeros((b, p.descriptor.irreps_out.dim))
    mult = None
    if w is not None and p.w_index1 is not None:
        x1, x2, mult = x1 * w[..., p.w_index1], x2 * w[..., p.w_index2], w[..., p.w_index_out]
    t = p.tuning
    rows = (chunk_rows(b, p.row_entries, t.function_chunk_entries, t.function_chunk_min_rows)
            or max(b, 1))
    out = np.concatenate([_product_numpy(p, x1[i:i + rows], x2[i:i + rows])
                          for i in range(0, max(b, 1), rows)])[:b]
    return out if mult is None else out * mult


# ----------------------------------------------------------------------------- cost
def flops_mtp(d: Any, sparse: bool) -> float:
    """Per-sample FLOPs of the ``dense`` or ``sparse`` plan of ``d`` (default tuning), from its
    table sizes (the model in :mod:`tp_spec.cost`'s docstring), per-degree weights included."""
    p = (build_sparse if sparse else build_dense)(d, DEFAULT_TUNING)
    if not p.active:
        return per_degree_flops(d)
    n2, c = p.n * p.n, p.channels
    total = 0
    for w, ch in ((1, c), (2, p.channels2)):
        emb = getattr(p, f"embed{w}")
        if sparse:  # (rows, mats * n^2): one row per used feature of a channel (or flat feature)
            total += 2 * ch * emb.size
        else:  # ((L+1)^2, n^2) per matrix: [X, X'] with pq, else one per parity class
            total += 2 * ch * (2 if p.pq else len(getattr(p, f"classes{w}"))) * emb.size
    transpose = sparse and p.transpose
    products = 2 if transpose or p.pq else len(p.pairs)
    total += c * products * 2 * p.n ** 3
    if p.fused_out:  # (n^2, 2, dim_out)
        total += 2 * p.read_pq.size
    elif sparse:
        total += 2 * c * n2 * p.read_total
    else:
        total += 2 * c * len(p.classes_out) * p.read.size
    return total + per_degree_flops(d)


METHODS = (
    Method("mtp", "dense", "change of basis with the full basis of degrees 0..L around the "
           "n x n matrix products", build=build_dense, numpy=run_numpy, available=_is_mtp,
           flops=lambda d: flops_mtp(d, sparse=False)),
    Method("mtp", "sparse", "change of basis restricted to the nonzero (parity, degree) blocks "
           "around the n x n matrix products", build=build_sparse, numpy=run_numpy,
           available=_is_mtp, flops=lambda d: flops_mtp(d, sparse=True)),
)
