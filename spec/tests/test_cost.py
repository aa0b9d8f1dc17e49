"""FLOP and byte models: hand counts for small cases, method relations, errors."""

from __future__ import annotations

import math

import pytest
import tp_spec as spec
from tp_spec import cost, plan
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
    assert plan.flops(scalar, 1, "grid") == 2 + 2 + 2 + 2
    # Fourier (dense tables): per input a (1, 2) table GEMM onto real and imaginary part (4),
    # FFTs of size 1 free, a 1x1 complex MAC (8), the (2, 1) projection GEMM (4)
    assert plan.flops(scalar, 1, "fourier") == 4 + 4 + 8 + 4
    assert cost.flops(spec.gtp("0e", "0e", per_degree_weights=True), 1) == 2 + 3


def test_gtp_fourier_formula():
    # 0e + 1o (L = 1): classes +1 only (0e, 1o are natural), one pair, out degrees 0..2.
    # Tables: (L+1)^2 = 4 rows onto 2 * 3^2 = 18 columns: 2 * 4 * 18 = 144 per input.
    # Convolution N = 2 (1 + 1) + 1 = 5: 2D FFT 5 * 25 * log2(25) each (two forward, one
    # inverse), complex MAC 8 * 25, projection 2 * 50 * (2 + 1)^2 = 900.
    d = spec.gtp("0e + 1o", "0e + 1o")
    fft2 = 5 * 25 * math.log2(25)
    expected = 2 * (144 + fft2) + 8 * 25 + (fft2 + 900)
    assert plan.flops(d, 1, "fourier") == round(expected)


def test_gtp_grid_formula():
    d = spec.gtp("0e + 1o", "0e + 1o")  # out 0e + 1o + 2e, grid (3, 5)
    assert d.grid_shape() == (3, 5)
    f = 2.5 * 5 * math.log2(5)  # one real FFT of length 5
    legendre_in = 2 * 3 * 4  # 4 components, 3 nodes
    expected = 2 * (legendre_in + 3 * f) + 2 * 3 * 5 + (3 * f + 2 * 3 * 9)
    assert plan.flops(d, 1, "grid") == round(expected)
    # channels scale it linearly
    d4 = spec.gtp("4x0e + 4x1o", "4x0e + 4x1o")
    assert abs(plan.flops(d4, 1, "grid") - 4 * expected) <= 1


def test_mtp_counts():
    # n = 1, one parity pair (e x e -> e): embeddings 2 * 1 * 1 each, product 2 * 1^3,
    # read-out 2 * 1 * 1; dense and sparse coincide
    scalar = spec.mtp("0e", "0e")
    assert plan.flops(scalar, 1, "dense") == 8 and plan.flops(scalar, 1, "sparse") == 8
    # n = 3, odd x odd -> even only: one product (2 * 27 = 54).
    # dense: embedding rows (L+1)^2 = 4 (degree 0 a zero row), one matrix per side:
    # 2 * 4 * 9 = 72 each; read-out (Lo+1)^2 = 4 rows, one parity: 2 * 9 * 4 = 72.
    # sparse: 3 features per side, 2 * 3 * 9 = 54 each; read-out onto the 3 components: 54.
    d = spec.mtp("1o", "1o", "1e")
    assert plan.flops(d, 1, "dense") == 72 + 72 + 54 + 72
    assert plan.flops(d, 1, "sparse") == 54 + 54 + 54 + 54
    assert cost.flops(d, 1) == 2 * NNZ_111
    assert plan.flops(d, 10, "sparse") == 10 * 216


