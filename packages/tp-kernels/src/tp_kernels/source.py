"""Generated sources of the compiled channelwise CPU kernels (Numba), and their loading.

A channelwise path (mode ``uvu``, ``x2`` block of multiplicity 1) maps, per sample and
channel ``u``::

    out[ro, u, k] (+)= w[r2, u] * sum_i x1[r1, u, i] * a[i, k],
    a[i, k] = coef * sum_j C[i, j, k] * x2[r2, j]

with ``C`` the Clebsch-Gordan block of ``(l1, l2, l3)``. In ``mul_ir`` layout every term is a
strided loop over ``u`` whose stride (``d1``, ``d3``) is a compile-time constant, so the
compiler vectorises it. As framework ops the same product is ~30 small ops per path group
(batched matmuls of ``(m1, d1) @ (d1, d3)``, broadcasts, copies into output blocks), each a pass
over memory with a fixed overhead; here it is one pass per path.

One source per ``(l1, l2, l3)`` and dtype is generated with the nonzero CG entries written
out (exact float64 values, rounded once to the dtype) and compiled by Numba on first use:
:func:`kernel_table` compiles the functions that a descriptor's paths need at once, in this
process and helper processes, into the on-disk cache of :mod:`tp_kernels.cache` (where
it is safe; else in memory). Without Numba they are off (:func:`available`); each backend also
has its own switch (``TP_TORCH_CPU_KERNELS=0``, ``TP_JAX_CPU_KERNELS=0``).

Kernels (``T``: float32 or float64; ``x1 (B1, dim1)``, ``x2 (B2, dim2)``, ``out``/``g``
``(Bo, dim_out)``, ``w (1 or B2, numel)`` read at row ``r2 * wstep``, all C-contiguous)::

    fwd(x1, x2, w, wstep, out, o1, o2, o3, wo, mul, coef, acc)
    bwd(x1, x2, w, wstep, g, o1, o2, o3, wo, mul, coef, gx1, gx2, gw, need1, need2, needw)
    fwd_ix(x1, x2, w, wstep, out, i1, i2, io, n0, n1, o1, o2, o3, wo, mul, coef)
    bwd_ix(x1, x2, w, wstep, g, i1, i2, io, n0, n1, o1, o2, o3, wo, mul, coef, gx1, gx2, gw,
           need1, need2, needw)
    bwd_dual(x1, x2, w, wstep, g, v1, v2, vw, o1, o2, o3, wo, mul, coef, gx1, gx2, gw, need1,
             need2, needw)
    bwd_dual_ix(x1, x2, w, wstep, g, v1, v2, vw, i1, i2, io, n0, n1, o1, o2, o3, wo, mul, coef,
                gx1, gx2, gw, need1, need2, needw)

``fwd``/``bwd``: sample ``b`` reads and writes row ``b`` of every array (``r1 = r2 = ro = b``);
``acc``: add into ``out`` (else assign). ``fwd_ix``/``bwd_ix``: item ``n`` in ``[n0, n1)``
reads rows ``r1 = i1[n]``, ``r2 = i2[n]``, ``ro = io[n]`` (int64 index arrays) and always adds
(the convolution: ``r1`` a sender, ``r2`` an edge, ``ro`` a receiver). ``o1, o2, o3, wo``: the
path's offsets in ``x1``, ``x2``, the output and ``w``; ``bwd``/``bwd_ix`` add into ``gx1``,
``gx2``, ``gw`` (the gradients asked for, at rows ``r1``, ``r2`` and ``r2 * wstep``).
``bwd_dual`` is ``bwd`` on dual numbers ``x1 + e v1``, ``x2 + e v2``, ``w + e vw`` (``v*`` laid
out as ``x*``), adding the ``e`` part of each gradient: the gradients' derivative along
``(v1, v2, vw)``, which is also the double backward's gradient (the Hessian of ``<g, out>`` is
symmetric), in one pass; ``bwd_dual_ix`` the same on the rows that index arrays name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import threading
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from tp_spec import clebsch_gordan
from tp_spec.plan import DEFAULT_TUNING, Tuning

from . import cache as _kernel_cache
from .cache import KernelModule, cache_dir, dir_lock

__all__ = ["available", "cg_nonzeros", "indexed_path_kernels", "kernel_table", "path_kernels",
           "supports"]

_FASTMATH = {"reassoc", "contract"}  # vectorised sums over channels and FMAs; no NaN/inf change
_FASTMATH_SRC = "{" + ", ".join(repr(f) for f in sorted(_FASTMATH)) + "}"
_LOCK = threading.RLock()
_DTYPES = {"float32": "f4", "float64": "f8"}
#: (l1, l2, l3, dtype) -> the module of that path (its functions compiled as they are asked for)
_MODULES: dict[tuple[int, int, int, str], KernelModule] = {}


def _new_lock() -> None:
    """In a forked child a lock held by a parent's thread would never be released."""
    global _LOCK
    _LOCK = threading.RLock()


