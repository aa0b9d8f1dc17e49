"""Quick CPU self-checks of tp_torch against e3nn (an oracle, needed only here).

    python bench_cpu.py mimo 2 3 4 5 6     # CGTP fused vs e3nn FullyConnectedTensorProduct
    python bench_cpu.py mace               # channelwise 128x(0e+1o+2e) x (0e+1o+2e+3o) uvu
    python bench_cpu.py gtp 1 2 3 10       # grid/fourier GTP vs e3nn ToS2Grid/FromS2Grid
    python bench_cpu.py mtp 2 4 6 8 10     # MTP dense vs sparse (the harness's MIMO descriptor)
    python bench_cpu.py models mace-large nequip-lips   # OEQ catalogue shapes, fused vs e3nn

float32, batch 10,000 (``--batch``), ``torch.set_num_threads(2)`` and wall-clock time, or
``--cpu-time``: one thread and process CPU time (use it on a loaded machine). The two
implementations are interleaved and the median of several runs is reported.
"""

# ruff: noqa: B023  (the lambdas are timed inside the loop iteration that defines them)
from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import numpy as np
import torch
import tp_spec as spec
import tp_torch
from tp_spec import reference

warnings.filterwarnings("ignore")
torch.set_num_threads(2)


CLOCK = time.perf_counter


def med(fns, n=5):
    """Median time (ms) of each function (wall clock, or process CPU time with --cpu-time),
    runs interleaved."""
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(n):
        for i, f in enumerate(fns):
            t = CLOCK()
            f()
            times[i].append(CLOCK() - t)
    return [statistics.median(t) * 1e3 for t in times]


def s2(L):  # noqa: N803
    return "+".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in range(L + 1))


def _fwd(fn):
    def f():
        with torch.no_grad():
            fn()
    return f


def _fb(fn):
    return lambda: fn().pow(2).sum().backward()


def mimo(Ls, batch, method="fused"):  # noqa: N803
    from e3nn import o3

    for L in Ls:  # noqa: N806
        e = o3.FullyConnectedTensorProduct(s2(L), s2(L), s2(2 * L))
        d = spec.cgtp(s2(L), s2(L), s2(2 * L), mode="uvw")
        tp = tp_torch.TensorProduct(d, method)
        w = torch.randn(d.weight_numel, requires_grad=True)
        x1 = torch.randn(batch, d.irreps_in1.dim, requires_grad=True)
        x2 = torch.randn(batch, d.irreps_in2.dim, requires_grad=True)
        a, b = med([_fwd(lambda: e(x1, x2)), _fwd(lambda: tp(x1, x2, w))])
        c, dd = med([_fb(lambda: e(x1, x2)), _fb(lambda: tp(x1, x2, w))], n=3)
        print(f"MIMO L={L}: fwd e3nn {a:8.1f} ms {method} {b:8.1f} ms (x{a / b:5.1f}) | "
              f"fwd+bwd e3nn {c:8.1f} ms {method} {dd:8.1f} ms (x{c / dd:5.1f})", flush=True)


def mace(batch):
    from e3nn import o3

    i1, i2 = "128x0e+128x1o+128x2e", "0e+1o+2e+3o"
    d = spec.cgtp(i1, i2, mode="uvu")
    ins = [(p.i_in1, p.i_in2, p.i_out, "uvu", True) for p in d.paths]
    for shared in (False, True):
        e = o3.TensorProduct(i1, i2, str(d.irreps_out), ins, shared_weights=shared,
                             internal_weights=shared)
        tp = tp_torch.TensorProduct(d, "fused")
        x1 = torch.randn(batch, d.irreps_in1.dim, requires_grad=True)
        x2 = torch.randn(batch, d.irreps_in2.dim, requires_grad=True)
        w = torch.randn(*(() if shared else (batch,)), d.weight_numel, requires_grad=True)
        eargs = (x1, x2) if shared else (x1, x2, w)
        a, b = med([_fwd(lambda: e(*eargs)), _fwd(lambda: tp(x1, x2, w))], n=3)
        c, dd = med([_fb(lambda: e(*eargs)), _fb(lambda: tp(x1, x2, w))], n=3)
        print(f"MACE shared_weights={shared}: fwd e3nn {a:8.1f} ms fused {b:8.1f} ms "
              f"(x{a / b:5.1f}) | fwd+bwd e3nn {c:8.1f} ms fused {dd:8.1f} ms (x{c / dd:5.1f})",
              flush=True)


