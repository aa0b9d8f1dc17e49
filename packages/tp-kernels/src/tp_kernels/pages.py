"""Transparent huge pages under large fresh result buffers (Linux).

Buffers above glibc's mmap threshold (at most 32 MiB) are fresh mappings on every allocation,
in XLA's and torch's CPU allocators alike, and faulting them in 4 KiB pages can cost more than
the kernel that writes them (MACE-large output, batch 2,000, 73 MB: ~40 ms in 4 KiB pages,
~16 ms in 2 MiB pages; the full CGTP's output at L = 6, batch 10,000, 96 MB: 51 ms against
18 ms). NumPy asks for huge pages under its own arrays from 4 MiB; :func:`huge_pages` does the
same for a buffer someone else allocated, before the kernel writes it.

Where the kernel's THP ``defrag`` setting is ``madvise`` (a common default), a fault in an
advised range that finds no free 2 MiB block compacts memory first (direct compaction), which
can stall longer than 4 KiB faults take. So the advice is given only while the buddy
allocator's free blocks of at least 2 MiB (``/proc/buddyinfo``, read per call: ~20 us) cover
the buffer.

On a VM whose guest reports free memory to the host (free page reporting, as the benchmark
machine's Firecracker guest), the first faults on a reported block are the host's to back
again, and huge-page faults draw on exactly those blocks: there a fresh 52 MB output took
~60 ms for its first three or four calls and 13 ms after (23 ms in 4 KiB pages).
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import numpy as np

__all__ = ["free_huge_blocks", "huge_pages"]

_HUGE_MIN = 4 << 20  # as NumPy: arrays from 4 MiB on ask for transparent huge pages
_MADV_HUGEPAGE = 14
_HUGE_ORDER = 9  # a 2 MiB block is 2^9 pages of 4 KiB
_BUDDYINFO = "/proc/buddyinfo"


def free_huge_blocks(buddyinfo: str) -> int:
    """The free 2 MiB blocks in ``/proc/buddyinfo`` text: per zone, the free blocks of each
    order ``k >= 9`` count ``2^(k - 9)`` times."""
    total = 0
    for line in buddyinfo.splitlines():
        counts = line.split()[4:]  # "Node 0, zone Normal c0 c1 ... c10"
        total += sum(int(c) << (k - _HUGE_ORDER) for k, c in enumerate(counts)
                     if k >= _HUGE_ORDER)
    return total


def _free_huge_blocks() -> int | None:
    try:
        with open(_BUDDYINFO) as f:
            return free_huge_blocks(f.read())
    except (OSError, ValueError):
        return None


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
    where ``a`` has at least 4 MiB and free 2 MiB blocks cover it (no fault then waits for
    compaction); a hint, without effect where the kernel has no THP or the memory is already
    faulted in."""
    madvise = _madvise()
    if madvise is None or a.nbytes < _HUGE_MIN:
        return
    free = _free_huge_blocks()
    if free is not None and free << 21 < a.nbytes:
        return
    start = a.ctypes.data
    first = -(-start // 4096) * 4096
    madvise(first, (start + a.nbytes - first) // 4096 * 4096, _MADV_HUGEPAGE)
