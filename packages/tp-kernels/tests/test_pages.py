""":func:`tp_kernels.pages.huge_pages`: the range it advises lies inside the array, on whole
4 KiB pages, and arrays under 4 MiB are left alone."""

from __future__ import annotations

import numpy as np
from tp_kernels import pages


def test_advises_the_whole_pages_inside_large_arrays(monkeypatch):
    calls = []
    monkeypatch.setattr(pages, "_madvise", lambda: lambda *a: calls.append(a))
    buf = np.empty((5 << 20) + 100, np.uint8)
    a = buf[100:]  # not page-aligned
    pages.huge_pages(a)
    ((start, length, advice),) = calls
    assert advice == 14  # MADV_HUGEPAGE
    assert start % 4096 == 0 and length % 4096 == 0 and length > 0
    assert a.ctypes.data <= start < a.ctypes.data + 4096
    assert start + length <= a.ctypes.data + a.nbytes
    calls.clear()
    pages.huge_pages(np.empty(1 << 20, np.uint8))
    assert calls == []