os.register_at_fork(after_in_child=_new_lock)


@cache
def _numba_importable() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        _kernel_cache.log.info("tp_kernels: Numba is not importable (%s): the compiled CPU "
                               "kernels are off, the channelwise products run framework ops", exc)
        return False
    return True


def available(switch: str | None = None) -> bool:
    """Whether the compiled kernels can run: Numba importable (checked once) and the environment
    variable ``switch`` (a backend's, e.g. ``"TP_TORCH_CPU_KERNELS"``), if given, not 0 / false
    / no / off (read at every call)."""
    if switch and os.environ.get(switch, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return _numba_importable()


#: forgets the Numba check (the environment variable is read at every call anyway)
available.cache_clear = _numba_importable.cache_clear  # type: ignore[attr-defined]


def forget() -> dict[tuple[int, int, int, str], KernelModule]:
    """Forget the kernels loaded in this process and the warnings given (as a new process
    would start); returns what was loaded, for :func:`restore`."""
    saved = dict(_MODULES)
    _MODULES.clear()
    _kernel_cache.warned.clear()
    return saved


def restore(saved: dict[tuple[int, int, int, str], KernelModule]) -> None:
    """Load back what :func:`forget` returned (and forget what was loaded since)."""
    _MODULES.clear()
    _MODULES.update(saved)


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
        if not indexed:  # one accumulating loop (half the code to compile)
            L += ["        if not acc:", f"            for i in range(mul * {d3}):",
                  "                orow[i] = T(0.0)"]
        L += ["        if mul > 0:", "            for u in range(mul):",
              "                s = wrow[u]", *x_lines]
        L += [f"                orow[u * {d3} + {k}] += s * ({y(k)})" for k in range(d3)]
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

    def bwd_dual(indexed: bool) -> list[str]:
        """``bwd`` on dual numbers ``x + e v``: the ``e`` part of its gradients, i.e. the
        gradients' derivative along ``(v1, v2, vw)`` (the double backward's one pass)."""
        b_lines = [f"        v2_{j} = v2[r2, o2 + {j}]" for j in js]
        for i, k in ik:
            terms = " + ".join(f"{t(c)} * v2_{j}" for j, c in by_ik[(i, k)])
            b_lines.append(f"        b_{i}_{k} = coef * ({terms})")
        v_lines = [f"                y_{i} = vr[u * {d1} + {i}]" for i in range(d1)]

        def yb(k: int) -> str:  # sum_i (v1_i a_ik + x1_i b_ik)
            terms = [f"y_{i} * a_{i}_{k} + x_{i} * b_{i}_{k}" for i in range(d1)
                     if (i, k) in by_ik]
            return " + ".join(terms) if terms else "T(0.0)"

        if indexed:
            sig = ["def bwd_dual_ix(x1, x2, w, wstep, g, v1, v2, vw, i1, i2, io, n0, n1, o1, o2,",
                   "                o3, wo, mul, coef, gx1, gx2, gw, need1, need2, needw):"]
        else:
            sig = ["def bwd_dual(x1, x2, w, wstep, g, v1, v2, vw, o1, o2, o3, wo, mul, coef,",
                   "             gx1, gx2, gw, need1, need2, needw):"]
        L = ["", deco, *sig,
             *rows(indexed), *a_lines(), *b_lines,
             "        wr = r2 * wstep",
             "        wrow = w[wr, wo:wo + mul]",
             "        vwrow = vw[wr, wo:wo + mul]",
             f"        xr = x1[r1, o1:o1 + mul * {d1}]",
             f"        vr = v1[r1, o1:o1 + mul * {d1}]",
             f"        gr = g[ro, o3:o3 + mul * {d3}]",
             "        if need1:",
             f"            g1r = gx1[r1, o1:o1 + mul * {d1}]",
             "            for u in range(mul):",
             "                s = wrow[u]",
             "                sv = vwrow[u]",
             *g_lines]
        for i in range(d1):
            ta = " + ".join(f"g_{k} * a_{i}_{k}" for k in range(d3) if (i, k) in by_ik)
            tb = " + ".join(f"g_{k} * b_{i}_{k}" for k in range(d3) if (i, k) in by_ik)
            if ta:
                L.append(f"                g1r[u * {d1} + {i}] += s * ({tb}) + sv * ({ta})")
        L += ["        if needw:", "            gwr = gw[wr, wo:wo + mul]",
              "            for u in range(mul):", *x_lines, *v_lines, *g_lines]
        L.append("                gwr[u] += " + " + ".join(
            f"g_{k} * ({yb(k)})" for k in range(d3)))
        L += ["        if need2:"]
        L += [f"            ga_{i}_{k} = T(0.0)" for i, k in ik]
        L += ["            for u in range(mul):", "                s = wrow[u]",
              "                sv = vwrow[u]", *x_lines, *v_lines, *g_lines]
        L += [f"                ga_{i}_{k} += (y_{i} * s + x_{i} * sv) * g_{k}" for i, k in ik]
        for j in js:
            terms = " + ".join(f"{t(c)} * ga_{i}_{k}" for i, jj, k, c in nz if jj == j)
            L.append(f"            gx2[r2, o2 + {j}] += coef * ({terms})")
        return L

    L = [
        f"# generated by tp_kernels.source: channelwise CG path ({l1}, {l2}, {l3})",
        "import numpy as np",
        "from numba import njit",
        f"T = np.{dtype}",
        *fwd(False), *bwd(False), *fwd(True), *bwd(True), *bwd_dual(False), *bwd_dual(True),
    ]
    return "\n".join(L) + "\n"


def _name(l1: int, l2: int, l3: int, dtype: str, src: str) -> str:
    digest = hashlib.sha1(src.encode()).hexdigest()[:12]
    return f"cw_{l1}_{l2}_{l3}_{_DTYPES[dtype]}_{digest}"


def _prepare(llls: list[tuple[int, int, int]], dtype: str, kinds: tuple[str, ...]) -> None:
    """Load or compile ``kinds`` of the paths ``llls``: those cached on disk are loaded, the
    others compiled together (one log line). Under ``_LOCK``."""
    kdir, reason = cache_dir()
    if kdir is None:
        _kernel_cache.warn_once(
            f"dir:{reason}", "tp_kernels: the CPU kernel cache is not used (%s); the kernels "
            "compile in memory in every process", reason)
    with dir_lock(kdir) if kdir is not None else contextlib.nullcontext():
        mods = []
        for lll in dict.fromkeys(llls):
            m = _MODULES.get((*lll, dtype))
            if m is None:
                src = _source(*lll, dtype)
                dims = (2 * lll[0] + 1, 2 * lll[1] + 1, 2 * lll[2] + 1)
                m = KernelModule(_name(*lll, dtype, src), src, dims, dtype, kdir)
            if m.kdir is not None and not m.verify():
                m = KernelModule(m.name, m.src, m.dims, dtype, None)
            _MODULES[(*lll, dtype)] = m
            mods.append(m)
        compile_jobs = []
        for m in mods:
            for kind in kinds:
                if kind in m.ready:
                    continue
                if not m.on_disk(kind):
                    compile_jobs.append((m, kind))
                    continue
                try:
                    m.warm((kind,))
                except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError,
                        AttributeError, ImportError, IndexError, KeyError) as e:
                    _kernel_cache.warn_once(
                        f"load:{m.name}", "tp_kernels: the cached kernels of %s could not be "
                        "loaded (%s: %s); rebuilding them", m.name, type(e).__name__, e)
                    m.drop_numba_files()
                    m.mod, m.ready = None, set()
                    compile_jobs += [(m, k) for k in kinds]
        npaths = len({m.name for m, _ in compile_jobs})
        _kernel_cache.timed_compile(
            compile_jobs, f"{npaths} channelwise paths ({dtype}: {', '.join(kinds)})")


