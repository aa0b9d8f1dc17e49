"""The order-blocked layout of a ``"scalar"`` fused product (:class:`OrderBlocks`), the form XLA
runs it in (tp_jax; tp_torch runs the parity split of :class:`tp_spec.plan.fused.ScalarPlan`).

The whole product is ``out[k] = sum K[(i, j), k] x1[i] x2[j]`` with ``K`` = CG x coefficient x
weight of every path. The real CG couples orders only as ``|m3| = |m1| +- |m2|``, and the four
products ``x1[+-a] x2[+-b]`` enter two at a time with fixed relative sign +-1 (a complex product
in disguise), so the rows are the combined products ``x1[i] x2[j] + s x1[i'] x2[j']`` (half the
plain outer product). Output columns are grouped by ``(|m3|, sign m3, l3 mod 2)``; a group's
rows and columns form one small dense GEMM (nonzero density ~0.3 instead of ~0.01 for the dense
product), and groups of similar size are padded into a few batched GEMMs (:func:`buckets`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .base import folded_cg, offsets

__all__ = ["Bucket", "OrderBlocks", "buckets", "build_order_blocks", "run_order_blocks_numpy"]


@dataclass(frozen=True, eq=False)
class Bucket:
    """Output groups of similar size, padded to ``(G, C, R)``: one batched GEMM.

    Row ``r`` of group ``g`` is ``x1[i1] x2[i2] + s x1[j1] x2[j2]`` (flat feature indices; index
    ``dim`` is a zero row, used for padding)."""

    rows: np.ndarray  #: ``(4, G * R)`` indices ``(i1, i2, j1, j2)``
    sign: np.ndarray  #: ``(G * R,)`` in ``{-1, 0, 1}``; all 0: plain products, ``j1, j2`` unused
    n_groups: int
    n_rows: int  #: ``R`` (padded)
    n_cols: int  #: ``C`` (padded)
    k_start: int  #: offset of this bucket's ``K (G, C, R)``, row-major, in the flat ``K``

    @property
    def paired(self) -> bool:
        return bool(np.any(self.sign != 0))


@dataclass(frozen=True, eq=False)
class OrderBlocks:
    """The flat ``K`` (``k_size`` entries) is ``sum_layer val * [w, 1][widx]`` over ``k_layers``
    (``(val, widx)``, widx ``numel``: an unweighted entry); ``k_const``: ``K`` itself when no
    entry reads a weight. Output feature ``f`` is row ``out_index[f]`` of the concatenated
    bucket outputs (``out_size`` rows; ``out_index == out_size``: a zero row)."""

    buckets: tuple[Bucket, ...]
    k_size: int
    k_layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    k_const: np.ndarray | None
    out_index: np.ndarray
    out_size: int


def buckets(sizes: list[tuple[int, int]], slack: float) -> list[list[int]]:
    """Greedy bucketing of small dense blocks ``(R, C)`` (largest first) into batched GEMMs:
    padding every block of a bucket to its ``(max R, max C)`` adds at most ``slack`` of the
    bucket's own work. Returns lists of block indices."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][0], -sizes[i][1]))
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        trial = cur + [i]
        rmax = max(sizes[j][0] for j in trial)
        cmax = max(sizes[j][1] for j in trial)
        own = sum(sizes[j][0] * sizes[j][1] for j in trial)
        if cur and len(trial) * rmax * cmax > (1 + slack) * own:
            out.append(cur)
            trial = [i]
        cur = trial
    if cur:
        out.append(cur)
    return out


def _entries(c: np.ndarray, p, o1: int, o2: int):
    """Nonzero CG entries of path ``p`` as combined rows: ``(row, m3, value)``.

    With ``k`` fixed, ``C[-a, -m2, k] = s C[+a, m2, k]`` with ``s = +-1`` (checked here, entry by
    entry), so the four products ``x1[+-a] x2[+-b]`` enter as two combined rows
    ``x1[+a] x2[m2] + s x1[-a] x2[-m2]``. A row is ``(i1, i2, j1, j2, s)`` (flat feature
    indices; ``s = 0``: a plain product).
    """
    l1, l2, l3 = p.lll
    out = []
    tol = 1e-12 * max(1.0, float(np.max(np.abs(c))))
    for i, j, k in zip(*np.nonzero(np.abs(c) > tol), strict=True):
        m1, m2, m3 = int(i) - l1, int(j) - l2, int(k) - l3
        v = float(c[i, j, k])
        if m1 != 0 and m2 != 0:
            s = float(c[l1 - m1, l2 - m2, k]) / v
            if abs(abs(s) - 1.0) < 1e-9:
                if m1 < 0:
                    continue  # folded into the row of (-m1, -m2)
                s = 1 if s > 0 else -1
                out.append(((o1 + l1 + m1, o2 + l2 + m2, o1 + l1 - m1, o2 + l2 - m2, s), m3, v))
                continue
        i1, i2 = o1 + l1 + m1, o2 + l2 + m2
        out.append(((i1, i2, i1, i2, 0), m3, v))
    return out


