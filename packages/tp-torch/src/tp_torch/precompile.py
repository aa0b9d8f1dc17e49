"""Fill the compiled CPU kernels' cache ahead of time (:func:`precompile`), e.g. in a Docker
build, so that the first forward and backward of a model load the kernels instead of
compiling them.

Command line (``python -m tp_torch precompile --help``)::

    python -m tp_torch precompile --mace-medium
    python -m tp_torch precompile --irreps 32x0e+32x1o 0e+1o+2e 0e+1o --dtype float32 --conv

The kernels depend on the paths ``(l1, l2, l3)`` and the dtype only, not on the
multiplicities: ``--mace-medium`` and ``--mace-large`` compile the same kernels.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import tp_spec
from tp_kernels import cache as _kernel_cache
from tp_kernels import source as _kernel_source

from . import _cpu_kernels

__all__ = ["main", "precompile"]

#: MACE's interaction convolution: node irreps x spherical harmonics (l <= 3) -> outputs l <= 3
PRESETS = {
    "mace-medium": ("64x0e+64x1o+64x2e", "0e+1o+2e+3o", "0e+1o+2e+3o"),
    "mace-large": ("128x0e+128x1o+128x2e", "0e+1o+2e+3o", "0e+1o+2e+3o"),
}

_BATCH = ("fwd", "bwd")
_INDEXED = ("fwd_ix", "bwd_ix")


def _paths_of(item: Any, conv: bool) -> list[tuple[tuple[tuple[int, int, int], ...], tuple]]:
    """``[(paths, kinds)]`` of one descriptor or module (empty where the kernels do not run
    it)."""
    if isinstance(item, torch.nn.Module):
        from ._conv import TensorProductConv
        from ._module import TensorProduct

        out = []
        inner = {id(m.tp) for m in item.modules() if isinstance(m, TensorProductConv)}
        for m in item.modules():
            if isinstance(m, TensorProductConv) and m.conv_kernels is not None:
                out.append((tuple(p[0] for p in m.conv_kernels.cw.paths[False]), _INDEXED))
            elif isinstance(m, TensorProduct) and id(m) not in inner:
                cw = getattr(m.kernel, "cpu_kernels", None)
                if cw is not None:
                    out.append((tuple(p[0] for p in cw.paths[False]), _BATCH))
        return out
    if not hasattr(item, "paths") or not hasattr(item, "irreps_in1"):
        raise TypeError(f"precompile takes tp_spec descriptors or torch modules, not "
                        f"{type(item).__name__}")
    if getattr(item, "kind", "cgtp") != "cgtp" or not _kernel_source.supports(item):
        return []
    llls = tuple(p.lll for p in item.paths)
    return [(llls, _BATCH + (_INDEXED if conv else ()))]


def precompile(descriptors_or_modules: Any | Iterable[Any],
               dtypes: Sequence[str] = ("float32", "float64"),
               conv: bool = False) -> dict[str, Any]:
    """Compile (or check in the cache) the CPU kernels of descriptors or modules.

    ``descriptors_or_modules``: one or an iterable of tp_spec descriptors (their batch kernels;
    also the convolution's indexed kernels with ``conv``) and torch modules (the kernels their
    :class:`~tp_torch.TensorProduct` / :class:`~tp_torch.TensorProductConv` submodules run).
    Descriptors the kernels do not run (not channelwise) are skipped. Returns ``{"kernels":
    functions ready, "skipped": items without kernels, "cache_dir": the cache directory or
    None (unusable: compiled in memory, this process only), "seconds": wall time}``."""
    if not _cpu_kernels.available():
        raise RuntimeError("the compiled CPU kernels are off (Numba missing or "
                           "TP_TORCH_CPU_KERNELS=0): nothing to precompile")
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad or not dtypes:
        raise ValueError(f"dtypes must be some of ('float32', 'float64'), not {tuple(dtypes)}")
    if isinstance(descriptors_or_modules, torch.nn.Module) or hasattr(descriptors_or_modules,
                                                                      "paths"):
        items = [descriptors_or_modules]
    else:
        items = list(descriptors_or_modules)
    t0 = time.perf_counter()
    jobs: dict[tuple[str, ...], dict[tuple[int, int, int], None]] = {}
    skipped = 0
    for item in items:
        found = _paths_of(item, conv)
        skipped += not found
        for llls, kinds in found:
            jobs.setdefault(kinds, {}).update(dict.fromkeys(llls))
    n = 0
    for dtype in dtypes:
        for kinds, llls in jobs.items():
            n += len(kinds) * len(_kernel_source.kernel_table(list(llls), dtype, kinds))
    kdir, _ = _kernel_cache.cache_dir()
    return {"kernels": n, "skipped": skipped, "cache_dir": None if kdir is None else str(kdir),
            "seconds": time.perf_counter() - t0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tp_torch precompile",
        description="Compile tp_torch's CPU kernels into the on-disk cache "
                    "($TP_KERNELS_CACHE_DIR, else ~/.cache/tp_kernels) ahead of time. Run it as "
                    "the user that will run the model: a cache owned by another user is not "
                    "loaded.")
    for name, (a, b, c) in PRESETS.items():
        p.add_argument(f"--{name}", action="store_true",
                       help=f"the kernels of {name.upper()}'s convolution ({a} x {b} -> "
                            f"outputs in {c}, channelwise)")
    p.add_argument("--irreps", nargs=3, action="append", default=[],
                   metavar=("IN1", "IN2", "OUT"),
                   help="a channelwise (uvu) CGTP: input irreps, second input irreps, the "
                        "output irreps to keep (repeatable)")
    p.add_argument("--dtype", action="append", choices=("float32", "float64"),
                   help="a dtype to compile (repeatable; default: both)")
    p.add_argument("--conv", action="store_true",
                   help="also the indexed kernels of TensorProductConv")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="the cache directory (sets TP_KERNELS_CACHE_DIR for this run)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build the descriptors asked for and :func:`precompile` them."""
    import logging
    import os

    parser = _parser()
    args = parser.parse_args(argv)
    descs = [tp_spec.cgtp(*PRESETS[name], mode="uvu") for name in PRESETS
             if getattr(args, name.replace("-", "_"))]
    for in1, in2, out in args.irreps:
        try:
            descs.append(tp_spec.cgtp(in1, in2, out, mode="uvu"))
        except Exception as e:  # noqa: BLE001 - reported as a usage error
            parser.error(f"--irreps {in1} {in2} {out}: {e}")
    if not descs:
        parser.error("nothing to compile: give --mace-medium, --mace-large or --irreps")
    if args.cache_dir:
        os.environ["TP_KERNELS_CACHE_DIR"] = args.cache_dir
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    res = precompile(descs, tuple(args.dtype or ("float32", "float64")), conv=args.conv)
    where = res["cache_dir"] or "nowhere (the cache directory is unusable; see the warning)"
    print(f"{res['kernels']} kernels ready in {res['seconds']:.1f} s, cached in {where}")
    if res["skipped"]:
        print(f"{res['skipped']} descriptor(s) skipped: not run by the compiled kernels")
    return 0 if res["cache_dir"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
