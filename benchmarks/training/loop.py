"""The training benchmark's measurement: backends trained side by side, steps interleaved,
and the peak memory of each in its own process.

A backend is a callable doing one optimizer step and returning the loss. Steps alternate
between backends (the first backend alternates too) so a change of machine load hits all of
them alike; the ratio of medians is the figure to read.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from typing import Any

from benchmarks.timing import summarize

__all__ = ["adam_step", "peak_memory", "set_threads", "train_interleaved"]


def set_threads(threads: str | int) -> int:
    """``"default"`` (torch's own choice: all cores) or a count -> torch's thread count."""
    import torch

    if str(threads) != "default":
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def adam_step(model: Any, batches: list[tuple[Any, Any]],
              loss: Callable[[Any, Any, Any], Any]) -> Callable[[], float]:
    """A backend's step callable: Adam (lr 1e-3) on ``loss(model, batch, target)`` over
    ``batches``, one batch per call, cycling; returns the loss."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    position = [0]

    def step() -> float:
        batch, target = batches[position[0] % len(batches)]
        position[0] += 1
        opt.zero_grad(set_to_none=True)
        value = loss(model, batch, target)
        value.backward()
        opt.step()
        return float(value.detach())

    return step


def train_interleaved(backends: dict[str, Callable[[], float]], steps: int,
                      warmup: int = 1) -> dict[str, dict[str, Any]]:
    """``warmup`` untimed steps each (first-use compilation), then ``steps`` timed steps each,
    interleaved -> ``{name: {"loss": [...], "step_s": [...], "time": summarize(step_s)}}``
    (losses of every step, warm-up included)."""
    out: dict[str, dict[str, Any]] = {n: {"loss": [], "step_s": []} for n in backends}
    names = list(backends)
    for i in range(warmup + steps):
        for name in names if i % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            loss = backends[name]()
            dt = time.perf_counter() - t0
            out[name]["loss"].append(float(loss))
            if i >= warmup:
                out[name]["step_s"].append(dt)
    for rec in out.values():
        rec["time"] = summarize(rec["step_s"])
    return out


def _peak_rss_mib() -> float:
    """This process's peak resident memory, MiB: ``VmHWM`` of ``/proc/self/status`` (Linux;
    ``ru_maxrss`` there would carry the parent's peak into a spawned child)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: kB too


def _peak_child(build: Callable[..., Callable[[], float]], args: tuple, steps: int,
                threads: str | int, queue: Any) -> None:
    set_threads(threads)
    step = build(*args)
    before = _peak_rss_mib()
    for _ in range(steps):
        step()
    after = _peak_rss_mib()
    queue.put({"rss_peak_mib": after, "training_rise_mib": after - before})


def peak_memory(build: Callable[..., Callable[[], float]], args: tuple, steps: int = 2,
                threads: str | int = 1) -> dict[str, float]:
    """Peak resident memory of a fresh process that builds one backend (``build(*args)`` -> its
    step callable) and trains ``steps`` steps: the process's peak and its rise over the peak
    before training (the model, data and imports), in MiB (Linux ``VmHWM``)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(build, args, steps, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"the memory child exited with {proc.exitcode}")
    return result
