"""The timed passes of the convolution suite, on a fixed graph, and their peak memory.

A conv subject's callable is ``fn(x_nodes, x_edges, weights, senders, receivers)`` (``weights``
left out when the descriptor has none). The engines here bind one graph's index arrays and pass
them as runtime (non-differentiated) arguments of every call, as training does; the float
arguments follow the runner's convention (a list of NumPy arrays, cast to the run's dtype).

Passes (names of :data:`benchmarks.timing.PASSES`):

* ``fwd``: the forward, no autograd.
* ``bwd``: forward and the gradients of ``sum(cot * out)`` w.r.t. the nodes, the edges and the
  weights.
* ``dbl``: force training. ``E = sum(out * c)``, ``F = dE/dx_edges`` (kept differentiable),
  ``loss = sum(F**2)``, and the gradients of ``loss`` w.r.t. the weights and the nodes.

Peak memory on the CPU: the growth of the process's peak resident set during one extra call,
``VmHWM`` (reset through ``/proc/self/clear_refs``) minus ``VmRSS`` before the call, after
``malloc_trim`` has returned the freed heap to the kernel (the same ``/proc`` reading as
:mod:`benchmarks.memory`; torch's CPU allocations are invisible to ``tracemalloc``). It counts
every buffer the call touches (workspace and outputs, not the inputs) and is a lower bound when
the allocator reuses pages that were already resident. On a GPU: the framework's peak counters.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .memory import _meminfo_kib
from .timing import JaxEngine, Measurement, TorchEngine, _cot_and_v

__all__ = ["ConvJaxEngine", "ConvTorchEngine", "conv_engine", "peak_rss_growth"]


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_growth(call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call`` once; ``{"peak_rss_growth_bytes", "source"}`` (module docstring), or ``{}``
    where ``/proc`` cannot reset or report the peak."""
    _trim()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current resident set
    except OSError:
        return {}
    before = _meminfo_kib("/proc/self/status", "VmRSS")
    out = call()
    peak = _meminfo_kib("/proc/self/status", "VmHWM")
    del out
    if before is None or peak is None:
        return {}
    return {"peak_rss_growth_bytes": max(0, peak - before) * 1024,
            "source": "VmHWM after /proc/self/clear_refs minus VmRSS before, one call"}


def _force_split(n_args: int) -> tuple[int, ...]:
    """Indices of the float arguments the force loss is differentiated by (nodes, weights)."""
    return tuple(i for i in range(n_args) if i != 1)


class ConvTorchEngine(TorchEngine):
    """Torch passes on one graph (module docstring)."""

    def __init__(self, device: str, senders: np.ndarray, receivers: np.ndarray) -> None:
        super().__init__(device)
        t = self.torch
        self.index = [t.as_tensor(np.asarray(a, np.int64), device=device)
                      for a in (senders, receivers)]

    def forward_numpy(self, fn: Callable[..., Any], args: list[np.ndarray], dtype: str
                      ) -> np.ndarray:
        with self.torch.no_grad():
            out = fn(*self._tensors(args, dtype, False), *self.index)
        return out.detach().cpu().double().numpy()

    def prepare(self, fn: Callable[..., Any], pass_: str, args: list[np.ndarray], dtype: str,
                seed: int = 0) -> Measurement:
        torch, idx = self.torch, self.index
        ts = self._tensors(args, dtype, pass_ != "fwd")
        if pass_ == "fwd":
            def call() -> Any:
                with torch.no_grad():
                    out = fn(*ts, *idx)
                self._sync()
                return out
        else:
            with torch.no_grad():
                out_shape = tuple(fn(*ts, *idx).shape)
            cot = self._tensors([_cot_and_v(args, out_shape, seed)[0]], dtype, False)[0]
            if pass_ == "bwd":
                def call() -> Any:
                    g = torch.autograd.grad(fn(*ts, *idx), ts, cot, allow_unused=True)
                    self._sync()
                    return g
            elif pass_ == "dbl":
                wrt = [ts[i] for i in _force_split(len(ts))]

                def call() -> Any:
                    energy = (fn(*ts, *idx) * cot).sum()
                    (forces,) = torch.autograd.grad(energy, ts[1], create_graph=True)
                    g = torch.autograd.grad((forces * forces).sum(), wrt, allow_unused=True)
                    self._sync()
                    return g
            else:
                raise ValueError(f"unknown pass {pass_!r}; expected fwd, bwd or dbl")
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        memory = {} if self.cuda else peak_rss_growth(call)
        return Measurement(call, None, first, memory)


class ConvJaxEngine(JaxEngine):
    """JAX passes on one graph (module docstring); one compiled executable per pass."""

    def __init__(self, device: str, senders: np.ndarray, receivers: np.ndarray) -> None:
        super().__init__(device)
        # int32: what JAX uses without x64 (the graphs here have far fewer than 2^31 nodes)
        self.index = tuple(self.jax.device_put(np.asarray(a, np.int32), self.dev)
                           for a in (senders, receivers))

    def forward_numpy(self, fn: Callable[..., Any], args: list[np.ndarray], dtype: str
                      ) -> np.ndarray:
        out = self.jax.jit(lambda xs, idx: fn(*xs, *idx))(tuple(self._arrays(args, dtype)),
                                                           self.index)
        return np.asarray(out, dtype=np.float64)

    def prepare(self, fn: Callable[..., Any], pass_: str, args: list[np.ndarray], dtype: str,
                seed: int = 0) -> Measurement:
        jax = self.jax
        import jax.numpy as jnp

        xs = tuple(self._arrays(args, dtype))

        def energy(xs: Any, idx: Any, cot: Any) -> Any:
            return jnp.sum(fn(*xs, *idx) * cot)

        if pass_ == "fwd":
            def f(xs: Any, idx: Any, cot: Any) -> Any:
                return fn(*xs, *idx)
            cot_np = np.zeros(())
        else:
            out_shape = jax.eval_shape(lambda a, i: fn(*a, *i), xs, self.index).shape
            cot_np = _cot_and_v(args, tuple(out_shape), seed)[0]
            if pass_ == "bwd":
                def f(xs: Any, idx: Any, cot: Any) -> Any:
                    return jax.grad(energy)(xs, idx, cot)
            elif pass_ == "dbl":
                keep = _force_split(len(xs))

                def f(xs: Any, idx: Any, cot: Any) -> Any:
                    def loss(sub: Any) -> Any:
                        full = list(xs)
                        for i, a in zip(keep, sub, strict=True):
                            full[i] = a
                        forces = jax.grad(energy)(tuple(full), idx, cot)[1]
                        return jnp.sum(forces * forces)
                    return jax.grad(loss)(tuple(xs[i] for i in keep))
            else:
                raise ValueError(f"unknown pass {pass_!r}; expected fwd, bwd or dbl")
        cot = self._arrays([cot_np], dtype)[0]
        compiled, compile_s, memory = self.compile(f, xs, self.index, cot)

        def call() -> Any:
            return jax.block_until_ready(compiled(xs, self.index, cot))

        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        if self.dev.platform == "cpu":
            memory.update(peak_rss_growth(call))
        return Measurement(call, compile_s, first, memory)


def conv_engine(framework: str, device: str, senders: np.ndarray, receivers: np.ndarray
                ) -> ConvTorchEngine | ConvJaxEngine:
    """The engine of ``framework`` bound to one graph's index arrays."""
    if framework == "torch":
        return ConvTorchEngine(device, senders, receivers)
    if framework == "jax":
        return ConvJaxEngine(device, senders, receivers)
    raise ValueError(f"the conv suite has no {framework!r} engine (torch or jax)")
