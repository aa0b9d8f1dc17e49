"""The tp_spec FLOP/byte models against hand counts (from the documented conventions: a
multiply-add = 2 FLOPs; per path 2 * nnz(C) * channel products, plus 2 * dim_l3 per weight)."""

from __future__ import annotations

import pytest

spec = pytest.importorskip("tp_spec")
pytest.importorskip("tp_spec.cost")


def test_scalar_product_by_hand() -> None:
    # 0e x 0e -> 0e, one weight: C = [[[1]]] (1 MAC) + weight (1 MAC) = 4 FLOPs per sample.
    d = spec.cgtp("0e", "0e", "0e", mode="uvw")
    assert d.flops(1) == 4
    assert d.flops(10) == 40
    # bytes: x1, x2, out (1 float each) + 1 weight, float32
    assert d.bytes(1, 4) == 16


def test_dot_product_by_hand() -> None:
    # 1o x 1o -> 0e: C(1,1,0) = delta/sqrt3 has 3 nonzeros -> 3 MACs; weight 1 MAC on 1 output.
    d = spec.cgtp("1o", "1o", "0e", mode="uvw")
    assert d.flops(1) == 2 * 3 + 2 * 1
    # dense: the whole 3x3x1 block -> 9 MACs
    assert d.flops(1, "dense") == 2 * 9 + 2 * 1


def test_cross_product_by_hand() -> None:
    # 1o x 1o -> 1e: C(1,1,1) = epsilon/sqrt6: 6 nonzeros; weight scales 3 output components.
    d = spec.cgtp("1o", "1o", "1e", mode="uvw")
    assert d.flops(1) == 2 * 6 + 2 * 3
    assert d.flops(1, "dense") == 2 * 27 + 2 * 3
    assert d.flops(1, "sparse") == d.flops(1)


def test_channelwise_by_hand() -> None:
    # 4x1o x 1x1o -> 4x0e (uvu): 4 channel products x 3 nonzeros; 4 weights x 1 component.
    d = spec.cgtp("4x1o", "1x1o", "0e", mode="uvu")
    assert len(d.paths) == 1 and d.weight_numel == 4
    assert d.flops(1) == 2 * 3 * 4 + 2 * 1 * 4


def test_oeq_model_by_hand() -> None:
    # OpenEquivariance: batch * sum [3 nnz(C) m1 m2 + (2 l3 + 1) prod(weight shape)]
    from tp_spec.cost import flops_oeq

    d = spec.cgtp("1o", "1o", "1e", mode="uvw")
    assert flops_oeq(d, 2) == 2 * (3 * 6 * 1 + 3 * 1)


def test_mimo_minimal_count_grows_like_paths() -> None:
    # MIMO L=1: paths 0x0->0, 0x1->1, 1x0->1, 1x1->0, 1x1->1, 1x1->2 with nnz 1,3,3,3,6,11
    # (C(1,1,2) has 11 nonzeros in the real basis) and one weight each.
    from benchmarks.workloads import paper_workloads

    wl = [w for w in paper_workloads(("MIMO",), (1,), ("cgtp",))][0]
    d = wl.descriptor
    from tp_spec.cost import nnz_cg

    assert [nnz_cg(*p.lll) for p in d.paths] == [
        {(0, 0, 0): 1, (0, 1, 1): 3, (1, 0, 1): 3, (1, 1, 0): 3, (1, 1, 1): 6,
         (1, 1, 2): 11}[p.lll] for p in d.paths]
    hand = sum(2 * n + 2 * (2 * p.ir_out.l + 1)
               for n, p in zip((nnz_cg(*p.lll) for p in d.paths), d.paths, strict=False))
    assert d.flops(1) == hand == 2 * (1 + 3 + 3 + 3 + 6 + 11) + 2 * (1 + 3 + 3 + 1 + 3 + 5)


def test_pass_factor() -> None:
    from benchmarks.runner import pass_factor

    assert pass_factor("fwd", True) == 1
    assert pass_factor("bwd", False) == 2 and pass_factor("bwd", True) == 3
    assert pass_factor("dbl", True) == 6
