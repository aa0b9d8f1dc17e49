"""Run workloads x subjects x passes: check each subject against the reference, then time it.

A subject is timed only after its forward output on a small random batch matches
:func:`tp_spec.reference.apply` (relative to the largest reference entry: ``2e-4`` in float32,
``1e-9`` in float64). A subject failing the check is reported as ``failed check`` and never timed.

A workload that brings its own ``inputs(seed)``, ``check(args, out, tol)``, ``cost(method)``
and ``engine(framework, device)`` (the convolutions of :mod:`benchmarks.conv`) is run through
those instead of the tensor-product defaults.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .subjects import Built, NotApplicable, Subject, Unavailable
from .timing import PASSES, engine, measure, summarize

__all__ = ["CHECK_TOL", "check_subject", "machine_info", "run", "versions"]

CHECK_TOL = {"float32": 2e-4, "float64": 1e-9}
CHECK_BATCH = 6
SCHEMA_VERSION = 1
#: reason prefix of a pass skipped by ``max_call_s`` (the report groups these)
SLOW_CALL = "slow call"

#: FLOP multiplier of each pass relative to one forward (a convention, stated in every record):
#: a backward computes one forward-sized contraction per differentiated input, a double backward
#: twice the backward.
def pass_factor(pass_: str, has_weights: bool) -> int:
    bwd = 2 + int(has_weights)
    return {"fwd": 1, "bwd": bwd, "dbl": 2 * bwd}[pass_]


#: Which tp_spec cost-model method best describes an anchor's algorithm.
ANCHOR_COST_METHOD = {"e3nn/cgtp": "dense", "e3nn-jax/cgtp": "dense", "cueq-torch/cgtp": "dense",
                      "cueq-jax/cgtp": "dense", "oeq/cgtp": "sparse", "e3nn/grid": "grid",
                      "e3nn-jax/grid": "grid", "e3x/mtp": "dense", "e3nn/conv": "dense",
                      "e3nn-jax/conv": "dense", "cueq-torch/conv": "dense"}


def _inputs(d: Any, batch: int, per_sample: bool, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((batch, d.irreps_in1.dim))
    x2 = rng.standard_normal((batch, d.irreps_in2.dim))
    args = [x1, x2]
    if d.weight_numel:
        shape = (batch, d.weight_numel) if per_sample else (d.weight_numel,)
        args.append(rng.standard_normal(shape))
    return args


def _native_args(built: Built, args: list[np.ndarray]) -> list[np.ndarray]:
    if not built.takes_weights:
        return args[:2]
    if len(args) < 3:
        raise NotApplicable("the subject needs weights but the descriptor has none")
    conv = getattr(built, "convert_weights", None)
    return args[:2] + [conv(args[2]) if conv else args[2]]


def _native(built: Built, args: list[np.ndarray]) -> list[np.ndarray]:
    """The arguments of ``built.fn``: weights converted, then the subject's own layout."""
    args = _native_args(built, args)
    return built.to_native(args) if built.to_native is not None else args


def _spec_output(built: Built, out: np.ndarray) -> np.ndarray:
    """``built.fn``'s output in the tp_spec layout ``(B, irreps_out.dim)``."""
    return built.from_native(out) if built.from_native is not None else out


