"""Generated sources of the compiled channelwise CPU kernels (Numba), and their loading.

A channelwise path (mode ``uvu``, ``x2`` block of multiplicity 1) maps, per sample and
channel ``u``::

    out[ro, u, k] (+)= w[r2, u] * sum_i x1[r1, u, i] * a[i, k],
    a[i, k] = coef * sum_j C[i, j, k] * x2[r2, j]

with ``C`` the Clebsch-Gordan block of ``(l1, l2, l3)``. In ``mul_ir`` layout every term is a
strided loop over ``u`` whose stride (``d1``, ``d3``) is a compile-time constant, so the
compiler vectorises it. As torch ops the same product is ~30 small ops per path group (batched
matmuls of ``(m1, d1) @ (d1, d3)``, broadcasts, copies into output blocks), each a pass over
memory with a fixed overhead; here it is one pass per path.

One source per ``(l1, l2, l3)`` and dtype is generated with the nonzero CG entries written
out (exact float64 values, rounded once to the dtype) and compiled by Numba on first use. The
source files live in a cache directory (``$TP_TORCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/tp_torch`` or ``~/.cache/tp_torch``) so that Numba's on-disk cache keeps
the machine code between processes; where that directory cannot be written the kernels are
compiled in memory. ``TP_TORCH_CPU_KERNELS=0`` turns the kernels off (the torch ops run instead);
without Numba they are off.

Kernels (``T``: float32 or float64; ``x1 (B1, dim1)``, ``x2 (B2, dim2)``, ``out``/``g``
``(Bo, dim_out)``, ``w (1 or B2, numel)`` read at row ``r2 * wstep``, all C-contiguous)::

    fwd(x1, x2, w, wstep, out, o1, o2, o3, wo, mul, coef, acc)
    bwd(x1, x2, w, wstep, g, o1, o2, o3, wo, mul, coef, gx1, gx2, gw, need1, need2, needw)
    fwd_ix(x1, x2, w, wstep, out, i1, i2, io, n0, n1, o1, o2, o3, wo, mul, coef)
    bwd_ix(x1, x2, w, wstep, g, i1, i2, io, n0, n1, o1, o2, o3, wo, mul, coef, gx1, gx2, gw,
           need1, need2, needw)

``fwd``/``bwd``: sample ``b`` reads and writes row ``b`` of every array (``r1 = r2 = ro = b``);
``acc``: add into ``out`` (else assign). ``fwd_ix``/``bwd_ix``: item ``n`` in ``[n0, n1)``
reads rows ``r1 = i1[n]``, ``r2 = i2[n]``, ``ro = io[n]`` (int64 index arrays) and always adds
(the convolution: ``r1`` a sender, ``r2`` an edge, ``ro`` a receiver). ``o1, o2, o3, wo``: the
path's offsets in ``x1``, ``x2``, the output and ``w``; ``bwd``/``bwd_ix`` add into ``gx1``,
``gx2``, ``gw`` (the gradients asked for, at rows ``r1``, ``r2`` and ``r2 * wstep``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from functools import cache, lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from tp_spec import clebsch_gordan
from tp_spec.plan import DEFAULT_TUNING, Tuning

__all__ = ["available", "cg_nonzeros", "indexed_path_kernels", "path_kernels", "supports"]

_FASTMATH = {"reassoc", "contract"}  # vectorised sums over channels and FMAs; no NaN/inf change
_FASTMATH_SRC = "{" + ", ".join(repr(f) for f in sorted(_FASTMATH)) + "}"
_LOCK = threading.Lock()
_DTYPES = {"float32": "f4", "float64": "f8"}


def _new_lock() -> None:
    """In a forked child a lock held by a parent's thread would never be released."""
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock)


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether the compiled kernels can run: Numba importable, ``TP_TORCH_CPU_KERNELS`` not 0."""
    if os.environ.get("TP_TORCH_CPU_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def cg_nonzeros(l1: int, l2: int, l3: int) -> list[tuple[int, int, int, float]]:
    """The nonzero entries ``(i, j, k, C[i, j, k])`` of the CG block (float64 exact tables)."""
    c = np.asarray(clebsch_gordan(l1, l2, l3), dtype=np.float64)
    return [(int(i), int(j), int(k), float(c[i, j, k]))
            for i, j, k in zip(*np.nonzero(c), strict=True)]


def _source(l1: int, l2: int, l3: int, dtype: str) -> str:
    """The Python source of ``fwd``, ``bwd``, ``fwd_ix`` and ``bwd_ix`` for ``(l1, l2, l3)``
    (see the module doc)."""
    d1, d3 = 2 * l1 + 1, 2 * l3 + 1
    nz = cg_nonzeros(l1, l2, l3)
    ik = sorted({(i, k) for i, _, k, _ in nz})  # the nonzero entries of a
    by_ik: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for i, j, k, c in nz:
        by_ik.setdefault((i, k), []).append((j, c))
    js = sorted({j for _, j, _, _ in nz})

    def t(c: float) -> str:
        return f"T({c!r})"

    x_lines = [f"                x_{i} = xr[u * {d1} + {i}]" for i in range(d1)]
    g_lines = [f"                g_{k} = gr[u * {d3} + {k}]" for k in range(d3)]

    def y(k: int) -> str:  # sum_i x_i a_ik
        terms = [f"x_{i} * a_{i}_{k}" for i in range(d1) if (i, k) in by_ik]
        return " + ".join(terms) if terms else "T(0.0)"

    def rows(indexed: bool) -> list[str]:
        """The loop over samples and the rows of one sample: ``r1`` of x1 (and gx1), ``r2`` of
        x2 (and gx2, and of w through ``wstep``), ``ro`` of the output (and g)."""
        if not indexed:
            return ["    for b in range(x1.shape[0]):", "        r1 = b", "        r2 = b",
                    "        ro = b"]
        return ["    for n in range(n0, n1):", "        r1 = i1[n]", "        r2 = i2[n]",
                "        ro = io[n]"]

    def a_lines() -> list[str]:
        out = [f"        x2_{j} = x2[r2, o2 + {j}]" for j in js]
        for i, k in ik:
            terms = " + ".join(f"{t(c)} * x2_{j}" for j, c in by_ik[(i, k)])
            out.append(f"        a_{i}_{k} = coef * ({terms})")
        return out

    deco = f"@njit(cache=True, nogil=True, fastmath={_FASTMATH_SRC})"

    def fwd(indexed: bool) -> list[str]:
        sig = ("def fwd_ix(x1, x2, w, wstep, out, i1, i2, io, n0, n1, o1, o2, o3, wo, mul, coef):"
               if indexed else
               "def fwd(x1, x2, w, wstep, out, o1, o2, o3, wo, mul, coef, acc):")
        L = ["", deco, sig, *rows(indexed), *a_lines(),
             "        wr = r2 * wstep",
             "        wrow = w[wr, wo:wo + mul]",
             f"        xr = x1[r1, o1:o1 + mul * {d1}]",
             f"        orow = out[ro, o3:o3 + mul * {d3}]"]
        modes = [("+=", "if True:")] if indexed else [("+=", "if acc:"), ("=", "else:")]
        for op, cond in modes:
            L += [f"        {cond}", "            for u in range(mul):",
                  "                s = wrow[u]", *x_lines]
            L += [f"                orow[u * {d3} + {k}] {op} s * ({y(k)})" for k in range(d3)]
        return L

    def bwd(indexed: bool) -> list[str]:
        sig = (["def bwd_ix(x1, x2, w, wstep, g, i1, i2, io, n0, n1, o1, o2, o3, wo, mul, coef,",
                "           gx1, gx2, gw, need1, need2, needw):"] if indexed else
               ["def bwd(x1, x2, w, wstep, g, o1, o2, o3, wo, mul, coef, gx1, gx2, gw, need1,",
                "        need2, needw):"])
        L = ["", deco, *sig, *rows(indexed), *a_lines(),
             "        wr = r2 * wstep",
             "        wrow = w[wr, wo:wo + mul]",
             f"        xr = x1[r1, o1:o1 + mul * {d1}]",
             f"        gr = g[ro, o3:o3 + mul * {d3}]",
             "        if need1:",
             f"            g1r = gx1[r1, o1:o1 + mul * {d1}]",
             "            for u in range(mul):",
             "                s = wrow[u]",
             *g_lines]
        for i in range(d1):
            terms = " + ".join(f"g_{k} * a_{i}_{k}" for k in range(d3) if (i, k) in by_ik)
            if terms:
                L.append(f"                g1r[u * {d1} + {i}] += s * ({terms})")
        L += ["        if needw:", "            gwr = gw[wr, wo:wo + mul]",
              "            for u in range(mul):", *x_lines, *g_lines]
        L.append("                gwr[u] += " + " + ".join(
            f"g_{k} * ({y(k)})" for k in range(d3)))
        L += ["        if need2:"]
        L += [f"            ga_{i}_{k} = T(0.0)" for i, k in ik]
        L += ["            for u in range(mul):", "                s = wrow[u]", *x_lines,
              *g_lines]
        L += [f"                ga_{i}_{k} += x_{i} * (s * g_{k})" for i, k in ik]
        for j in js:
            terms = " + ".join(f"{t(c)} * ga_{i}_{k}" for i, jj, k, c in nz if jj == j)
            L.append(f"            gx2[r2, o2 + {j}] += coef * ({terms})")
        return L

    L = [
        f"# generated by tp_torch._kernel_source: channelwise CG path ({l1}, {l2}, {l3})",
        "import numpy as np",
        "from numba import njit",
        f"T = np.{dtype}",
        *fwd(False), *bwd(False), *fwd(True), *bwd(True),
    ]
    return "\n".join(L) + "\n"


def _cache_dir() -> Path | None:
    """A writable directory for the generated sources (and Numba's cache beside them)."""
    base = os.environ.get("TP_TORCH_CACHE_DIR")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "tp_torch"
    root = root / "cpu_kernels"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return root if os.access(root, os.W_OK) else None


def _load(name: str, src: str) -> ModuleType:
    """Import ``src`` as a module: from a file in the cache directory (Numba caches its machine
    code beside it), else from memory."""
    root = _cache_dir()
    if root is not None:
        path = root / f"{name}.py"
        if not path.exists() or path.read_text() != src:
            fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(src)
            os.replace(tmp, path)  # atomic: concurrent processes write the same text
        spec = importlib.util.spec_from_file_location(f"tp_torch_cpu_kernels_{name}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod
    mod = ModuleType(f"tp_torch_cpu_kernels_{name}")  # pragma: no cover - unwritable cache
    exec(compile(src.replace("cache=True", "cache=False"), mod.__name__, "exec"), mod.__dict__)
    return mod


@cache
def _module(l1: int, l2: int, l3: int, dtype: str) -> ModuleType:
    if dtype not in _DTYPES:
        raise ValueError(f"the CPU kernels compute in float32 or float64, not {dtype}")
    src = _source(l1, l2, l3, dtype)
    digest = hashlib.sha1(src.encode()).hexdigest()[:12]
    with _LOCK:
        return _load(f"cw_{l1}_{l2}_{l3}_{_DTYPES[dtype]}_{digest}", src)


def path_kernels(l1: int, l2: int, l3: int, dtype: str) -> tuple[Any, Any]:
    """``(fwd, bwd)`` for the path ``(l1, l2, l3)`` in ``dtype`` (``"float32"``/``"float64"``)."""
    mod = _module(l1, l2, l3, dtype)
    return mod.fwd, mod.bwd


def indexed_path_kernels(l1: int, l2: int, l3: int, dtype: str) -> tuple[Any, Any]:
    """``(fwd_ix, bwd_ix)``: :func:`path_kernels` reading and writing the rows that index
    arrays name."""
    mod = _module(l1, l2, l3, dtype)
    return mod.fwd_ix, mod.bwd_ix


def supports(d: Any, tuning: Tuning = DEFAULT_TUNING) -> bool:
    """Whether the kernels run the CGTP descriptor ``d``: every path channelwise (``uvu``,
    ``x2`` multiplicity 1) with at most ``tuning.kernel_max_nonzeros`` CG nonzeros (source and
    compile time grow with them; one thread, forward + backward, float32: (3, 3, 3) 42
    nonzeros 2.7 s, (4, 4, 4) 97 4.2 s, (6, 6, 6) 217 12 s; once per machine, Numba caches the
    code on disk)."""
    n = tuning.kernel_max_nonzeros
    return bool(d.paths) and all(
        p.mode == "uvu" and p.mul_in2 == 1 and len(cg_nonzeros(*p.lll)) <= n
        for p in d.paths)
