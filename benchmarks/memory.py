"""A memory cap for CPU runs: an allocation that does not fit raises instead of the kernel's
out-of-memory killer ending the whole run.

A paper-suite run was killed at L=8 by one subject's double backward (24 GB resident on a
24 GB machine), losing every measurement before it. With the process's address space capped
(``RLIMIT_AS``) at what it uses now plus a fraction of the memory the kernel reports available,
NumPy raises ``MemoryError``, torch ``RuntimeError`` ("can't allocate memory") and XLA's
buffer allocation ``RESOURCE_EXHAUSTED``: the runner records that task as an error and goes on.
Not covered: XLA's JIT (LLVM) aborts the process when it cannot map code memory or start a
thread under the cap (seen compiling right after a refused 20+ GB torch double backward), so
subjects that need more memory than the machine has should still be left out of a run.

Not for GPU runs: the CUDA driver reserves address ranges far larger than physical memory, so
a cap on the address space would refuse CUDA's own initialisation.
"""

from __future__ import annotations

import resource

__all__ = ["address_space_in_use", "available_memory", "cap_address_space"]

#: Fraction of the available memory the run may add to its address space.
DEFAULT_FRACTION = 0.85


def _meminfo_kib(path: str, key: str) -> int | None:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory() -> int | None:
    """Bytes the kernel reports available (``MemAvailable``), or ``None`` off Linux."""
    kib = _meminfo_kib("/proc/meminfo", "MemAvailable")
    return None if kib is None else kib * 1024


def address_space_in_use() -> int | None:
    """This process's virtual size in bytes (``VmSize``), or ``None`` off Linux."""
    kib = _meminfo_kib("/proc/self/status", "VmSize")
    return None if kib is None else kib * 1024


#: The soft limit the process started with (the cap never goes above it).
_START_SOFT: int | None = None


def cap_address_space(extra_bytes: int | None = None,
                      fraction: float = DEFAULT_FRACTION) -> int | None:
    """Cap the address space at what is in use plus ``extra_bytes`` (default: ``fraction`` of
    the available memory). Returns the cap in bytes, or ``None`` where it cannot be set (no
    ``/proc``); never above the limit the process started with.

    Call it again before each task (the runner's ``before_task``): after a refused allocation
    the freed memory may stay mapped (glibc keeps heap pages), so a cap fixed at the start
    would leave no room for the next task, not even for a compiler thread's stack (LLVM then
    aborts the process); re-armed, the cap is again "in use now + a fraction of what the kernel
    reports available"."""
    global _START_SOFT
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    used = address_space_in_use()
    if extra_bytes is None:
        avail = available_memory()
        if avail is None:
            return None
        extra_bytes = int(avail * fraction)
    if used is None or extra_bytes <= 0:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if _START_SOFT is None:
        _START_SOFT = soft
    cap = used + int(extra_bytes)
    if _START_SOFT != resource.RLIM_INFINITY:
        cap = min(cap, _START_SOFT)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap
