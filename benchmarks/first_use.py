"""First use of tp_torch's compiled CPU kernels: the first forward + backward of a MACE-shaped
channelwise product in a fresh process, from an empty kernel cache and from a filled one.

    python -m benchmarks.first_use [--repeats 3] [--batch 1000] [--workers N] [--problem P]

Each run is a new process (``TP_TORCH_CACHE_DIR`` a new empty directory for the cold runs, the
last cold run's directory for the warm ones) timing its first ``out = tp(x1, x2, w)`` and
``out.square().sum().backward()`` (per-sample weights), then the median of 5 more
(``steady_ms``). ``cpu_s``: CPU seconds of the process and its kernel-compiling helper
processes during the first call (on a loaded machine the wall time grows, the CPU time much
less). Prints JSON: per dtype, ``cold`` and ``warm`` median / min / max.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .conv import CONV_PROBLEMS

_CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
import torch, tp_torch
from benchmarks.workloads import build_descriptor
t_import = time.perf_counter() - t0
in1, in2, out_filter, dtype, batch = json.loads(sys.argv[1])
d = build_descriptor("cgtp", in1, in2, out_filter, mode="uvu")
tp = tp_torch.TensorProduct(d, "fused")
dt = getattr(torch, dtype)
g = torch.Generator().manual_seed(0)
x1 = torch.randn(batch, d.irreps_in1.dim, dtype=dt, generator=g, requires_grad=True)
x2 = torch.randn(batch, d.irreps_in2.dim, dtype=dt, generator=g, requires_grad=True)
w = torch.randn(batch, d.weight_numel, dtype=dt, generator=g, requires_grad=True)

def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

c0, t0 = cpu(), time.perf_counter()
tp(x1, x2, w).square().sum().backward()
first, first_cpu = time.perf_counter() - t0, cpu() - c0
steady = []
for _ in range(5):
    t0 = time.perf_counter()
    tp(x1, x2, w).square().sum().backward()
    steady.append(time.perf_counter() - t0)
steady.sort()
print(json.dumps({"import_s": t_import, "first_s": first, "cpu_s": first_cpu,
                  "steady_ms": steady[2] * 1e3, "paths": len(d.paths)}))
"""


def _run(args: list, cache: Path, workers: str | None) -> dict:
    env = {**os.environ, "TP_TORCH_CACHE_DIR": str(cache)}
    if workers is not None:
        env["TP_TORCH_COMPILE_WORKERS"] = workers
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env, cwd=root,
                       capture_output=True, text=True, check=False)
    if r.returncode:
        raise RuntimeError(f"first-use child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    out = {}
    for k in ("first_s", "cpu_s", "steady_ms", "import_s"):
        v = [r[k] for r in runs]
        out[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.first_use``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.first_use",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="processes per dtype and cache state")
    p.add_argument("--batch", type=int, default=1000, help="rows of x1, x2 and w")
    p.add_argument("--workers", default=None,
                   help="TP_TORCH_COMPILE_WORKERS for the children (default: unset)")
    p.add_argument("--problem", default="mace-medium",
                   choices=[n for n, fam, *_ in CONV_PROBLEMS if fam == "cgtp"],
                   help="the channelwise shape (benchmarks.conv.CONV_PROBLEMS)")
    p.add_argument("--dtype", action="append", choices=("float32", "float64"),
                   help="dtypes (repeatable; default both)")
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    _, _, in1, in2, filt = next(x for x in CONV_PROBLEMS if x[0] == a.problem)
    result: dict = {"problem": a.problem, "irreps": [in1, in2, filt], "batch": a.batch,
                    "cpus": len(os.sched_getaffinity(0)), "workers": a.workers,
                    "load_avg_1min": os.getloadavg()[0]}
    for dtype in a.dtype or ("float32", "float64"):
        args = [in1, in2, filt, dtype, a.batch]
        with tempfile.TemporaryDirectory(prefix="tp_torch_first_use_") as tmp:
            cold = [_run(args, Path(tmp) / f"cold{i}", a.workers) for i in range(a.repeats)]
            warm = [_run(args, Path(tmp) / f"cold{a.repeats - 1}", a.workers)
                    for _ in range(a.repeats)]
        result[dtype] = {"cold": _summary(cold), "warm": _summary(warm),
                         "paths": cold[0]["paths"]}
    result["load_avg_1min_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