def _components(entries):
    """Each order group split into its connected blocks (rows and columns linked by a nonzero
    entry): in a product whose paths write separate outputs (the full CGTP), an order group is
    block diagonal by input pair, and its blocks are GEMMs of their own (fewer multiply-adds,
    more and smaller GEMMs)."""
    out = {}
    for key, ent in entries.items():
        parent: dict = {}
        for r, c in ent:
            ra, rb = _root(parent, ("r", r)), _root(parent, ("c", c))
            if ra != rb:
                parent[ra] = rb
        comp: dict = {}
        for (r, c), lst in ent.items():
            comp.setdefault(_root(parent, ("c", c)), {})[(r, c)] = lst
        for i, root in enumerate(sorted(comp, key=lambda x: x[1])):
            out[key + (i,)] = comp[root]
    return out


def _root(parent: dict, a):
    """Union-find root of ``a`` (path halving)."""
    while parent.setdefault(a, a) != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def build_order_blocks(d, slack: float, split: bool = False) -> OrderBlocks:
    """The order-blocked layout of ``d`` (every block multiplicity 1); ``slack``: see
    :func:`buckets`; ``split``: each order group cut into its connected blocks
    (:func:`_components`)."""
    o1, o2, oo = offsets(d.irreps_in1), offsets(d.irreps_in2), offsets(d.irreps_out)
    numel = d.weight_numel
    z1, z2 = d.irreps_in1.dim, d.irreps_in2.dim  # zero rows
    # output groups (|m3|, sign m3, l3 mod 2): entries[key][(row, col)] = [(value, w index)]
    entries: dict[tuple[int, int, int], dict[tuple, list[tuple[float, int]]]] = \
        defaultdict(lambda: defaultdict(list))
    for p in d.paths:
        if p.mul_out == 0:
            continue
        l3 = p.ir_out.l
        for row, m3, v in _entries(folded_cg(p), p, o1[p.i_in1], o2[p.i_in2]):
            key = (abs(m3), 1 if m3 >= 0 else -1, l3 % 2)
            for w_ in range(p.mul_out):
                if not p.has_weight:
                    wi = numel
                elif p.mode in ("uvw", "uuw"):
                    wi = p.weight_offset + w_
                else:
                    wi = p.weight_offset
                col = oo[p.i_out] + w_ * p.ir_out.dim + l3 + m3
                entries[key][(row, col)].append((v, wi))
    if split:
        entries = _components(entries)
    keys = sorted(entries)
    g_rows = [sorted({r for r, _ in entries[k]}) for k in keys]
    g_cols = [sorted({c for _, c in entries[k]}) for k in keys]
    out_index = np.full(d.irreps_out.dim, -1, dtype=np.int64)
    layers: list[tuple[list[int], list[float], list[int]]] = []
    bks = []
    k_start = out_start = 0
    for members in buckets([(len(g_rows[i]), len(g_cols[i])) for i in range(len(keys))], slack):
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
        bks.append(Bucket(flat[:4].copy(), flat[4].astype(np.float64), len(members), nr, nc,
                          k_start))
        k_start += len(members) * nc * nr
        out_start += len(members) * nc
    k_layers = []
    for pos, vals, widx in layers:
        val = np.zeros(k_start)
        wix = np.full(k_start, numel, dtype=np.int64)
        val[pos] = vals
        wix[pos] = widx
        k_layers.append((val, wix))
    k_const = None
    if numel == 0 or all((wix == numel).all() for _, wix in k_layers):
        k_const = sum((v for v, _ in k_layers), np.zeros(k_start))
    out_index[out_index < 0] = out_start  # an output no path reaches: the zero row
    return OrderBlocks(tuple(bks), k_start, tuple(k_layers), k_const, out_index, out_start)


def run_order_blocks_numpy(ob: OrderBlocks, x1: np.ndarray, x2: np.ndarray, w) -> np.ndarray:
    """The order-blocked product in NumPy: ``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` None or
    ``(numel,)`` -> ``(B, dim_out)``."""
    b = x1.shape[0]
    if ob.k_const is not None:
        k = ob.k_const
    else:
        wext = np.append(w, 1.0)
        k = sum((val * wext[wix] for val, wix in ob.k_layers), np.zeros(ob.k_size))
    z1 = np.concatenate([x1, np.zeros((b, 1))], axis=1)
    z2 = np.concatenate([x2, np.zeros((b, 1))], axis=1)
    parts = []
    for bk in ob.buckets:
        i1, i2, j1, j2 = bk.rows
        r = z1[:, i1] * z2[:, i2] + bk.sign * (z1[:, j1] * z2[:, j2])
        kb = k[bk.k_start:bk.k_start + bk.n_groups * bk.n_cols * bk.n_rows]
        y = np.einsum("gcr,bgr->bgc", kb.reshape(bk.n_groups, bk.n_cols, bk.n_rows),
                      r.reshape(b, bk.n_groups, bk.n_rows))
        parts.append(y.reshape(b, -1))
    cat = np.concatenate(parts + [np.zeros((b, 1))], axis=1)
    return cat[:, ob.out_index]
