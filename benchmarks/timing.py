"""Timing: warm-up, repeated synchronised calls, robust statistics, compile time, peak memory.

Every timed call ends with a synchronisation (``jax.block_until_ready``,
``torch.cuda.synchronize`` on GPU), so a sample is the wall time of work actually done. JAX
functions are jitted and compiled ahead of time (``jit(f).lower(...).compile()``): the compile
time is reported separately and never enters the samples. Torch runs eagerly; its first call
(lazy initialisation, caching) is reported as ``first_call_s`` and excluded from the samples.

Passes: ``fwd`` (output), ``bwd`` (gradients of ``sum(cot * out)`` w.r.t. ``x1, x2`` and the
weights), ``dbl`` (gradient of ``sum_i <grad_i, v_i>`` w.r.t. the same inputs: a double
backward, as needed for forces-in-the-loss training).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Engine", "Measurement", "engine", "measure", "summarize"]

PASSES = ("fwd", "bwd", "dbl")


def summarize(samples: list[float]) -> dict[str, float]:
    """Median, quartiles, IQR, min, max, mean of per-call times (seconds)."""
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {"median": statistics.median(xs), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "min": xs[0], "max": xs[-1], "mean": statistics.fmean(xs), "n": len(xs)}


def measure(call: Callable[[], Any], *, warmup: int = 1, warmup_s: float = 0.0,
            min_repeats: int = 5, max_repeats: int = 50, target_s: float = 0.4,
            min_sample_s: float = 2e-3, slow_call_s: float = 1.0
            ) -> tuple[list[float], dict[str, Any]]:
    """Time ``call`` (which must synchronise before returning).

    Untimed calls until at least ``warmup`` of them have run and ``warmup_s`` has passed (the
    first calls of a new shape may pay one-off costs beyond compilation: on a VM whose freed
    memory goes back to the host, a fresh 50 MB output took 60 ms for its first three to four
    calls and 13 ms after), then samples of ``k`` back-to-back calls each (``k`` chosen so a
    sample lasts at least ``min_sample_s``; the sample is the mean per call) until ``target_s``
    is spent, with at least ``min_repeats`` and at most ``max_repeats`` samples. A call slower
    than ``slow_call_s`` gets a single warm-up and 2 samples. Returns ``(samples_s, info)``.
    """
    est = math.inf
    start, calls = time.perf_counter(), 0
    while True:
        t0 = time.perf_counter()
        call()
        calls += 1
        est = min(est, time.perf_counter() - t0)
        if est > slow_call_s:
            break
        if calls >= max(1, warmup) and time.perf_counter() - start >= warmup_s:
            break
    if est > slow_call_s:
        min_repeats = max_repeats = 2
    k = max(1, int(math.ceil(min_sample_s / max(est, 1e-9))))
    k = min(k, 1000)
    repeats = int(target_s / max(est * k, 1e-9))
    repeats = max(min_repeats, min(max_repeats, repeats))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(k):
            call()
        samples.append((time.perf_counter() - t0) / k)
    return samples, {"calls_per_sample": k, "warmup": calls, "estimate_s": est}


@dataclass
class Measurement:
    """What :meth:`Engine.prepare` returns: a synchronised call and its one-off costs."""

    call: Callable[[], Any]
    compile_s: float | None = None
    first_call_s: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Framework glue: NumPy <-> native arrays, the three passes, synchronisation, memory."""

    framework = "?"

    def __init__(self, device: str) -> None:
        self.device = device

    def forward_numpy(self, fn: Callable[..., Any], args: list[np.ndarray], dtype: str
                      ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, fn: Callable[..., Any], pass_: str, args: list[np.ndarray], dtype: str,
                seed: int = 0) -> Measurement:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_numpy(self, out: Any) -> np.ndarray:
        """A forward call's output as float64 NumPy."""
        if hasattr(out, "detach"):
            out = out.detach().cpu().double()
        return np.asarray(out, dtype=np.float64)

    def reset_memory(self) -> None:
        pass

    def peak_memory(self) -> dict[str, Any]:
        return {}


def _cot_and_v(args: list[np.ndarray], out_shape: tuple[int, ...], seed: int
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed + 1)
    cot = rng.standard_normal(out_shape)
    vs = [rng.standard_normal(a.shape) for a in args]
    return cot, vs