def check_subject(built: Built, wl: Any, dtype: str, device: str, seed: int = 1,
                  args: list[np.ndarray] | None = None, out: np.ndarray | None = None
                  ) -> dict[str, Any]:
    """Compare ``built``'s forward with the NumPy reference on a small batch.

    Either computes the forward on ``CHECK_BATCH`` random samples, or (``args``, ``out``
    given: the inputs and output of the forward that will be timed) compares the first
    ``CHECK_BATCH`` rows of ``out``. Returns ``{"ok", "rel_err", "tol", "batch"}`` with
    ``rel_err = max|out - ref| / max|ref|``.
    """
    from tp_spec import reference

    if hasattr(wl, "check"):  # a convolution: rows of the full graph's output
        tol = CHECK_TOL["float64" if built.framework == "numpy" else dtype]
        if args is None or out is None:
            args = wl.inputs(seed)
            out = _spec_output(built, wl.engine(built.framework, device).forward_numpy(
                built.fn, _native(built, args), dtype))
        return wl.check(args, out, tol)
    d = wl.descriptor
    if args is None or out is None:
        args = _inputs(d, CHECK_BATCH, wl.per_sample_weights, seed)
        out = _spec_output(built, engine(built.framework, device).forward_numpy(
            built.fn, _native(built, args), dtype))
    else:
        n = CHECK_BATCH
        out = np.asarray(out)[:n]
        w = args[2] if len(args) > 2 else None
        if w is not None and wl.per_sample_weights:
            w = w[:n]
        args = [args[0][:n], args[1][:n]] + ([w] if w is not None else [])
    ref = reference.apply(d, *args[:2], args[2] if len(args) > 2 else None)
    tol = CHECK_TOL["float64" if built.framework == "numpy" else dtype]
    if out.shape != ref.shape:
        return {"ok": False, "rel_err": None, "tol": tol, "batch": CHECK_BATCH,
                "error": f"output shape {out.shape} != reference {ref.shape}"}
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    rel = float(np.max(np.abs(out - ref))) / scale
    return {"ok": bool(np.isfinite(rel) and rel <= tol), "rel_err": rel, "tol": tol,
            "batch": CHECK_BATCH}


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _cost(wl: Any, subject: Subject, pass_: str, cache: dict[Any, Any]) -> dict[str, Any]:
    d = wl.descriptor
    if hasattr(wl, "cost"):  # a convolution: its own cost models
        method = subject.method if subject.library in ("tp_torch", "tp_jax") else \
            ANCHOR_COST_METHOD.get(subject.name)
        key = (wl.key(), method)
        if key not in cache:
            cache[key] = wl.cost(method)
        return {**cache[key], "cost_method": method,
                "pass_factor": pass_factor(pass_, d.weight_numel > 0)}
    if wl.key() not in cache:
        cache[wl.key()] = {
            "flops_min": _safe(lambda: int(d.flops(wl.batch))),
            "bytes_min": _safe(lambda: int(d.bytes(wl.batch, 4))),
            "expressivity": _safe(lambda: int(__import__("tp_spec").expressivity(d))),
        }
    method = subject.method if subject.library in ("tp_torch", "tp_jax") else \
        ANCHOR_COST_METHOD.get(subject.name)
    c = dict(cache[wl.key()])
    c["cost_method"] = method
    c["flops_method"] = (_safe(lambda: __import__("tp_spec.plan").plan.flops(d, wl.batch, method))
                         if method else None)
    c["pass_factor"] = pass_factor(pass_, d.weight_numel > 0)
    return c


