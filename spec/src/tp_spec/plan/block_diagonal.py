"""A sparse matrix as dense blocks between permutations (:class:`BlockDiagonal`).

The MTP's change-of-basis matrices are ~10% nonzero at L = 6 (an ``n x n`` basis matrix
``B^(l)_m`` couples few entries), but a dense GEMM pays for every zero. Their nonzeros fall
into a few connected components: sets of rows and columns that no nonzero links to another
set. Ordering rows and columns by component makes the matrix block diagonal, so

    y = x @ M  ==  y[:, cols] = concat_k( x[:, rows_k] @ M[rows_k][:, cols_k] )

is one column gather of ``x``, one dense GEMM per block and one column gather of the result
(columns with no nonzero read a zero). With ``M``'s transpose the roles of rows and columns
swap (``x @ M^T``: the same blocks, transposed). The MTP's matrices (``sparse``, one channel)
are four equal blocks at every L = 2..10: a quarter of the dense multiply-adds (the read-out at
L = 6: 338 x 312, 8.8 % nonzero, four blocks of ~85 x 78).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .tuning import Tuning

__all__ = ["BlockDiagonal", "block_diagonal", "matmul_numpy", "worth_blocks"]


@dataclass(frozen=True, eq=False)
class BlockDiagonal:
    """``M (R, C)`` as blocks: ``M[rows[s_k:s_k+1]][:, cols[t_k:t_k+1]] = blocks[k]`` with
    ``s = row_splits``, ``t = col_splits``; every other entry is zero. ``rows`` and ``cols``
    list the rows and columns holding a nonzero, in component order."""

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    row_splits: tuple[int, ...]
    col_splits: tuple[int, ...]
    blocks: tuple[np.ndarray, ...]

    @property
    def col_inverse(self) -> np.ndarray:
        """``(C,)``: for each column of ``M``, its position in ``cols``, or ``len(cols)`` (a
        zero column appended to the blocks' result) where the column has no nonzero."""
        inv = np.full(self.shape[1], len(self.cols), dtype=np.int64)
        inv[self.cols] = np.arange(len(self.cols))
        return inv

    @property
    def row_inverse(self) -> np.ndarray:
        """``(R,)``: as :attr:`col_inverse`, for ``x @ M^T`` (rows of ``M`` are its columns)."""
        inv = np.full(self.shape[0], len(self.rows), dtype=np.int64)
        inv[self.rows] = np.arange(len(self.rows))
        return inv

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds per row of ``x`` (the dense product: ``R * C``)."""
        return sum(b.size for b in self.blocks)

    def transpose(self) -> BlockDiagonal:
        """The same blocks for ``M^T``."""
        return BlockDiagonal((self.shape[1], self.shape[0]), self.cols, self.rows,
                             self.col_splits, self.row_splits,
                             tuple(np.ascontiguousarray(b.T) for b in self.blocks))


def block_diagonal(m: np.ndarray) -> BlockDiagonal:
    """The connected components of ``m``'s nonzero pattern (rows and columns as the two sides
    of a bipartite graph), ordered by their first row; within a component rows and columns keep
    their order."""
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(f"expected a matrix, got shape {m.shape}")
    r, c = m.shape
    parent = np.arange(r + c)  # union-find over rows 0..r-1 and columns r..r+c-1

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    nz_r, nz_c = np.nonzero(m)
    for i, j in zip(nz_r.tolist(), nz_c.tolist(), strict=True):
        a, b = find(i), find(r + j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    roots = np.array([find(a) for a in range(r + c)])
    live_r = np.zeros(r, bool)
    live_r[nz_r] = True
    live_c = np.zeros(c, bool)
    live_c[nz_c] = True
    order = [int(x) for x in dict.fromkeys(roots[:r][live_r].tolist())]  # by first row
    rows, cols, rs, cs, blocks = [], [], [0], [0], []
    for root in order:
        ri = np.nonzero(live_r & (roots[:r] == root))[0]
        ci = np.nonzero(live_c & (roots[r:] == root))[0]
        rows.append(ri)
        cols.append(ci)
        rs.append(rs[-1] + len(ri))
        cs.append(cs[-1] + len(ci))
        blocks.append(np.ascontiguousarray(m[np.ix_(ri, ci)]))
    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    return BlockDiagonal((r, c), cat(rows), cat(cols), tuple(rs), tuple(cs), tuple(blocks))


def worth_blocks(m: np.ndarray, tuning: Tuning) -> BlockDiagonal | None:
    """``m`` as blocks when running them pays (``Tuning.mtp_block_min_size`` entries or more,
    at least two blocks holding at most ``Tuning.mtp_block_max_fill`` of the dense
    multiply-adds), else ``None``: the dense matrix."""
    if m.size < tuning.mtp_block_min_size:
        return None
    bd = block_diagonal(m)
    if len(bd.blocks) < 2 or bd.multiply_adds > tuning.mtp_block_max_fill * m.size:
        return None
    return bd


def matmul_numpy(bd: BlockDiagonal, x: np.ndarray) -> np.ndarray:
    """``x (B, R) @ M -> (B, C)`` through the blocks (the executors' recipe, for tests)."""
    xg = x[:, bd.rows]
    parts = [xg[:, bd.row_splits[k]:bd.row_splits[k + 1]] @ b for k, b in enumerate(bd.blocks)]
    y = np.concatenate(parts + [np.zeros((x.shape[0], 1), np.result_type(x, *bd.blocks)
                                          if bd.blocks else x.dtype)], axis=1)
    return y[:, bd.col_inverse]
