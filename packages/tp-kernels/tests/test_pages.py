""":func:`tp_kernels.pages.huge_pages`: the range it advises lies inside the array, on whole
4 KiB pages, arrays under 4 MiB are left alone, and so are arrays that the free 2 MiB blocks do
not cover (a fault would compact memory first)."""

from __future__ import annotations

import numpy as np
from tp_kernels import pages


def test_advises_the_whole_pages_inside_large_arrays(monkeypatch):
    calls = []
    monkeypatch.setattr(pages, "_madvise", lambda: lambda *a: calls.append(a))
    monkeypatch.setattr(pages, "_free_huge_blocks", lambda: 1000)
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


BUDDYINFO = """\
Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
Node 0, zone    DMA32      2      4      2      2      1      2      0      3      3      1    753
Node 0, zone   Normal  15558   9313   5476   3017   1756   1175   1340   1008    916    468   1326
"""


def test_free_huge_blocks_counts_orders_nine_and_up():
    # order 9: one 2 MiB block each; order 10: two each
    assert pages.free_huge_blocks(BUDDYINFO) == (1 + 1 + 468) + 2 * (3 + 753 + 1326)
    assert pages.free_huge_blocks("Node 0, zone Normal 5 4 3 2 1 0 0 0 9 0 0\n") == 0


def test_no_advice_when_free_blocks_do_not_cover_the_array(monkeypatch):
    calls = []
    monkeypatch.setattr(pages, "_madvise", lambda: lambda *a: calls.append(a))
    a = np.empty(8 << 20, np.uint8)  # 4 blocks of 2 MiB
    monkeypatch.setattr(pages, "_free_huge_blocks", lambda: 3)
    pages.huge_pages(a)
    assert calls == []
    monkeypatch.setattr(pages, "_free_huge_blocks", lambda: 4)
    pages.huge_pages(a)
    assert len(calls) == 1
    monkeypatch.setattr(pages, "_free_huge_blocks", lambda: None)  # no /proc: advise as before
    pages.huge_pages(a)
    assert len(calls) == 2