def test_mtp_mimo_hand_counts():
    # L=1 MIMO, one channel: x = 0e + 1o (4 features), n = 3, out 0e + 1o + 1e + 2e
    # (12 components); all four parity pairs: [X, X'] (2 matrices), products P and Q
    # (2 * 2 * 27 = 108), read-out one GEMM from [P, Q] (2 * 18 * 12 = 432).
    # Embedding 2 * 4 rows * 18 columns = 144 per side, for dense (degrees 0..1 = 4 rows)
    # and sparse (4 features) alike.
    d1 = spec.mtp("0e + 1o", "0e + 1o")
    assert d1.n == 3 and d1.irreps_out.dim == 12
    assert plan.flops(d1, 1, "dense") == plan.flops(d1, 1, "sparse") == 2 * 144 + 108 + 432
    # L=2: x = 0e + 1o + 2e (9 features = 9 rows), n = 3, out 0e+1o+1e+2e+2o (17):
    # embedding 2 * 9 * 18 = 324 per side, products 108, read-out 2 * 18 * 17 = 612.
    d2 = spec.mtp("0e + 1o + 2e", "0e + 1o + 2e")
    assert d2.n == 3 and d2.irreps_out.dim == 17
    assert plan.flops(d2, 1, "dense") == plan.flops(d2, 1, "sparse") == 2 * 324 + 108 + 612
    # L=6 MIMO: 49 natural features per side, n = 7, out: 0e and both parities of
    # l = 1..6 (1 + 2 * 48 = 97 components). dense: 2 * 49 * 98 = 9604 per side, products
    # 2 * 2 * 343 = 1372, read-out from [P, Q] 2 * 98 * 97 = 19012. sparse (n = 7: the
    # transpose regime): X alone, 2 * 49 * 49 = 4802 per side, products X1 X2 and X2 X1
    # (1372), read-out of the commutator and anticommutator onto the 97 components
    # 2 * 49 * 97 = 9506.
    s6 = spec.Irreps.spherical_harmonics(6)
    d6 = spec.mtp(s6, s6)
    assert d6.n == 7 and d6.irreps_out.dim == 97
    assert plan.flops(d6, 1, "dense") == 2 * 9604 + 1372 + 19012
    assert plan.flops(d6, 1, "sparse") == 2 * 4802 + 1372 + 9506
    # L=1 with 2 channels: no fused read-out. Products 2 channels * 2 * 27 = 216.
    # dense: 2 channels * 2 matrices * 4 rows * 9 = 144, times 2 FLOPs = 288 per side;
    # read-out per channel and output parity onto (Lo+1)^2 = 9 rows: 2 * 2 * 2 * 9 * 9 = 648.
    # sparse: the 4 features of a channel, same 288 per side; read-out onto the 12
    # components of a channel: 2 * 2 * 9 * 12 = 432.
    d1c = spec.mtp("2x0e + 2x1o", "2x0e + 2x1o")
    assert plan.flops(d1c, 1, "dense") == 2 * 288 + 216 + 648
    assert plan.flops(d1c, 1, "sparse") == 2 * 288 + 216 + 432


def test_method_relations():
    L = 6
    s2 = spec.Irreps.spherical_harmonics(L)
    s2_out = spec.Irreps.spherical_harmonics(2 * L)
    cg = spec.cgtp(s2, s2, s2_out, mode="uvw")
    assert plan.flops(cg, 1, "sparse") < plan.flops(cg, 1, "dense")
    g = spec.gtp(s2, s2)
    assert plan.flops(g, 1, "grid") < cost.flops(g, 1, "gaunt")
    assert plan.flops(g, 1, "grid") < plan.flops(g, 1, "fourier")
    m = spec.mtp(s2, s2, s2_out)
    assert plan.flops(m, 1, "sparse") < plan.flops(m, 1, "dense")


def test_errors():
    d = spec.cgtp("0e", "0e", "0e", mode="uvw")
    with pytest.raises(InstructionError, match="no descriptor-level FLOP model 'grid'"):
        cost.flops(d, 1, "grid")
    with pytest.raises(InstructionError, match="valid methods"):
        plan.flops(d, 1, "grid")
    with pytest.raises(InstructionError, match="no FLOP model"):
        plan.flops(d, 1, "cueq")
    with pytest.raises(ValueError, match="batch"):
        cost.flops(d, -1)
    with pytest.raises(ValueError, match="batch"):
        plan.flops(d, -1, "dense")