def kernel_table(llls: Sequence[tuple[int, int, int]], dtype: str,
                 kinds: tuple[str, ...] = ("fwd", "bwd")) -> list[tuple[Any, ...]]:
    """The functions ``kinds`` (of ``fwd``, ``bwd``, ``fwd_ix``, ``bwd_ix``) of every path in
    ``llls``, compiled or loaded together on first use: one tuple per entry of ``llls``."""
    if dtype not in _DTYPES:
        raise ValueError(f"the CPU kernels compute in float32 or float64, not {dtype}")
    bad = [k for k in kinds if k not in _kernel_cache.KINDS]
    if bad:
        raise ValueError(f"unknown kernel kinds {bad}; expected some of {_kernel_cache.KINDS}")
    llls = [tuple(int(v) for v in lll) for lll in llls]
    mods = [_MODULES.get((*lll, dtype)) for lll in llls]
    if not all(m is not None and m.ready.issuperset(kinds) for m in mods):
        with _LOCK:
            _prepare(llls, dtype, kinds)
        mods = [_MODULES[(*lll, dtype)] for lll in llls]
    return [tuple(getattr(m.mod, k) for k in kinds) for m in mods]


def path_kernels(l1: int, l2: int, l3: int, dtype: str) -> tuple[Any, Any]:
    """``(fwd, bwd)`` for the path ``(l1, l2, l3)`` in ``dtype`` (``"float32"``/``"float64"``)."""
    fwd, bwd = kernel_table([(l1, l2, l3)], dtype, ("fwd", "bwd"))[0]
    return fwd, bwd


def indexed_path_kernels(l1: int, l2: int, l3: int, dtype: str) -> tuple[Any, Any]:
    """``(fwd_ix, bwd_ix)``: :func:`path_kernels` reading and writing the rows that index
    arrays name."""
    fwd, bwd = kernel_table([(l1, l2, l3)], dtype, ("fwd_ix", "bwd_ix"))[0]
    return fwd, bwd


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
