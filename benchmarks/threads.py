"""CPU threads of a benchmark process: torch's, XLA's and the compiled kernels'.

``--threads N`` has to hold for every framework in the process. torch obeys
``torch.set_num_threads``; XLA does not obey a flag: jax 0.10 sizes its CPU thread pool from
the CPUs the process may run on, and its dot kernels use that pool whatever ``XLA_FLAGS`` says
(a 2048 x 2048 float32 matmul on the 2-core AMD machine: 204 GFLOP/s with
``--xla_cpu_multi_thread_eigen=false``, 102 with the process pinned to one CPU). So
:func:`pin` restricts the process to ``N`` CPUs before JAX starts, besides setting torch's
threads, ``OMP_NUM_THREADS`` and the XLA flags that tp_jax's own kernels read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["ONE_THREAD_XLA_FLAGS", "cpus_for", "pin", "pin_child"]

#: the XLA flags of one thread (tp_jax's compiled kernels read them; XLA's dots do not)
ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def cpus_for(n: int) -> list[int] | None:
    """The first ``n`` CPUs this process may run on (all of them when it may run on fewer);
    ``None`` where the OS has no CPU affinity (not Linux)."""
    if n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    if not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))[:n]


def pin(n: int | str) -> dict[str, Any]:
    """Run this process on ``n`` threads (``"default"``: leave every framework at its own
    default, every core). Call before JAX is imported. Returns what was set, for the record:
    ``threads``, ``cpu_count``, ``cpus`` (the affinity, ``None`` where unknown),
    ``torch_threads`` (when torch is installed) and ``XLA_FLAGS``."""
    info: dict[str, Any] = {"threads": n, "cpu_count": os.cpu_count()}
    if n != "default":
        cpus = cpus_for(int(n))
        if cpus is not None:
            os.sched_setaffinity(0, cpus)  # threads started from now on inherit it
        os.environ["OMP_NUM_THREADS"] = str(n)
        flags = os.environ.get("XLA_FLAGS", "")
        if n == 1 and ONE_THREAD_XLA_FLAGS not in flags:
            flags += " " + ONE_THREAD_XLA_FLAGS
        os.environ["XLA_FLAGS"] = flags.strip()
        try:
            import torch

            torch.set_num_threads(int(n))
        except ImportError:
            pass
    info["cpus"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return info


def pin_child(n: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :func:`subprocess.run` that starts the child on ``n`` CPUs
    (``None``: no restriction, and no function)."""
    if n is None:
        return None
    cpus = cpus_for(n)
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)
