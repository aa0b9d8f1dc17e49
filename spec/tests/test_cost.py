"""FLOP and byte models: hand counts for small cases, method relations, errors."""

from __future__ import annotations

import math

import pytest
import tp_spec as spec
from tp_spec import cost
from tp_spec.errors import InstructionError

# Hand counts of nonzero CG entries (real basis): C(1,1,0) = delta/sqrt3 (3 entries),
# C(1,1,1) = epsilon/sqrt6 (6), C(1,1,2): the 5 quadratic forms xy, yz, zx (2 each),
# x^2 - z^2 (2) and the axial one 2y^2 - x^2 - z^2 (3) = 11.
NNZ_110, NNZ_111, NNZ_112 = 3, 6, 11


def test_nnz_hand_counts():
    assert cost.nnz_cg(0, 0, 0) == 1
    assert (cost.nnz_cg(1, 1, 0), cost.nnz_cg(1, 1, 1), cost.nnz_cg(1, 1, 2)) == (
        NNZ_110, NNZ_111, NNZ_112)
    assert cost.nnz_cg(0, 2, 2) == 5


def test_scalar_product():
    d = spec.cgtp("0e", "0e", "0e", mode="uvw")
    # one MAC for the CG entry, one MAC for the weight
    assert cost.flops(d, 1) == 4
    assert cost.flops(d, 1, "dense") == 4 and cost.flops(d, 1, "fused") == 4
    assert cost.flops_oeq(d, 1) == 3 * 1 + 1
    assert d.flops(7) == 28
    assert cost.bytes_moved(d, 10, 4) == 4 * (10 * 3 + 1)
    assert d.bytes(10, 8) == 8 * 31


def test_vector_times_vector():
    d = spec.cgtp("1o", "1o", "0e + 1e + 2e", mode="uvw")
    weight_macs = 1 + 3 + 5  # one weight per path, per output component
    assert cost.flops(d, 1) == 2 * (NNZ_110 + NNZ_111 + NNZ_112) + 2 * weight_macs
    assert cost.flops(d, 1, "sparse") == cost.flops(d, 1)
    assert cost.flops(d, 1, "dense") == 2 * (9 * 1 + 9 * 3 + 9 * 5) + 2 * weight_macs
    assert cost.flops(d, 1, "oeq") == 3 * (NNZ_110 + NNZ_111 + NNZ_112) + weight_macs
    assert cost.flops(d, 100) == 100 * cost.flops(d, 1)


def test_channel_modes():
    uvw = spec.cgtp("2x1o", "3x1o", "4x0e", mode="uvw")
    assert cost.flops(uvw, 1) == 2 * NNZ_110 * 6 + 2 * 1 * (2 * 3 * 4)
    uvu = spec.cgtp("2x1o", "3x1o", "2x0e", instructions=[(0, 0, 0, "uvu", True)])
    assert cost.flops(uvu, 1) == 2 * NNZ_110 * 6 + 2 * 1 * (2 * 3)
    uuu = spec.cgtp("2x1o", "2x1o", "2x0e", instructions=[(0, 0, 0, "uuu", True)])
    assert cost.flops(uuu, 1) == 2 * NNZ_110 * 2 + 2 * 1 * 2
    unweighted = spec.cgtp("2x1o", "2x1o", "2x0e", instructions=[(0, 0, 0, "uuu", False)])
    assert cost.flops(unweighted, 1) == 2 * NNZ_110 * 2


def test_gtp_counts():
    d = spec.gtp("1o", "1o")  # paths 1o x 1o -> 0e, 2e
    assert cost.flops(d, 1) == 2 * (NNZ_110 + NNZ_112)
    assert cost.flops(d, 1, "gaunt") == 2 * (9 + 45)
    scalar = spec.gtp("0e", "0e")
    # grid 1 x 1: Legendre 1 MAC per input, 1 product MAC, 1 projection MAC, FFTs of length 1 free
    assert cost.flops(scalar, 1, "grid") == 2 + 2 + 2 + 2
    # Fourier: 1 table entry per input (2 FLOPs each), 1x1 complex MAC (8), 1 projection entry
    assert cost.flops(scalar, 1, "fourier") == 2 + 2 + 8 + 2
    assert cost.flops(spec.gtp("0e", "0e", per_degree_weights=True), 1) == 2 + 3


def test_gtp_grid_formula():
    d = spec.gtp("0e + 1o", "0e + 1o")  # out 0e + 1o + 2e, grid (3, 5)
    assert d.grid_shape() == (3, 5)
    f = 2.5 * 5 * math.log2(5)  # one real FFT of length 5
    legendre_in = 2 * 3 * 4  # 4 components, 3 nodes
    expected = 2 * (legendre_in + 3 * f) + 2 * 3 * 5 + (3 * f + 2 * 3 * 9)
    assert cost.flops(d, 1, "grid") == round(expected)
    # channels scale it linearly
    d4 = spec.gtp("4x0e + 4x1o", "4x0e + 4x1o")
    assert abs(cost.flops(d4, 1, "grid") - 4 * expected) <= 1


def test_mtp_counts():
    scalar = spec.mtp("0e", "0e")
    assert cost.flops(scalar, 1, "dense") == 8 and cost.flops(scalar, 1, "sparse") == 8
    d = spec.mtp("1o", "1o", "1e")  # n = 3: odd x odd -> even, one matmul
    assert cost.flops(d, 1, "dense") == 2 * 9 * 3 + 2 * 9 * 3 + 2 * 27 + 2 * 9 * 3
    assert cost.flops(d, 1, "sparse") == 2 * NNZ_111 * 3 + 2 * 27
    assert cost.flops(d, 1) == 2 * NNZ_111


def test_method_relations():
    L = 6
    s2 = spec.Irreps.spherical_harmonics(L)
    s2_out = spec.Irreps.spherical_harmonics(2 * L)
    cg = spec.cgtp(s2, s2, s2_out, mode="uvw")
    assert cost.flops(cg, 1, "sparse") < cost.flops(cg, 1, "dense")
    g = spec.gtp(s2, s2)
    assert cost.flops(g, 1, "grid") < cost.flops(g, 1, "gaunt")
    assert cost.flops(g, 1, "grid") < cost.flops(g, 1, "fourier")
    m = spec.mtp(s2, s2, s2_out)
    assert cost.flops(m, 1, "sparse") < cost.flops(m, 1, "dense")


def test_errors():
    d = spec.cgtp("0e", "0e", "0e", mode="uvw")
    with pytest.raises(InstructionError, match="no FLOP model for method 'grid'"):
        cost.flops(d, 1, "grid")
    with pytest.raises(ValueError, match="batch"):
        cost.flops(d, -1)
