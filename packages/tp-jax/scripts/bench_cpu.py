"""CPU microbenchmark of tp_jax methods against their anchors, side by side in one process.

Uses the benchmark harness's own workloads, subjects and JAX engine (``benchmarks/``), so the
numbers are those ``python -m benchmarks`` would see, but every subject of one workload is timed
in the same process with interleaved repeats (robust on a shared, noisy machine). XLA is pinned
to one thread unless ``--threads`` says otherwise (set before JAX is imported).

Examples (from the repository root)::

    python packages/tp-jax/scripts/bench_cpu.py --op cgtp --L 3 4 6 --subjects \
        tp_jax/fused e3nn-jax/cgtp
    python packages/tp-jax/scripts/bench_cpu.py --op cgtp --mode full --L 2 4 6 --pass fwd bwd
    python packages/tp-jax/scripts/bench_cpu.py --op gtp --L 1 2 3 10 --subjects \
        tp_jax/grid e3nn-jax/grid
    python packages/tp-jax/scripts/bench_cpu.py --op mtp --L 3 6 --subjects \
        tp_jax/dense tp_jax/sparse e3x/mtp --pass fwd bwd
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def _setup(threads: int) -> None:
    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root))
    from benchmarks.threads import pin  # XLA's dots follow the CPU affinity, not the flags

    if threads == 1:
        pin(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="cgtp", choices=("cgtp", "gtp", "mtp"))
    ap.add_argument("--kind", default="MIMO", choices=("SISO", "SIMO", "MIMO", "E3X"),
                    help="E3X: both parities up to L on the inputs and the output (MTP only; "
                         "the shape e3x FusedTensor(max_degree=L) computes; e3x/mtp is e3x "
                         "on the same descriptor through benchmarks.e3x_mtp)")
    ap.add_argument("--mode", default="uvw", choices=("uvw", "full", "uuu"),
                    help="CGTP connection mode (the paper suite's MIMO-full / MIMO-uuu)")
    ap.add_argument("--L", type=int, nargs="+", default=[3, 4, 6])
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--subjects", nargs="+", default=["tp_jax/fused", "e3nn-jax/cgtp"])
    ap.add_argument("--pass", dest="passes", nargs="+", default=["fwd"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="1 pins XLA to one thread")
    args = ap.parse_args()
    _setup(args.threads)

    import numpy as np

    from benchmarks import subjects as subj
    from benchmarks import timing
    from benchmarks.runner import _inputs, _native
    from benchmarks.workloads import paper_workloads

    eng = timing.engine("jax", "cpu")
    byname = {s.name: s for s in subj.all_subjects()}
    for L in args.L:
        if args.kind == "E3X":
            from tp_spec import Irrep

            from benchmarks.workloads import Workload

            both = "+".join(f"{Irrep(l, p)!r}" for l in range(L + 1) for p in (1, -1))
            wl = Workload("bench", "E3X", args.op, both, both, both, args.batch, L)
        else:
            wl = [w for w in paper_workloads((args.kind,), (L,), (args.op,), args.batch,
                                             cgtp_modes=(args.mode,))
                  if args.op != "cgtp" or w.mode == args.mode][0]
        base = _inputs(wl.descriptor, args.batch, False, 0)
        for pass_ in args.passes:
            calls, info = {}, {}
            for name in args.subjects:
                try:
                    built = byname[name].build(wl, "float32", "cpu")
                    fn, xs = built.fn, _native(built, base)
                    m = eng.prepare(fn, pass_, xs, "float32")
                except Exception as exc:  # noqa: BLE001 - report and go on
                    print(f"L={L} {pass_} {name}: skipped ({type(exc).__name__}: {exc})")
                    continue
                calls[name] = m.call
                info[name] = m.compile_s
            samples: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(args.repeats):
                for name, call in calls.items():
                    t0 = time.perf_counter()
                    call()
                    samples[name].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in samples.items()}
            ref = med.get(args.subjects[-1])
            for name in calls:
                ratio = f"  x{ref / med[name]:.2f} vs {args.subjects[-1]}" if ref else ""
                print(f"L={L:2d} {pass_} {name:16s} {med[name] * 1e3:9.2f} ms "
                      f"(compile {info[name]:.1f} s){ratio}", flush=True)
    del np


if __name__ == "__main__":
    main()
