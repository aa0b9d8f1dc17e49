"""A CGTP given by its nonzero coupling entries (:mod:`tp_spec.plan.coupling`: the single-channel
products of the ``"scalar"`` regime, as in the full, elementwise and fully connected CGTP of the
paper's benchmarks, and the unweighted ``uuu`` / ``uvuv`` products of the ``"outer"`` regime),
run by compiled CPU kernels over a batch of NumPy rows.

Entry ``e`` adds ``c[e] x1[i[e]] x2[j[e]]`` to ``out[k[e]]``, ``c`` being the entries' values
times their weights (the caller folds shared weights in). The kernels take the entries as
data, so one compiled function per dtype runs every descriptor; nothing is generated per
descriptor. They compile in memory when a process first needs them (about 2 s per dtype; no
on-disk cache, so nothing is loaded from files).

A kernel works on ``ROWS`` rows at a time, transposed to ``(features, ROWS)`` so that every
entry is one multiply-add over a contiguous row of ``ROWS`` values (vectorised), and the chunk
stays in the L1/L2 cache. The entries are sorted by input pair ``(i, j)``: per pair the product
``x1[i] x2[j]`` is formed once and each of its entries adds ``c`` times it into ``out[k]``.
Gradients:

* ``x1``: ``g1[i] += x2[j] q``, ``x2``: ``g2[j] += x1[i] q``, with ``q`` the sum of ``c ct[k]``
  over the pair's entries (one pass for both);
* the entries: ``ge[e] = sum over rows x1[i] x2[j] ct[k]`` (the caller maps ``ge`` to the
  weights' gradient: ``sum over e of value[e] ge[e]`` per weight).

The batch is split over threads (the kernels release the GIL); each thread sums its own
``ge``. Float32 or float64, computed in the inputs' dtype. Range: a pair's product is formed
as ``(sc x1[i]) x2[j]`` with ``sc`` a power of two at most the smallest coupling value and the
entries' coefficients times ``1 / sc`` (exact), so float32 inputs whose products overflow while
every term ``value x1 x2`` does not give finite results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tp_spec.plan.fused import MAX_SCALE_SHIFT

from .channelwise import run_parts

__all__ = ["CouplingKernels", "ROWS"]

#: Rows per kernel chunk (one thread, AMD EPYC, MIMO full CGTP L = 6, batch 10,000, forward,
#: one entry at a time: 16 rows 133 ms, 32 rows 126 ms, 64 rows 53 ms, 128 rows 53 ms; L = 2:
#: 64 rows 0.67 ms, 128 rows 0.76 ms).
ROWS = 64

_JITTED: dict[str, Any] = {}
_nb_load: Any = None
_nb_store: Any = None
_nb_dot: Any = None


def _load(x, t, s, m):  # pragma: no cover - compiled
    """Rows ``s:s+m`` of ``x`` into ``t (features, ROWS)``, zero past ``m``."""
    d = x.shape[1]
    for r in range(m):
        for a in range(d):
            t[a, r] = x[s + r, a]
    for a in range(d):
        for r in range(m, ROWS):
            t[a, r] = 0


def _store(t, y, s, m):  # pragma: no cover - compiled
    """``t (features, ROWS)``'s first ``m`` columns into rows ``s:s+m`` of ``y``, row by row
    (the writes sequential). This transpose is most of the forward's time where each input
    pair has few entries (MIMO full CGTP L = 3: 1.9 of 3.0 ms); feature by feature, or in
    tiles of 16 features, it ran 1.2-2x slower."""
    d = y.shape[1]
    for r in range(m):
        for a in range(d):
            y[s + r, a] = t[a, r]


def _forward(x1, x2, c, gi, gj, gp, kk, out, r0, r1, sc, inv):  # pragma: no cover
    """``out[r0:r1]`` of rows ``r0:r1``: per pair ``(i, j)`` (group ``g``, entries
    ``gp[g]:gp[g + 1]``) the product ``p = (sc x1[i]) x2[j]`` once, then
    ``out[k] += (inv c) p`` per entry (``sc``, ``inv = 1 / sc``: the range scale)."""
    dt = x1.dtype
    a = np.empty((x1.shape[1], ROWS), dt)
    b = np.empty((x2.shape[1], ROWS), dt)
    p = np.empty(ROWS, dt)
    acc = np.empty((out.shape[1], ROWS), dt)
    for s in range(r0, r1, ROWS):
        m = min(ROWS, r1 - s)
        _nb_load(x1, a, s, m)
        _nb_load(x2, b, s, m)
        acc[:, :] = 0
        for g in range(gi.shape[0]):
            i, j = gi[g], gj[g]
            for r in range(ROWS):
                p[r] = (sc * a[i, r]) * b[j, r]
            for e in range(gp[g], gp[g + 1]):
                k, v = kk[e], inv * c[e]
                for r in range(ROWS):
                    acc[k, r] += v * p[r]
        _nb_store(acc, out, s, m)


def _backward(x1, x2, c, gi, gj, gp, kk, ct, g1, g2, ge, n1, n2, ne, r0, r1, sc,
              inv):  # pragma: no cover - compiled
    """``g1[r0:r1]`` (``n1``), ``g2[r0:r1]`` (``n2``) and ``ge += `` the rows' entry sums
    (``ne``): per pair ``(i, j)`` the cotangent's contraction ``q = sum over its entries of
    c ct[k]``, then ``g1[i] += x2[j] q`` and ``g2[j] += x1[i] q``; an entry's ``ge`` is
    ``sum over rows of x1[i] x2[j] ct[k]``."""
    dt = ct.dtype
    a = np.empty((x1.shape[1], ROWS), dt)
    b = np.empty((x2.shape[1], ROWS), dt)
    h = np.empty((ct.shape[1], ROWS), dt)
    a1 = np.empty((x1.shape[1], ROWS), dt)
    b2 = np.empty((x2.shape[1], ROWS), dt)
    q = np.empty(ROWS, dt)
    p = np.empty(ROWS, dt)
    for s in range(r0, r1, ROWS):
        m = min(ROWS, r1 - s)
        _nb_load(ct, h, s, m)
        if n2 or ne:
            _nb_load(x1, a, s, m)
        if n1 or ne:
            _nb_load(x2, b, s, m)
        a1[:, :] = 0
        b2[:, :] = 0
        for g in range(gi.shape[0]):
            i, j = gi[g], gj[g]
            if n1 or n2:
                q[:] = 0
                for e in range(gp[g], gp[g + 1]):
                    k, v = kk[e], c[e]
                    for r in range(ROWS):
                        q[r] += v * h[k, r]
                if n1:
                    for r in range(ROWS):
                        a1[i, r] += b[j, r] * q[r]
                if n2:
                    for r in range(ROWS):
                        b2[j, r] += a[i, r] * q[r]
            if ne:
                for r in range(ROWS):
                    p[r] = (sc * a[i, r]) * b[j, r]
                for e in range(gp[g], gp[g + 1]):
                    ge[e] += inv * _nb_dot(p, h, kk[e])
        if n1:
            _nb_store(a1, g1, s, m)
        if n2:
            _nb_store(b2, g2, s, m)


def _dot(p, h, k):  # pragma: no cover - compiled
    """``sum over r of p[r] h[k, r]`` (the chunk's padding rows are zero)."""
    t = p[0] * 0
    for r in range(ROWS):
        t += p[r] * h[k, r]
    return t


def _jit() -> dict[str, Any]:
    """The kernels, compiled on first use (in memory)."""
    global _nb_load, _nb_store, _nb_dot
    if not _JITTED:
        import numba

        opts = {"cache": False, "nogil": True, "boundscheck": False}
        # the kernels call these two as globals, bound before the kernels compile
        _nb_load = numba.njit(**opts)(_load)
        _nb_store = numba.njit(**opts)(_store)
        # an entry's sum over a chunk's rows may be reassociated (vectorised); nothing else
        _nb_dot = numba.njit(fastmath={"reassoc"}, **opts)(_dot)
        _JITTED["forward"] = numba.njit(**opts)(_forward)
        _JITTED["backward"] = numba.njit(**opts)(_backward)
    return _JITTED


class CouplingKernels:
    """The product of a :class:`tp_spec.plan.coupling.Coupling` (``i, j, k, value, widx``) on
    ``dims = (dim1, dim2, dim_out)`` features.

    ``coefficients(w)`` -> ``c``: the entries' values times ``[w, 1][widx]`` (``w`` None: the
    values). ``forward(x1, x2, c, threads, out=None) -> (B, dim_out)``;
    ``backward(x1, x2, c, ct, need, threads, out=(None,) * 3) -> (g1, g2, ge)`` for
    ``need = (x1, x2, entries)`` (None where not asked for; ``ge (n_entries,)``, see the module
    doc); ``weight_grad(ge, numel) -> (numel + 1,)`` maps ``ge`` to ``[w, 1]``'s gradient.
    Arrays are C-contiguous float32 or float64, rows first; ``threads`` splits the batch
    (parts of at least ``min_rows`` rows)."""

    def __init__(self, coupling: Any, dims: tuple[int, int, int], min_rows: int = 256) -> None:
        i, j, self.k = (np.ascontiguousarray(a, np.int64) for a in coupling[:3])
        self.value = np.asarray(coupling.value, np.float64)
        self.widx = np.asarray(coupling.widx, np.int64)
        if len(i) and np.any(np.diff(i * (int(dims[1]) + 1) + j) < 0):
            raise ValueError("CouplingKernels: the entries must be sorted by (i, j)")
        # the input pairs (i, j): entries gp[g]:gp[g + 1] are pair g's
        start = np.flatnonzero(np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])]) \
            if len(i) else np.zeros(0, np.int64)
        self.gi, self.gj = i[start].copy(), j[start].copy()
        self.gp = np.r_[start, len(i)].astype(np.int64)
        self.n = len(i)
        # the range scale: a power of two at most the smallest nonzero |value|, so that a pair's
        # product sc x1 x2 is never larger than the terms value x1 x2 it feeds (float32 inputs
        # whose products overflow while the terms do not give finite results); exact
        nonzero = np.abs(self.value[self.value != 0])
        q = int(-np.floor(np.log2(nonzero.min()))) if nonzero.size else 0
        self.scale = 2.0 ** -min(max(q, 0), MAX_SCALE_SHIFT)
        self.dims = tuple(int(n) for n in dims)
        self.min_rows = int(min_rows)

    @staticmethod
    def prepare() -> None:
        """Compile the kernels now (once per process), not at the first call."""
        _jit()

    def coefficients(self, w: np.ndarray | None, dtype: Any) -> np.ndarray:
        """``value [w, 1][widx]`` in ``dtype`` (``w (numel,)``, None: the values)."""
        if w is None:
            return self.value.astype(dtype)
        ext = np.concatenate([np.asarray(w, np.float64).reshape(-1), [1.0]])
        return (self.value * ext[self.widx]).astype(dtype)

    def weight_grad(self, ge: np.ndarray, numel: int) -> np.ndarray:
        """``[w, 1]``'s gradient ``(numel + 1,)`` from the entries' ``ge``."""
        return np.bincount(self.widx, weights=self.value * ge, minlength=numel + 1)

    def _parts(self, b: int, threads: int) -> list[tuple[int, int]]:
        n = max(1, min(int(threads), b // self.min_rows))
        bounds = [b * t // n for t in range(n + 1)]
        return [(bounds[t], bounds[t + 1]) for t in range(n)]

    def _check(self, *arrays: np.ndarray) -> None:
        dt = arrays[0].dtype
        if dt not in (np.float32, np.float64):
            raise ValueError(f"the coupling kernels compute in float32 or float64, not {dt}")
        for a in arrays:
            if a.dtype != dt or not a.flags.c_contiguous:
                raise ValueError("the coupling kernels take C-contiguous arrays of one dtype")

    def forward(self, x1: np.ndarray, x2: np.ndarray, c: np.ndarray, threads: int,
                out: np.ndarray | None = None) -> np.ndarray:
        self._check(x1, x2, c)
        b = x1.shape[0]
        if out is None:
            out = np.empty((b, self.dims[2]), x1.dtype)
        fn, parts = _jit()["forward"], self._parts(b, threads)
        sc, inv = x1.dtype.type(self.scale), x1.dtype.type(1 / self.scale)
        run_parts(lambda t: fn(x1, x2, c, self.gi, self.gj, self.gp, self.k, out, *parts[t], sc,
                               inv), len(parts))
        return out

    def backward(self, x1: np.ndarray, x2: np.ndarray, c: np.ndarray, ct: np.ndarray,
                 need: tuple[bool, bool, bool], threads: int,
                 out: tuple[np.ndarray | None, ...] = (None, None, None)
                 ) -> tuple[np.ndarray | None, ...]:
        """``x1``'s gradient never reads ``x1`` and ``x2``'s never ``x2``: a caller may pass
        any array of the right shape there (the result's own, say)."""
        self._check(x1, x2, c, ct)
        b, dt = ct.shape[0], ct.dtype
        n1, n2, ne = (bool(n) for n in need)
        g1 = (out[0] if out[0] is not None else np.empty_like(x1)) if n1 else None
        g2 = (out[1] if out[1] is not None else np.empty_like(x2)) if n2 else None
        dummy = np.zeros((1, 1), dt)
        k, parts = _jit(), self._parts(b, threads)
        ges = [np.zeros(self.n, dt) for _ in parts] if ne else [dummy[0]] * len(parts)

        sc, inv = dt.type(self.scale), dt.type(1 / self.scale)

        def part(t: int) -> None:
            k["backward"](x1, x2, c, self.gi, self.gj, self.gp, self.k, ct,
                          dummy if g1 is None else g1, dummy if g2 is None else g2, ges[t],
                          n1, n2, ne, *parts[t], sc, inv)

        run_parts(part, len(parts))
        ge = None
        if ne:
            ge = out[2] if out[2] is not None else np.empty(self.n, dt)
            np.sum(ges, axis=0, out=ge)
        return g1, g2, ge
