"""The compiled channelwise CPU kernels (:mod:`tp_torch._kernel_source`) run over a batch:
chunks that stay in cache, threads.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import numpy as np
import torch
from tp_spec.plan import DEFAULT_TUNING, Tuning

from ._kernel_source import available, cg_nonzeros, kernel_table, path_kernels, supports

__all__ = ["ChannelwiseKernels", "available", "cg_nonzeros", "num_threads", "path_kernels",
           "run_parts", "supports", "weight_rows"]

_LOCK = threading.Lock()


_POOL: Any = None


def num_threads() -> int:
    """Threads the kernels split a batch over: torch's intra-op thread count."""
    return torch.get_num_threads()


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
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tp_torch_cpu_kernels")
        return _POOL


def weight_rows(w: Any, ones: np.ndarray) -> tuple[np.ndarray, int]:
    """The kernels' weight array and row step: ``ones`` and 0 without weights, one row and 0
    for shared weights ``(numel,)``, the rows and 1 for per-sample weights ``(B, numel)``."""
    if w is None:
        return ones, 0
    a = w.detach().contiguous().numpy()
    return (a.reshape(1, -1), 0) if a.ndim == 1 else (a, 1)


def run_parts(fn: Any, n: int) -> None:
    """``fn(t)`` for every part ``t < n``: here for one part, else on the thread pool (the
    kernels release the GIL)."""
    if n == 1:
        fn(0)
    else:
        list(_pool(n).map(fn, range(n)))