def gtp(Ls, batch):  # noqa: N803
    from e3nn import o3

    for L in Ls:  # noqa: N806
        d = spec.gtp(s2(L), s2(L))
        lo = d.irreps_out.lmax
        rb, ra = 2 * (2 * L + 1), 4 * L + 1  # exact for the product (checked below)
        torch.set_default_dtype(torch.float64)
        to64 = o3.ToS2Grid(L, (rb, ra), normalization="integral")
        fr64 = o3.FromS2Grid((rb, ra), lo, normalization="integral")
        torch.set_default_dtype(torch.float32)
        to = o3.ToS2Grid(L, (rb, ra), normalization="integral")
        fr = o3.FromS2Grid((rb, ra), lo, normalization="integral")
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(3, d.irreps_in1.dim)), rng.normal(size=(3, d.irreps_in2.dim))
        # e3nn's integral-normalized grid product is ours divided by sqrt(4 pi)
        z = fr64(to64(torch.tensor(a)) * to64(torch.tensor(b))).numpy() * math.sqrt(4 * math.pi)
        ref = reference.apply(d, a, b)
        err = np.abs(z - ref).max() / np.abs(ref).max()
        grid, four = tp_torch.TensorProduct(d, "grid"), tp_torch.TensorProduct(d, "fourier")
        x1 = torch.randn(batch, d.irreps_in1.dim, requires_grad=True)
        x2 = torch.randn(batch, d.irreps_in2.dim, requires_grad=True)
        fns = [_fwd(lambda: fr(to(x1) * to(x2))), _fwd(lambda: grid(x1, x2))]
        if L <= 6:
            fns.append(_fwd(lambda: four(x1, x2)))
        r = med(fns)
        rb_ = med([_fb(lambda: fr(to(x1) * to(x2))), _fb(lambda: grid(x1, x2))], n=3)
        extra = f" fourier {r[2]:7.1f} ms" if len(r) > 2 else ""
        print(f"GTP L={L} (e3nn {rb}x{ra}, rel.err {err:.0e}): fwd e3nn {r[0]:7.1f} ms grid "
              f"{r[1]:7.1f} ms (x{r[0] / r[1]:4.1f}){extra} | fwd+bwd e3nn {rb_[0]:7.1f} ms "
              f"grid {rb_[1]:7.1f} ms (x{rb_[0] / rb_[1]:4.1f})", flush=True)


def _harness_workloads():
    """``benchmarks.workloads`` from the repository root (two levels above this package)."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
    import benchmarks.workloads as wl

    return wl


def models(names, batch):
    """Fused CGTP vs e3nn ``o3.TensorProduct`` (same instructions, shared weights) on the
    OpenEquivariance catalogue shapes, as the benchmark harness builds them."""
    from e3nn import o3

    wl = _harness_workloads()
    for w_ in wl.model_workloads(batch, ("cgtp",), tuple(names) or None):
        d = w_.descriptor
        ins = [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, p.path_weight) for p in d.paths]
        e = o3.TensorProduct(str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out), ins,
                             irrep_normalization=d.irrep_normalization,
                             path_normalization=d.path_normalization,
                             internal_weights=False, shared_weights=not w_.per_sample_weights)
        tp = tp_torch.TensorProduct(d, "fused")
        x1 = torch.randn(batch, d.irreps_in1.dim, requires_grad=True)
        x2 = torch.randn(batch, d.irreps_in2.dim, requires_grad=True)
        wshape = ((batch,) if w_.per_sample_weights else ()) + (d.weight_numel,)
        w = torch.randn(*wshape, requires_grad=True)
        a, b = med([_fwd(lambda: e(x1, x2, w)), _fwd(lambda: tp(x1, x2, w))])
        c, dd = med([_fb(lambda: e(x1, x2, w)), _fb(lambda: tp(x1, x2, w))])
        print(f"{w_.name} (B={batch}): fwd e3nn {a:8.1f} ms fused {b:8.1f} ms (x{a / b:5.2f}) | "
              f"fwd+bwd e3nn {c:8.1f} ms fused {dd:8.1f} ms (x{c / dd:5.2f})", flush=True)


def mtp(Ls, batch):  # noqa: N803
    wl = _harness_workloads()
    for L in Ls:  # noqa: N806
        d = wl.paper_workloads(("MIMO",), (L,), ("mtp",))[0].descriptor
        dense, sparse = tp_torch.TensorProduct(d, "dense"), tp_torch.TensorProduct(d, "sparse")
        x1 = torch.randn(batch, d.irreps_in1.dim, requires_grad=True)
        x2 = torch.randn(batch, d.irreps_in2.dim, requires_grad=True)
        a, b = med([_fwd(lambda: dense(x1, x2)), _fwd(lambda: sparse(x1, x2))])
        c, e = med([_fb(lambda: dense(x1, x2)), _fb(lambda: sparse(x1, x2))])
        print(f"MTP L={L} (lt={d.lt}): fwd dense {a:7.1f} ms sparse {b:7.1f} ms (x{a / b:4.2f}) "
              f"| fwd+bwd dense {c:7.1f} ms sparse {e:7.1f} ms (x{c / e:4.2f})", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=["mimo", "mace", "gtp", "mtp", "models"])
    p.add_argument("L", nargs="*", help="degrees (mimo/gtp/mtp) or catalogue names (models)")
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--method", default="fused")
    p.add_argument("--cpu-time", action="store_true",
                   help="one thread, process CPU time (robust on a shared, loaded machine)")
    a = p.parse_args()
    if a.cpu_time:
        global CLOCK
        CLOCK = time.process_time
        torch.set_num_threads(1)
    if a.workload == "models":
        models(a.L, a.batch)
        return
    a.L = [int(x) for x in a.L]
    if a.workload == "mimo":
        mimo(a.L or [2, 3, 4, 5, 6], a.batch, a.method)
    elif a.workload == "mace":
        mace(a.batch)
    elif a.workload == "gtp":
        gtp(a.L or [1, 2, 3, 10], a.batch)
    else:
        mtp(a.L or [2, 4, 6, 8, 10], a.batch)


if __name__ == "__main__":
    main()