class NumpyEngine(Engine):
    framework = "numpy"

    def forward_numpy(self, fn: Callable[..., Any], args: list[np.ndarray], dtype: str
                      ) -> np.ndarray:
        return np.asarray(fn(*[np.asarray(a, np.float64) for a in args]))

    def prepare(self, fn: Callable[..., Any], pass_: str, args: list[np.ndarray], dtype: str,
                seed: int = 0) -> Measurement:
        if pass_ != "fwd":
            raise NotImplementedError("the NumPy reference has no gradients")
        a64 = [np.asarray(a, np.float64) for a in args]
        t0 = time.perf_counter()
        fn(*a64)
        first = time.perf_counter() - t0
        return Measurement(lambda: fn(*a64), None, first)


class TorchEngine(Engine):
    framework = "torch"

    def __init__(self, device: str) -> None:
        super().__init__(device)
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")

    def _sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def _tensors(self, args: list[np.ndarray], dtype: str, grad: bool) -> list[Any]:
        tdt = {"float32": self.torch.float32, "float64": self.torch.float64}[dtype]
        return [self.torch.as_tensor(np.asarray(a), dtype=tdt, device=self.device)
                .requires_grad_(grad) for a in args]

    def forward_numpy(self, fn: Callable[..., Any], args: list[np.ndarray], dtype: str
                      ) -> np.ndarray:
        with self.torch.no_grad():
            out = fn(*self._tensors(args, dtype, False))
        return out.detach().cpu().double().numpy()

    def prepare(self, fn: Callable[..., Any], pass_: str, args: list[np.ndarray], dtype: str,
                seed: int = 0) -> Measurement:
        torch = self.torch
        if pass_ == "fwd":
            ts = self._tensors(args, dtype, False)

            def call() -> Any:
                with torch.no_grad():
                    out = fn(*ts)
                self._sync()
                return out
        else:
            ts = self._tensors(args, dtype, True)
            with torch.no_grad():
                out_shape = tuple(fn(*ts).shape)
            cot_np, vs_np = _cot_and_v(args, out_shape, seed)
            cot = self._tensors([cot_np], dtype, False)[0]
            vs = self._tensors(vs_np, dtype, False)

            if pass_ == "bwd":
                def call() -> Any:
                    out = fn(*ts)
                    g = torch.autograd.grad(out, ts, cot, allow_unused=True)
                    self._sync()
                    return g
            elif pass_ == "dbl":
                def call() -> Any:
                    out = fn(*ts)
                    gs = torch.autograd.grad(out, ts, cot, create_graph=True, allow_unused=True)
                    s = sum((g * v).sum() for g, v in zip(gs, vs, strict=False) if g is not None)
                    gg = torch.autograd.grad(s, ts, allow_unused=True)
                    self._sync()
                    return gg
            else:
                raise ValueError(f"unknown pass {pass_!r}; expected one of {PASSES}")
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        return Measurement(call, None, first)

    def reset_memory(self) -> None:
        """CUDA: wait for this device's queued work, then restart its peak counter."""
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> dict[str, Any]:
        """CUDA: the most bytes torch's allocator held on this device since
        :meth:`reset_memory` (tensors only, not the allocator's cached blocks)."""
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            return {"peak_bytes": int(self.torch.cuda.max_memory_allocated(self.device)),
                    "source": "torch.cuda.max_memory_allocated"}
        return {}


