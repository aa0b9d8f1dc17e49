"""A channelwise CGTP descriptor run by the compiled kernels of :mod:`tp_kernels.source` over
a batch of NumPy rows: chunks that stay in cache, threads.

The backends wrap it: tp_torch for CPU tensors (autograd Functions and custom ops), tp_jax as
XLA FFI calls. Every array is C-contiguous NumPy, float32 or float64, rows first.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import numpy as np
from tp_spec.plan import DEFAULT_TUNING, Tuning

from .source import kernel_table, supports

__all__ = ["ChannelwiseKernels", "run_parts", "weight_rows"]

_LOCK = threading.Lock()
_POOL: Any = None


def _forget_pool() -> None:
    """In a forked child the parent's pool threads do not exist: start a new pool there."""
    global _POOL, _LOCK
    _POOL = None
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _pool(n: int) -> Any:
    global _POOL
    from concurrent.futures import ThreadPoolExecutor

    with _LOCK:
        if _POOL is None or _POOL._max_workers < n:
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tp_kernels")
        return _POOL


def weight_rows(w: np.ndarray | None, ones: np.ndarray) -> tuple[np.ndarray, int]:
    """The kernels' weight array and row step: ``ones`` and 0 without weights, one row and 0
    for shared weights ``(numel,)``, the rows and 1 for per-sample weights ``(B, numel)``."""
    if w is None:
        return ones, 0
    a = np.ascontiguousarray(w)
    return (a.reshape(1, -1), 0) if a.ndim == 1 else (a, 1)


def run_parts(fn: Any, n: int) -> None:
    """``fn(t)`` for every part ``t < n``: here for one part, else on the thread pool (the
    kernels release the GIL)."""
    if n == 1:
        fn(0)
    else:
        list(_pool(n).map(fn, range(n)))