def versions() -> dict[str, str]:
    """Versions of Python, NumPy and every optional library that is installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("numpy", "tp-spec", "tp-kernels", "tp-torch", "tp-jax", "torch", "jax",
                 "jaxlib", "e3nn", "e3nn-jax", "cuequivariance", "cuequivariance-torch",
                 "cuequivariance-jax", "openequivariance", "e3x", "matplotlib", "tqdm"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def machine_info(name: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Hostname, CPU model, core count, OS, and the GPU when one is used."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = None
    if device != "cpu":
        try:
            import torch

            gpu = torch.cuda.get_device_name(0)
        except Exception:
            gpu = _safe(lambda: str(__import__("jax").devices("gpu")[0].device_kind))
    return {
        "name": name or f"{'gpu' if gpu else 'cpu'}-{os.cpu_count()}core",
        "hostname": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(),
        "os": platform.platform(), "gpu": gpu,
        "load_average": _safe(lambda: [round(x, 2) for x in os.getloadavg()]),
    }


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.total, self.n, self.enabled = total, 0, enabled
        self.last = time.perf_counter()
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="task", dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                pass

    def update(self, text: str) -> None:
        self.n += 1
        now = time.perf_counter()
        text = f"{text} ({now - self.last:.1f} s)"
        self.last = now
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text[:60])
            self.bar.update(1)
        else:
            print(f"[{self.n}/{self.total}] {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(workloads: Iterable[Any], subjects: list[Subject], *, passes: tuple[str, ...] = ("fwd",),
        dtype: str = "float32", device: str = "cpu", budget_s: float | None = None,
        pass_filter: Callable[[Any, str], bool] | None = None, timing: dict[str, Any] | None = None,
        progress: bool = True, machine: str | None = None, config: dict[str, Any] | None = None,
        seed: int = 0,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
        before_task: Callable[[], Any] | None = None,
        max_call_s: float | None = None, measure_peak: bool = False) -> dict[str, Any]:
    """Run everything and return the JSON record (see :mod:`benchmarks.report` for the schema).

    ``budget_s``: wall-clock budget; tasks left when it runs out are recorded as
    ``skipped: time budget``. ``pass_filter(wl, pass)`` may drop (workload, pass) pairs.
    ``checkpoint(record)``, if given, receives the record of the tasks done so far after each
    task (so that a crash, e.g. the kernel's out-of-memory killer, does not lose the run).
    ``before_task()``, if given, runs before each task is built (the CLI re-arms its memory cap).
    ``max_call_s``: a pass whose first call takes longer is not timed further (``skipped``, its
    first call and compile times kept), nor are the subject's later passes on the workload
    (backward and double backward cost more than the forward). A call in progress cannot be
    interrupted: the limit bounds a slow cell to one call instead of four.
    ``measure_peak``: measure the matmul peak of the subjects' frameworks first
    (``machine.matmul_peak``, :mod:`benchmarks.peak`).
    """
    for p in passes:
        if p not in PASSES:
            raise ValueError(f"unknown pass {p!r}; expected some of {PASSES}")
    workloads = list(workloads)
    machine_start = machine_info(machine, device)  # load average before the run
    if measure_peak:
        from .peak import matmul_peak

        fws = tuple(sorted({s.framework for s in subjects} & {"torch", "jax"}))
        machine_start["matmul_peak"] = matmul_peak(fws, dtype, device)
    timing = timing or {}
    start = time.perf_counter()
    tasks = [(wl, s) for wl in workloads for s in subjects if wl.op in s.ops]
    bar = _Progress(len(tasks), progress)
    results: list[dict[str, Any]] = []

    def record() -> dict[str, Any]:
        return _record(machine_start, device, config, passes, dtype, budget_s, timing, seed,
                       start, results)

    avail: dict[str, str | None] = {}
    cost_cache: dict[Any, Any] = {}
    for wl, subject in tasks:
        my_passes = [p for p in passes if pass_filter is None or pass_filter(wl, p)]
        label = f"{wl.name} {wl.op} L={wl.L} b={wl.batch} {subject.name}"
        wl_error = None
        try:
            wl_dict = wl.as_dict()
        except Exception as exc:
            wl_dict = {"suite": wl.suite, "name": wl.name, "op": wl.op, "L": wl.L,
                       "batch": wl.batch, "channels": wl.channels, "mode": wl.mode}
            wl_error = f"descriptor: {type(exc).__name__}: {exc}"
        base = {"subject": subject.name, "library": subject.library,
                "framework": subject.framework, "method": subject.method,
                "anchor": subject.anchor, "dtype": dtype, "device": device,
                "workload": wl_dict}

        def emit(status: str, reason: str = "", pass_list: list[str] | None = None,
                 my_passes: list[str] = my_passes, base: dict[str, Any] = base,
                 **extra: Any) -> None:
            for p in pass_list if pass_list is not None else my_passes:
                results.append({**base, "pass": p, "status": status, "reason": reason,
                                **extra})

        if wl_error:
            emit("not applicable", wl_error)
            bar.update(label)
            continue
        if not my_passes:
            bar.update(label)
            continue
        if subject.name not in avail:
            avail[subject.name] = subject.available()
        if avail[subject.name] is not None:
            emit("unavailable", avail[subject.name])
            bar.update(label)
            continue
        try:
            reason = subject.applicable(wl, device)
        except Exception as exc:
            reason = f"applicability test failed: {type(exc).__name__}: {exc}"
        if reason:
            emit("not applicable", reason)
            bar.update(label)
            continue
        if budget_s is not None and time.perf_counter() - start > budget_s:
            emit("skipped", "time budget")
            bar.update(label)
            continue
        if before_task is not None:
            before_task()
        eng = (wl.engine(subject.framework, device) if hasattr(wl, "engine")
               else engine(subject.framework, device))
        prepared: dict[str, Any] = {}
        try:
            built = subject.build(wl, dtype, device)
            raw = (wl.inputs(seed) if hasattr(wl, "inputs")
                   else _inputs(wl.descriptor, wl.batch, wl.per_sample_weights, seed))
            args = _native(built, raw)
            if "fwd" in my_passes and "fwd" in built.passes and not getattr(
                    built, "convert_weights", None):
                # check the very forward that will be timed (one compile, not two); its peak
                # memory counts from here
                eng.reset_memory()
                m = eng.prepare(built.fn, "fwd", args, dtype, seed)
                prepared["fwd"] = m
                check = check_subject(built, wl, dtype, device, args=raw,
                                      out=_spec_output(built, eng.to_numpy(m.call())))
            else:
                check = check_subject(built, wl, dtype, device, seed + 1)
        except (Unavailable, NotApplicable) as exc:
            emit("not applicable" if isinstance(exc, NotApplicable) else "unavailable", str(exc))
            bar.update(label)
            continue
        except Exception as exc:
            emit("error", f"build/check: {type(exc).__name__}: {str(exc)[:300]}")
            bar.update(label)
            continue
        if not check["ok"]:
            emit("failed check", f"rel_err={check['rel_err']} > tol={check['tol']}"
                 if check.get("rel_err") is not None else check.get("error", ""), check=check)
            bar.update(label)
            continue
        too_slow = ""
        for p in my_passes:
            if p not in built.passes:
                emit("not applicable", f"{subject.name} has no {p} pass", [p])
                continue
            if too_slow:
                emit("skipped", too_slow, [p], check=check)
                continue
            if budget_s is not None and time.perf_counter() - start > budget_s:
                emit("skipped", "time budget", [p])
                continue
            try:
                m = prepared.pop(p, None)
                if m is None:
                    eng.reset_memory()
                    m = eng.prepare(built.fn, p, args, dtype, seed)
                if max_call_s is not None and (m.first_call_s or 0.0) > max_call_s:
                    too_slow = (f"{SLOW_CALL}: first {p} call {m.first_call_s:.1f} s > "
                                f"max call {max_call_s:g} s")
                    emit("skipped", too_slow, [p], check=check, compile_s=m.compile_s,
                         first_call_s=m.first_call_s, setup_s=built.setup_s)
                    continue
                samples, info = measure(m.call, **timing)
                memory = {**m.memory, **eng.peak_memory()}
            except Exception as exc:
                emit("error", f"{p}: {type(exc).__name__}: {str(exc)[:300]}", [p], check=check)
                continue
            stats = summarize(samples)
            cost = _cost(wl, subject, p, cost_cache)
            fl = cost["flops_min"] * cost["pass_factor"] if cost["flops_min"] else None
            expr = cost["expressivity"]
            results.append({
                **base, "pass": p, "status": "ok", "reason": "",
                "check": check, "samples_s": samples, "stats": stats,
                "timing_info": info, "setup_s": built.setup_s, "compile_s": m.compile_s,
                "first_call_s": m.first_call_s, "memory": memory, "cost": cost,
                "gflops": fl / 1e9 if fl else None,
                "gflops_per_s": fl / stats["median"] / 1e9 if fl else None,
                "time_per_expressivity_s": stats["median"] / expr if expr else None,
                "expressivity_throughput": expr * wl.batch / stats["median"] if expr else None,
                "note": built.note, "cpus": (config or {}).get("cpus"),
            })
        bar.update(label)
        # release big arrays before the next subject
        del args, built, prepared, raw
        if checkpoint is not None:
            checkpoint(record())
    bar.close()
    return record()


def _record(machine_start: dict[str, Any], device: str, config: dict[str, Any] | None,
            passes: tuple[str, ...], dtype: str, budget_s: float | None, timing: dict[str, Any],
            seed: int, start: float, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "tp-bench", "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_start, "versions": versions(), "device": device,
        "config": {**(config or {}), "passes": list(passes), "dtype": dtype, "device": device,
                   "budget_s": budget_s, "check_tol": CHECK_TOL, "check_batch": CHECK_BATCH,
                   "timing": timing, "seed": seed,
                   "flop_convention": (
                       "flops = tp_spec minimal count d.flops(batch) (nonzero coupling "
                       "coefficients only, a multiply-add = 2) x pass_factor (fwd 1, bwd 2 + "
                       "[weights], dbl 2 x bwd); cost.flops_method is the method's own model")},
        "wall_s": time.perf_counter() - start,
        "load_average_end": _safe(lambda: [round(x, 2) for x in os.getloadavg()]),
        "results": results,
    }