class JaxEngine(Engine):
    framework = "jax"

    def __init__(self, device: str) -> None:
        super().__init__(device)
        import jax

        self.jax = jax
        platform = "gpu" if device.startswith("cuda") or device == "gpu" else "cpu"
        self.dev = jax.devices(platform)[0]
        self._peak_before: int | None = None

    def _arrays(self, args: list[np.ndarray], dtype: str) -> list[Any]:
        if dtype == "float64" and not self.jax.config.jax_enable_x64:
            raise RuntimeError("float64 with JAX needs JAX_ENABLE_X64=1")
        return [self.jax.device_put(np.asarray(a, dtype=dtype), self.dev) for a in args]

    def forward_numpy(self, fn: Callable[..., Any], args: list[np.ndarray], dtype: str
                      ) -> np.ndarray:
        out = self.jax.jit(fn)(*self._arrays(args, dtype))
        return np.asarray(out, dtype=np.float64)

    def prepare(self, fn: Callable[..., Any], pass_: str, args: list[np.ndarray], dtype: str,
                seed: int = 0) -> Measurement:
        jax = self.jax
        import jax.numpy as jnp

        xs = tuple(self._arrays(args, dtype))
        if pass_ == "fwd":
            def f(xs: Any, cot: Any, vs: Any) -> Any:
                return fn(*xs)
            cot_np, vs_np = np.zeros(()), []
        else:
            out_shape = jax.eval_shape(lambda *a: fn(*a), *xs).shape
            cot_np, vs_np = _cot_and_v(args, tuple(out_shape), seed)

            def grads(xs: Any, cot: Any) -> Any:
                return jax.grad(lambda a: jnp.sum(fn(*a) * cot))(xs)

            if pass_ == "bwd":
                def f(xs: Any, cot: Any, vs: Any) -> Any:
                    return grads(xs, cot)
            elif pass_ == "dbl":
                def f(xs: Any, cot: Any, vs: Any) -> Any:
                    def inner(a: Any) -> Any:
                        return sum(jnp.sum(g * v) for g, v in zip(grads(a, cot), vs, strict=False))
                    return jax.grad(inner)(xs)
            else:
                raise ValueError(f"unknown pass {pass_!r}; expected one of {PASSES}")
        cot = self._arrays([cot_np], dtype)[0]
        vs = tuple(self._arrays(vs_np, dtype))
        compiled, compile_s, memory = self.compile(f, xs, cot, vs)

        def call() -> Any:
            return jax.block_until_ready(compiled(xs, cot, vs))

        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        return Measurement(call, compile_s, first, memory)

    def compile(self, f: Callable[..., Any], *args: Any) -> tuple[Any, float, dict[str, Any]]:
        """``jit(f)`` compiled ahead of time for ``args``: the executable, the compile time
        (seconds) and XLA's memory analysis (``{}`` where the backend reports none)."""
        t0 = time.perf_counter()
        compiled = self.jax.jit(f).lower(*args).compile()
        compile_s = time.perf_counter() - t0
        memory: dict[str, Any] = {}
        try:
            ma = compiled.memory_analysis()
            if ma is not None:
                memory = {"xla_temp_bytes": int(ma.temp_size_in_bytes),
                          "xla_argument_bytes": int(ma.argument_size_in_bytes),
                          "xla_output_bytes": int(ma.output_size_in_bytes)}
        except Exception:  # noqa: S110 - not every backend reports it
            pass
        return compiled, compile_s, memory

    def _process_peak(self) -> int | None:
        """XLA's ``peak_bytes_in_use`` of the device (process-wide, never reset; None where
        the backend keeps no statistics, e.g. the CPU)."""
        try:
            stats = self.dev.memory_stats()
        except Exception:
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            return int(stats["peak_bytes_in_use"])
        return None

    def reset_memory(self) -> None:
        """JAX cannot reset its peak: remember it, so :meth:`peak_memory` can tell whether the
        pass measured next raised it."""
        self._peak_before = self._process_peak()

    def peak_memory(self) -> dict[str, Any]:
        """``peak_bytes``: the process-wide peak if this pass raised it (then it is this pass's
        peak), else ``None`` (the pass stayed below an earlier pass's peak)."""
        peak = self._process_peak()
        if peak is None:
            return {}
        before = self._peak_before
        raised = before is None or peak > before
        return {"peak_bytes": peak if raised else None, "process_peak_bytes": peak,
                "source": "jax device.memory_stats()['peak_bytes_in_use'] (process-wide; "
                          "None where this pass stayed below an earlier peak)"}


_ENGINES: dict[tuple[str, str], Engine] = {}


def engine(framework: str, device: str) -> Engine:
    """The (cached) engine of ``framework`` on ``device``."""
    key = (framework, device)
    if key not in _ENGINES:
        cls = {"numpy": NumpyEngine, "torch": TorchEngine, "jax": JaxEngine}[framework]
        _ENGINES[key] = cls(device)
    return _ENGINES[key]