class ChannelwiseKernels:
    """A channelwise CGTP descriptor run by the compiled kernels (:func:`supports` must hold).

    ``forward(x1, x2, w) -> out`` and ``backward(x1, x2, w, g, need) -> (g1, g2, gw)`` take
    CPU tensors ``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` None, ``(numel,)`` or
    ``(B, numel)``, ``g (B, dim_out)``, float32 or float64, and return new tensors (gradients
    not asked for in ``need = (x1, x2, w)`` are None). With ``weighted_only`` only the weighted
    paths run: the product's derivative along the weights, ``w`` then being the direction
    (double backward). No autograd: the caller wraps them.

    ``tuning``: rows per kernel call (``kernel_chunk_entries`` x1 + output entries, at least
    ``kernel_chunk_min_rows``), so that a chunk's x1 rows stay in cache while every path reads
    them and its output rows while the paths that share an output block add into it (one
    thread, AMD EPYC, MACE-large, batch 2,000: whole batch per path 20 ms, chunks of 64 rows
    14 ms); batches of at least ``kernel_thread_min_rows`` rows per thread are split across
    torch's intra-op threads (the kernels release the GIL).
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

    def _bound(self, np_dtype: Any, weighted_only: bool = False) -> list[tuple[Any, ...]]:
        """The paths with their kernels and the coefficient in the dtype."""
        paths = self.paths[weighted_only]
        table = kernel_table([p[0] for p in self.paths[False]], np.dtype(np_dtype).name)
        fns = dict(zip((p[0] for p in self.paths[False]), table, strict=True))
        return [(*fns[lll], o1, o2, o3, wo, mul, np_dtype.type(c), acc)
                for lll, o1, o2, o3, wo, mul, c, acc in paths]

    def key(self) -> str:
        """The path table as a JSON string: what :meth:`from_key` rebuilds the kernels from
        (the ``key`` argument of the custom ops in :mod:`tp_torch._ops`, so an exported or
        compiled graph carries everything its kernels need)."""
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

    def _split(self, b: int) -> list[tuple[int, int]]:
        n = min(num_threads(), b // self.thread_min_rows)
        if n <= 1:
            return [(0, b)]
        step = -(-b // n)
        return [(s, min(b, s + step)) for s in range(0, b, step)]

    def forward(self, x1: Any, x2: Any, w: Any, weighted_only: bool = False) -> Any:
        a1 = x1.detach().contiguous().numpy()
        a2 = x2.detach().contiguous().numpy()
        ones = np.ones((1, self.max_mul), a1.dtype)
        aw, wstep = weight_rows(w, ones)
        # NumPy allocates (NumPy asks for transparent huge pages on large arrays: a fresh
        # output faults in 2 MB pages, not 4 kB ones; MACE-large, batch 2,000 (73 MB): 40 ms
        # forward from torch.empty, 16 ms from np.empty)
        ao = np.empty((a1.shape[0], self.dims[2]), a1.dtype)
        out = torch.from_numpy(ao)
        bound = self._bound(a1.dtype, weighted_only)
        zero_blocks = self.zero_blocks[weighted_only]
        rows = self.rows
        parts = self._split(a1.shape[0])

        def run(t: int) -> None:
            s0, s1 = parts[t]
            for s in range(s0, s1, rows):
                e = min(s1, s + rows)
                c1, c2, co = a1[s:e], a2[s:e], ao[s:e]
                cw = aw[s:e] if wstep else aw
                for fwd, _, o1, o2, o3, wo, mul, c, acc in bound:
                    if wo < 0:
                        fwd(c1, c2, ones, 0, co, o1, o2, o3, 0, mul, c, acc)
                    else:
                        fwd(c1, c2, cw, wstep, co, o1, o2, o3, wo, mul, c, acc)
                for z0, z1 in zero_blocks:
                    co[:, z0:z1] = 0

        run_parts(run, len(parts))
        return out

    def backward(self, x1: Any, x2: Any, w: Any, g: Any, need: tuple[bool, bool, bool],
                 weighted_only: bool = False) -> tuple[Any, Any, Any]:
        n1, n2, nw = need
        nw = nw and w is not None
        a1 = x1.detach().contiguous().numpy()
        a2 = x2.detach().contiguous().numpy()
        ag = g.detach().contiguous().numpy()
        b = a1.shape[0]
        ones = np.ones((1, self.max_mul), a1.dtype)
        aw, wstep = weight_rows(w, ones)
        dummy = np.zeros((1, 1), a1.dtype)
        ag1 = np.zeros_like(a1) if n1 else dummy  # NumPy allocates: see forward
        ag2 = np.zeros_like(a2) if n2 else dummy
        bound = self._bound(a1.dtype, weighted_only)
        rows = self.rows
        parts = self._split(b)
        if nw and not wstep:  # shared weights: one partial sum per thread
            gws = [np.zeros((1, self.dims[3]), a1.dtype) for _ in parts]
        else:
            # per-sample weights (threads write disjoint rows) or no weight gradient
            gws = [np.zeros((b, self.dims[3]), a1.dtype) if nw else dummy] * len(parts)

        def run(t: int) -> None:
            s0, s1 = parts[t]
            gwt = gws[t]
            for s in range(s0, s1, rows):
                e = min(s1, s + rows)
                c1, c2, cg = a1[s:e], a2[s:e], ag[s:e]
                cg1 = ag1[s:e] if n1 else dummy
                cg2 = ag2[s:e] if n2 else dummy
                cw = aw[s:e] if wstep else aw
                cgw = gwt[s:e] if nw and wstep else gwt
                for _, bwd, o1, o2, o3, wo, mul, c, _ in bound:
                    if wo < 0:  # unweighted: no weight gradient
                        bwd(c1, c2, ones, 0, cg, o1, o2, o3, 0, mul, c, cg1, cg2, dummy, n1,
                            n2, False)
                    else:
                        bwd(c1, c2, cw, wstep, cg, o1, o2, o3, wo, mul, c, cg1, cg2, cgw, n1,
                            n2, nw)

        run_parts(run, len(parts))
        gw = None
        if nw:
            tot = gws[0] if wstep else np.sum(gws, axis=0)
            gw = torch.from_numpy(tot.reshape(w.shape) if not wstep else tot)
        return (torch.from_numpy(ag1) if n1 else None, torch.from_numpy(ag2) if n2 else None,
                gw)
