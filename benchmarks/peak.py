"""The machine's measured matrix-multiply peak, the yardstick for achieved GFLOP/s.

A tensor product cannot run faster than the dense GEMMs of its own framework on the same
threads, so each record keeps ``machine.matmul_peak``: per framework, the median GFLOP/s of
square ``n x n`` matrix products (``2 n^3`` flops each) in the run's dtype, measured in the
run's process (same thread setting). Reports divide a method's own FLOP model
(``cost.flops_method``) per second by it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

__all__ = ["matmul_peak", "peak_fraction"]

#: Matrix size: large enough that the GEMM is compute bound on a CPU core (2 n^3 = 17 GFLOP at
#: 2,048), small enough to take well under a second per product on 2 cores.
PEAK_N = 2048


def _time(fn: Any, repeats: int) -> list[float]:
    fn()  # warm-up (allocation, JIT)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _torch_fn(n: int, dtype: str, device: str) -> Any:
    import torch

    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    a = torch.randn(n, n, dtype=dt, device=device)
    b = torch.randn(n, n, dtype=dt, device=device)

    def fn() -> None:
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()

    return fn


def _jax_fn(n: int, dtype: str, device: str) -> Any:
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), dtype=dtype)
    b = jnp.asarray(rng.standard_normal((n, n)), dtype=dtype)
    mm = jax.jit(jnp.matmul)
    return lambda: mm(a, b).block_until_ready()


def matmul_peak(frameworks: tuple[str, ...], dtype: str = "float32", device: str = "cpu",
                n: int = PEAK_N, repeats: int = 5) -> dict[str, Any]:
    """``{framework: {"gflops_per_s": median, "q1": ..., "q3": ..., "n": n}}`` for each of
    ``frameworks`` (``torch``, ``jax``) that imports; an error string where it does not."""
    out: dict[str, Any] = {}
    for fw in frameworks:
        try:
            fn = (_torch_fn if fw == "torch" else _jax_fn)(n, dtype, device)
            samples = _time(fn, repeats)
        except Exception as exc:  # a missing framework is not an error of the run
            out[fw] = {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}
            continue
        rates = sorted(2.0 * n**3 / t / 1e9 for t in samples)
        q = statistics.quantiles(rates, n=4) if len(rates) > 1 else [rates[0]] * 3
        out[fw] = {"gflops_per_s": statistics.median(rates), "q1": q[0], "q3": q[2], "n": n,
                   "dtype": dtype}
    return out


def peak_fraction(result: dict[str, Any], record: dict[str, Any]) -> float | None:
    """Achieved GFLOP/s of ``result`` on its method's own FLOP model (times the pass factor),
    over the record's matmul peak of the result's framework; ``None`` where either is unknown."""
    peak = (record.get("machine", {}).get("matmul_peak") or {}).get(result.get("framework"), {})
    cost = result.get("cost") or {}
    flops = cost.get("flops_method")
    if not peak.get("gflops_per_s") or not flops or not result.get("stats"):
        return None
    rate = flops * cost.get("pass_factor", 1) / result["stats"]["median"] / 1e9
    return rate / peak["gflops_per_s"]
