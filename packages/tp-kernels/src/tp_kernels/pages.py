"""Transparent huge pages under large fresh result buffers (Linux).

Buffers above glibc's mmap threshold (at most 32 MiB) are fresh mappings on every allocation,
in XLA's and torch's CPU allocators alike, and faulting them in 4 KiB pages can cost more than
the kernel that writes them (MACE-large output, batch 2,000, 73 MB: ~40 ms in 4 KiB pages,
~16 ms in 2 MiB pages; the full CGTP's output at L = 6, batch 10,000, 96 MB: 51 ms against
18 ms). NumPy asks for huge pages under its own arrays from 4 MiB; :func:`huge_pages` does the
same for a buffer someone else allocated, before the kernel writes it.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import numpy as np

__all__ = ["huge_pages"]

_HUGE_MIN = 4 << 20  # as NumPy: arrays from 4 MiB on ask for transparent huge pages
_MADV_HUGEPAGE = 14


@cache
def _madvise() -> Any:
    try:
        f = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # not Linux
        return None
    f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return f


def huge_pages(a: np.ndarray) -> None:
    """Ask for transparent huge pages under ``a``'s whole pages (``madvise(MADV_HUGEPAGE)``)
    where ``a`` has at least 4 MiB; a hint, without effect where the kernel has no THP or
    the memory is already faulted in."""
    madvise = _madvise()
    if madvise is None or a.nbytes < _HUGE_MIN:
        return
    start = a.ctypes.data
    first = -(-start // 4096) * 4096
    madvise(first, (start + a.nbytes - first) // 4096 * 4096, _MADV_HUGEPAGE)