class _Grads:
    """The gradient arrays of one backward pass over ``nparts`` thread parts: x1's and x2's
    (the ``out`` arrays zeroed, or new ones), the weights' (per-sample: the result's rows;
    shared: one partial sum per thread) and, with ``[w, s]``, the unweighted paths' weight's
    (one per channel, summed at the end). ``dummy`` stands for a gradient not asked for."""

    def __init__(self, x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None,
                 need: tuple[bool, bool, bool], out: tuple[np.ndarray | None, ...],
                 nparts: int, wstep: int, ustep: int, scaled: bool, numel: int, max_mul: int
                 ) -> None:
        dt, b = x1.dtype, x1.shape[0]
        self.need = (need[0], need[1], need[2] and w is not None)
        self.nu = self.need[2] and scaled
        self.w, self.wstep, self.ustep, self.numel, self.out = w, wstep, ustep, numel, out
        self.dummy = np.zeros((1, 1), dt)
        self.g1 = self._zeros(0, x1) if need[0] else self.dummy
        self.g2 = self._zeros(1, x2) if need[1] else self.dummy

        def partial(step: int, cols: int) -> list[np.ndarray]:
            if step:  # per-sample rows (threads write disjoint rows)
                return [np.zeros((b, cols), dt)] * nparts
            return [np.zeros((1, cols), dt) for _ in range(nparts)]  # a sum per thread

        if self.need[2] and wstep:
            self.gw = [self._zeros(2, w)] * nparts
        else:
            self.gw = partial(0, numel) if self.need[2] else [self.dummy] * nparts
        self.gu = partial(ustep, max_mul) if self.nu else [self.dummy] * nparts

    def _zeros(self, i: int, like: np.ndarray) -> np.ndarray:
        if self.out[i] is None:
            return np.zeros_like(like)  # NumPy allocates (huge pages for large arrays)
        self.out[i].fill(0)
        return self.out[i]

    def chunk(self, t: int, s: int, e: int) -> tuple[np.ndarray, ...]:
        """Thread ``t``'s arrays for rows ``s:e``: x1's, x2's, the weights' and the unweighted
        paths' weight's gradients."""
        n1, n2, nw = self.need
        gw, gu = self.gw[t], self.gu[t]
        return (self.g1[s:e] if n1 else self.dummy, self.g2[s:e] if n2 else self.dummy,
                gw[s:e] if nw and self.wstep else gw, gu[s:e] if self.nu and self.ustep else gu)

    def result(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        n1, n2, nw = self.need
        gw = None
        if nw:
            numel = self.numel
            if self.wstep:
                gw = self.gw[0]
                if self.nu:
                    gw[:, numel] = self.gu[0].sum(axis=1)
            else:
                gw = self._zeros(2, self.w).reshape(-1)
                gw[:numel] = np.sum(self.gw, axis=0)[0]
                if self.nu:
                    gw[numel] = np.sum(self.gu)
                gw = gw.reshape(self.w.shape)
        return (self.g1 if n1 else None, self.g2 if n2 else None, gw)


class ChannelwiseKernels:
    """A channelwise CGTP descriptor run by the compiled kernels (:func:`supports` must hold).

    ``forward(x1, x2, w, threads) -> out`` and ``backward(x1, x2, w, g, need, threads) ->
    (g1, g2, gw)`` take ``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` None, ``(numel,)`` or
    ``(B, numel)``, ``g (B, dim_out)`` (float32 or float64 NumPy arrays) and return new arrays
    (gradients not asked for in ``need = (x1, x2, w)`` are None). With ``weighted_only`` only
    the weighted paths run: the product's derivative along the weights, ``w`` then being the
    direction (double backward). With ``scaled``, ``w`` is ``[w, s]`` (``(numel + 1,)`` or
    ``(B, numel + 1)``): ``s`` is the unweighted paths' weight (1: the plain product, 0: the
    weighted paths only), so the product is linear in ``[w, s]``, and ``backward``'s weight
    gradient is that vector's.

    ``threads``: the batch is split over at most this many threads (rows of at least
    ``tuning.kernel_thread_min_rows`` each). ``tuning``: rows per kernel call
    (``kernel_chunk_entries`` x1 + output entries, at least ``kernel_chunk_min_rows``), so that
    a chunk's x1 rows stay in cache while every path reads them and its output rows while the
    paths that share an output block add into it (one thread, AMD EPYC, MACE-large, batch
    2,000: whole batch per path 20 ms, chunks of 64 rows 14 ms).
    """

    def __init__(self, d: Any, tuning: Tuning = DEFAULT_TUNING) -> None:
        if not supports(d, tuning):
            raise ValueError("ChannelwiseKernels needs channelwise (uvu, mul_in2 = 1) paths")
        off1 = [s.start for s in d.irreps_in1.slices()]
        off2 = [s.start for s in d.irreps_in2.slices()]
        offo = [s.start for s in d.irreps_out.slices()]
        #: per path: (l1, l2, l3), x1 / x2 / output / weight offsets (-1: unweighted), mul,
        #: coefficient, add into the output block (an earlier path wrote it); and the output
        #: blocks no path writes. [False]: every path, [True]: the weighted paths only.
        self.paths: dict[bool, list[tuple[Any, ...]]] = {}
        self.zero_blocks: dict[bool, list[tuple[int, int]]] = {}
        for only in (False, True):
            seen: set[int] = set()
            rows = []
            for p in d.paths:
                if only and not p.has_weight:
                    continue
                rows.append((p.lll, off1[p.i_in1], off2[p.i_in2], offo[p.i_out],
                             p.weight_offset if p.has_weight else -1, p.mul_in1,
                             float(p.coefficient), p.i_out in seen))
                seen.add(p.i_out)
            self.paths[only] = rows
            self.zero_blocks[only] = [(s.start, s.stop) for i, s in
                                      enumerate(d.irreps_out.slices()) if i not in seen]
        self.dims = (d.irreps_in1.dim, d.irreps_in2.dim, d.irreps_out.dim, d.weight_numel)
        self.max_mul = max(p.mul_in1 for p in d.paths)
        self.rows = max(tuning.kernel_chunk_min_rows,
                        tuning.kernel_chunk_entries // (self.dims[0] + self.dims[2]))
        self.thread_min_rows = tuning.kernel_thread_min_rows

    @property
    def has_unweighted(self) -> bool:
        """Whether some path has no weight."""
        return len(self.paths[True]) < len(self.paths[False])

    def prepare(self, dtype: Any, kinds: tuple[str, ...] = ("fwd", "bwd")) -> None:
        """Compile (or load from the cache) the kernels ``kinds`` for ``dtype`` now, not at the
        first call."""
        self._bound(np.dtype(dtype), kinds=kinds)

    def _bound(self, np_dtype: Any, weighted_only: bool = False,
               kinds: tuple[str, ...] = ("fwd", "bwd")) -> list[tuple[Any, ...]]:
        """The paths with their kernels ``kinds`` and the coefficient in the dtype."""
        paths = self.paths[weighted_only]
        table = kernel_table([p[0] for p in self.paths[False]], np.dtype(np_dtype).name,
                             kinds)
        fns = dict(zip((p[0] for p in self.paths[False]), table, strict=True))
        return [(*fns[lll], o1, o2, o3, wo, mul, np_dtype.type(c), acc)
                for lll, o1, o2, o3, wo, mul, c, acc in paths]

    def key(self) -> str:
        """The path table as a JSON string: what :meth:`from_key` rebuilds the kernels from
        (so a traced or exported graph can carry everything its kernels need)."""
        return json.dumps({"paths": [self.paths[False], self.paths[True]],
                           "zero_blocks": [self.zero_blocks[False], self.zero_blocks[True]],
                           "dims": self.dims, "max_mul": self.max_mul, "rows": self.rows,
                           "thread_min_rows": self.thread_min_rows}, separators=(",", ":"))

    @classmethod
    def from_key(cls, key: str) -> ChannelwiseKernels:
        """The kernels described by :meth:`key`."""
        k = json.loads(key)
        self = cls.__new__(cls)
        self.paths = {only: [(tuple(lll), *rest) for lll, *rest in k["paths"][only]]
                      for only in (False, True)}
        self.zero_blocks = {only: [tuple(z) for z in k["zero_blocks"][only]]
                            for only in (False, True)}
        self.dims = tuple(k["dims"])
        self.max_mul, self.rows = k["max_mul"], k["rows"]
        self.thread_min_rows = k["thread_min_rows"]
        return self

    def _split(self, b: int, threads: int) -> list[tuple[int, int]]:
        n = min(threads, b // self.thread_min_rows)
        if n <= 1:
            return [(0, b)]
        step = -(-b // n)
        return [(s, min(b, s + step)) for s in range(0, b, step)]

    def _unweighted_rows(self, w: np.ndarray | None, scaled: bool, b: int, dt: Any
                         ) -> tuple[np.ndarray, int, bool]:
        """The unweighted paths' weight rows ``(1 or B, max_mul)``, row step, and whether they
        are all zero: ones without ``scaled``, else the last entry of ``w`` repeated."""
        if not scaled:
            return np.ones((1, self.max_mul), dt), 0, False
        s = w[..., -1:].reshape(-1, 1)
        return (np.repeat(s, self.max_mul, axis=1), 1 if w.ndim == 2 else 0,
                not np.any(s))

    def forward(self, x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None, threads: int = 1,
                weighted_only: bool = False, out: np.ndarray | None = None,
                scaled: bool = False) -> np.ndarray:
        """``out (B, dim_out)`` (written in place when given)."""
        b, dt = x1.shape[0], x1.dtype
        ones = np.ones((1, self.max_mul), dt)
        aw, wstep = weight_rows(w, ones)
        uw, ustep, zero = self._unweighted_rows(w, scaled, b, dt)
        weighted_only = weighted_only or zero
        # NumPy allocates (NumPy asks for transparent huge pages on large arrays: a fresh
        # output faults in 2 MB pages, not 4 kB ones; MACE-large, batch 2,000 (73 MB): 40 ms
        # forward from torch.empty, 16 ms from np.empty)
        ao = np.empty((b, self.dims[2]), dt) if out is None else out
        bound = self._bound(dt, weighted_only)
        zero_blocks = self.zero_blocks[weighted_only]
        rows = self.rows
        parts = self._split(b, threads)

        def run(t: int) -> None:
            s0, s1 = parts[t]
            for s in range(s0, s1, rows):
                e = min(s1, s + rows)
                c1, c2, co = x1[s:e], x2[s:e], ao[s:e]
                cw = aw[s:e] if wstep else aw
                cu = uw[s:e] if ustep else uw
                for fwd, _, o1, o2, o3, wo, mul, c, acc in bound:
                    if wo < 0:
                        fwd(c1, c2, cu, ustep, co, o1, o2, o3, 0, mul, c, acc)
                    else:
                        fwd(c1, c2, cw, wstep, co, o1, o2, o3, wo, mul, c, acc)
                for z0, z1 in zero_blocks:
                    co[:, z0:z1] = 0

        run_parts(run, len(parts))
        return ao

    def backward(self, x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None, g: np.ndarray,
                 need: tuple[bool, bool, bool], threads: int = 1, weighted_only: bool = False,
                 out: tuple[np.ndarray | None, ...] = (None, None, None), scaled: bool = False
                 ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(g1 (B, dim1), g2 (B, dim2), gw)`` for the gradients asked for in ``need`` (None
        for the others); ``gw`` shaped as ``w``. ``out``: arrays to write them into (any
        content: they are zeroed first)."""
        b, dt = x1.shape[0], x1.dtype
        aw, wstep = weight_rows(w, np.ones((1, self.max_mul), dt))
        uw, ustep, zero = self._unweighted_rows(w, scaled, b, dt)
        parts = self._split(b, threads)
        gr = _Grads(x1, x2, w, need, out, len(parts), wstep, ustep, scaled, self.dims[3],
                    self.max_mul)
        n1, n2, nw = gr.need
        weighted_only = weighted_only or (zero and not gr.nu)
        bound = self._bound(dt, weighted_only)
        rows = self.rows

        def run(t: int) -> None:
            s0, s1 = parts[t]
            for s in range(s0, s1, rows):
                e = min(s1, s + rows)
                c1, c2, cg = x1[s:e], x2[s:e], g[s:e]
                cg1, cg2, cgw, cgu = gr.chunk(t, s, e)
                cw = aw[s:e] if wstep else aw
                cu = uw[s:e] if ustep else uw
                for _, bwd, o1, o2, o3, wo, mul, c, _ in bound:
                    if wo < 0:
                        bwd(c1, c2, cu, ustep, cg, o1, o2, o3, 0, mul, c, cg1, cg2, cgu, n1,
                            n2, gr.nu)
                    else:
                        bwd(c1, c2, cw, wstep, cg, o1, o2, o3, wo, mul, c, cg1, cg2, cgw, n1,
                            n2, nw)

        if b:
            run_parts(run, len(parts))
        return gr.result()

    def backward_dual(self, x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None,
                      g: np.ndarray, v: tuple[np.ndarray, np.ndarray, np.ndarray | None],
                      need: tuple[bool, bool, bool], threads: int = 1,
                      out: tuple[np.ndarray | None, ...] = (None, None, None),
                      scaled: bool = False
                      ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """The derivative of :meth:`backward`'s gradients along ``v = (v1, v2, vw)`` (shaped
        as ``x1, x2, w``; ``g`` held fixed): ``H v`` for the Hessian ``H`` of ``<g, out>`` in
        ``(x1, x2, w)``, so also the double backward's gradient for the directions ``v``. One
        pass over the rows (the ``bwd_dual`` kernels); arguments as :meth:`backward`."""
        v1, v2, vw = v
        b, dt = x1.shape[0], x1.dtype
        aw, wstep = weight_rows(w, np.ones((1, self.max_mul), dt))
        avw, _ = weight_rows(vw, np.zeros((1, self.max_mul), dt))
        uw, ustep, _ = self._unweighted_rows(w, scaled, b, dt)
        # the unweighted paths' weight: [w, s]'s last entry, else the constant 1
        uvw = (self._unweighted_rows(vw, True, b, dt)[0] if scaled
               else np.zeros((1, self.max_mul), dt))
        parts = self._split(b, threads)
        gr = _Grads(x1, x2, w, need, out, len(parts), wstep, ustep, scaled, self.dims[3],
                    self.max_mul)
        n1, n2, nw = gr.need
        bound = self._bound(dt, False, ("bwd_dual",))
        rows = self.rows

        def run(t: int) -> None:
            s0, s1 = parts[t]
            for s in range(s0, s1, rows):
                e = min(s1, s + rows)
                c1, c2, cg, d1, d2 = x1[s:e], x2[s:e], g[s:e], v1[s:e], v2[s:e]
                cg1, cg2, cgw, cgu = gr.chunk(t, s, e)
                cw, cvw = (aw[s:e], avw[s:e]) if wstep else (aw, avw)
                cu, cvu = (uw[s:e], uvw[s:e]) if ustep else (uw, uvw)
                for dual, o1, o2, o3, wo, mul, c, _ in bound:
                    if wo < 0:
                        dual(c1, c2, cu, ustep, cg, d1, d2, cvu, o1, o2, o3, 0, mul, c, cg1,
                             cg2, cgu, n1, n2, gr.nu)
                    else:
                        dual(c1, c2, cw, wstep, cg, d1, d2, cvw, o1, o2, o3, wo, mul, c, cg1,
                             cg2, cgw, n1, n2, nw)

        if b:
            run_parts(run, len(parts))
        return gr.result()
