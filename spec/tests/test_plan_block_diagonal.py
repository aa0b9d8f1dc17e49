"""``tp_spec.plan.block_diagonal``: a matrix's connected components as dense blocks."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import plan
from tp_spec.plan.block_diagonal import block_diagonal, matmul_numpy


def _hidden_blocks(rng, sizes, shape):
    """A matrix with dense blocks of ``sizes`` scattered by random row and column
    permutations, and one zero row and one zero column left over."""
    m = np.zeros(shape)
    rows, cols = rng.permutation(shape[0]), rng.permutation(shape[1])
    r = c = 0
    for a, b in sizes:
        m[np.ix_(rows[r:r + a], cols[c:c + b])] = rng.normal(size=(a, b))
        r, c = r + a, c + b
    return m


def test_finds_the_hidden_blocks_and_multiplies_like_the_dense_matrix():
    rng = np.random.default_rng(0)
    sizes = [(3, 2), (4, 5), (1, 1), (2, 3)]
    m = _hidden_blocks(rng, sizes, (11, 12))  # one zero row, one zero column
    bd = block_diagonal(m)
    assert sorted(b.shape for b in bd.blocks) == sorted(sizes)
    assert bd.multiply_adds == sum(a * b for a, b in sizes)
    assert len(bd.rows) == 10 and len(bd.cols) == 11
    x = rng.normal(size=(7, 11))
    np.testing.assert_allclose(matmul_numpy(bd, x), x @ m, rtol=1e-13, atol=1e-13)
    y = rng.normal(size=(7, 12))
    np.testing.assert_allclose(matmul_numpy(bd.transpose(), y), y @ m.T, rtol=1e-13,
                               atol=1e-13)
    zero_col = np.nonzero(~m.any(axis=0))[0]
    assert (bd.col_inverse[zero_col] == len(bd.cols)).all()
    zero_row = np.nonzero(~m.any(axis=1))[0]
    assert (bd.row_inverse[zero_row] == len(bd.rows)).all()


def test_a_connected_matrix_is_one_block_and_zeros_none():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(4, 3))
    bd = block_diagonal(m)
    assert len(bd.blocks) == 1
    np.testing.assert_array_equal(bd.blocks[0], m)
    z = block_diagonal(np.zeros((3, 2)))
    assert z.blocks == () and z.multiply_adds == 0
    np.testing.assert_array_equal(matmul_numpy(z, np.ones((2, 3))), np.zeros((2, 2)))


def test_a_chain_of_overlaps_joins_into_one_component():
    """Rows linked only through a column of another block are one component."""
    m = np.zeros((3, 3))
    m[0, 0] = m[1, 0] = m[1, 1] = m[2, 1] = m[2, 2] = 1.0
    assert len(block_diagonal(m).blocks) == 1


def test_refuses_a_non_matrix():
    with pytest.raises(ValueError, match="matrix"):
        block_diagonal(np.zeros(3))


@pytest.mark.parametrize("lmax", [2, 4, 6])
def test_mtp_read_out_is_four_blocks_of_a_quarter(lmax):
    """The fact the torch MTP relies on: the ``sparse`` read-out matrix is four blocks holding a
    quarter of the dense multiply-adds."""
    irreps = "+".join(f"{l}{'eo'[l % 2]}" for l in range(lmax + 1))
    p = plan.plan(spec.mtp(irreps, irreps), "sparse")
    read = p.read_tr if p.transpose else p.read_pq
    read = read.transpose(1, 0, 2).reshape(-1, read.shape[-1])
    bd = block_diagonal(read)
    assert len(bd.blocks) == 4
    assert bd.multiply_adds == pytest.approx(read.size / 4, rel=0.02)


def test_worth_blocks_follows_the_tuning():
    """Blocks when the matrix is large enough and its blocks hold at most the fill; else the
    dense matrix (``None``)."""
    from tp_spec.plan import Tuning
    from tp_spec.plan.block_diagonal import worth_blocks

    rng = np.random.default_rng(4)
    m = _hidden_blocks(rng, [(4, 4)] * 4, (16, 16))  # four blocks: a quarter of the entries
    assert len(worth_blocks(m, Tuning(mtp_block_min_size=1)).blocks) == 4
    assert worth_blocks(m, Tuning(mtp_block_min_size=257)) is None  # 256 entries: too small
    assert worth_blocks(m, Tuning(mtp_block_min_size=1, mtp_block_max_fill=0.2)) is None
    assert worth_blocks(rng.normal(size=(16, 16)), Tuning(mtp_block_min_size=1)) is None
