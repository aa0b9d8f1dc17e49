"""Unit tests of tp_spec.irreps (Irrep, Irreps, MulIrrep)."""

from __future__ import annotations

import pickle

import pytest
from tp_spec import Irrep, Irreps, IrrepsError, MulIrrep


# ----------------------------------------------------------------------------- Irrep
def test_irrep_construction():
    assert Irrep("1o") == Irrep(1, -1) == Irrep((1, -1)) == Irrep(Irrep("1o"))
    assert (Irrep("0e").l, Irrep("0e").p) == (0, 1)
    assert Irrep("3y") == Irrep("3o") and Irrep("2y") == Irrep("2e")
    assert Irrep(" 2e ") == Irrep(2, 1)
    assert Irrep("5e").dim == 11
    assert tuple(Irrep("2o")) == (2, -1)
    assert repr(Irrep(4, -1)) == "4o"


@pytest.mark.parametrize("bad", ["1", "e", "1x", "-1e", "1.5e", "1p", "", "1 e"])
def test_irrep_malformed(bad):
    with pytest.raises(IrrepsError, match="malformed irrep"):
        Irrep(bad)


def test_irrep_bad_values():
    with pytest.raises(IrrepsError, match="non-negative int"):
        Irrep(-1, 1)
    with pytest.raises(IrrepsError, match="parity must be"):
        Irrep(1, 0)
    with pytest.raises(IrrepsError, match="parity must be"):
        Irrep(1, True)
    with pytest.raises(IrrepsError, match="non-negative int"):
        Irrep(1.0, 1)
    with pytest.raises(IrrepsError, match="already carries"):
        Irrep("1o", 1)
    with pytest.raises(IrrepsError, match="pair"):
        Irrep((1, 1, 1))


def test_irrep_properties_and_product():
    assert Irrep("1o").is_natural and not Irrep("1e").is_natural
    assert Irrep("0e").is_scalar() and not Irrep("0o").is_scalar()
    assert list(Irrep("1o") * Irrep("1o")) == [Irrep("0e"), Irrep("1e"), Irrep("2e")]
    assert list(Irrep("2e") * Irrep("1o")) == [Irrep("1o"), Irrep("2o"), Irrep("3o")]
    assert list(Irrep("0o") * "3e") == [Irrep("3o")]


def test_irrep_equality_hash_order():
    assert Irrep("1o") == "1o" and Irrep("1o") != "1e" and Irrep("1o") != "garbage"
    assert Irrep("1o") == (1, -1)
    assert len({Irrep("1o"), Irrep(1, -1), Irrep("1e")}) == 2
    # natural order: degree, then the natural parity (-1)**l first
    assert sorted([Irrep("1e"), Irrep("0o"), Irrep("1o"), Irrep("0e"), Irrep("2o"), Irrep("2e")]) \
        == [Irrep(s) for s in ("0e", "0o", "1o", "1e", "2e", "2o")]
    assert pickle.loads(pickle.dumps(Irrep("3o"))) == Irrep("3o")


# ----------------------------------------------------------------------------- Irreps
def test_irreps_parsing_and_sizes():
    irreps = Irreps("8x0e + 4x1o + 2e + 0x3o")
    assert list(irreps) == [MulIrrep(8, Irrep("0e")), MulIrrep(4, Irrep("1o")),
                            MulIrrep(1, Irrep("2e")), MulIrrep(0, Irrep("3o"))]
    assert irreps.dim == 8 + 12 + 5
    assert irreps.num_irreps == 13
    assert irreps.lmax == 3
    assert irreps.ls == [0] * 8 + [1] * 4 + [2]
    assert irreps.slices() == (slice(0, 8), slice(8, 20), slice(20, 25), slice(25, 25))
    assert irreps[1].dim == 12 and irreps[1].mul == 4 and irreps[1].ir == Irrep("1o")
    assert Irreps("") == Irreps() and Irreps().dim == 0
    assert Irreps("3 x 1y") == Irreps("3x1o")


def test_irreps_from_other_forms():
    assert Irreps([(2, "1o"), (1, Irrep("0e"))]) == Irreps("2x1o + 0e")
    assert Irreps([Irrep("1o"), "2e"]) == Irreps("1o + 2e")
    assert Irreps(Irrep("1e")) == Irreps("1x1e")
    assert Irreps(Irreps("2x0e")) == Irreps("2x0e")
    assert Irreps([(1, (2, -1))]) == Irreps("2o")


@pytest.mark.parametrize("bad", ["1x", "2x1q", "x1o", "1o +", "1o ++ 2e", "-1x1o", "1o, 2e"])
def test_irreps_malformed(bad):
    with pytest.raises(IrrepsError, match="malformed irreps"):
        Irreps(bad)


def test_irreps_bad_items():
    with pytest.raises(IrrepsError, match="multiplicity must be"):
        Irreps([(-1, "1o")])
    with pytest.raises(IrrepsError, match="cannot interpret"):
        Irreps([(1, 2, 3)])
    with pytest.raises(IrrepsError, match="cannot interpret"):
        Irreps(3)
    with pytest.raises(IrrepsError, match="lmax of empty"):
        _ = Irreps("").lmax


def test_irreps_transformations():
    irreps = Irreps("1o + 1e + 0e + 1o + 0o")
    srt = irreps.sort()
    assert srt.irreps == Irreps("0e + 0o + 1o + 1o + 1e")
    assert [srt.irreps[srt.inv[i]] for i in range(len(irreps))] == list(irreps)
    assert [irreps[i] for i in srt.p] == list(srt.irreps)
    assert irreps.sort("e3nn").irreps == Irreps("0o + 0e + 1o + 1o + 1e")
    with pytest.raises(IrrepsError, match="unknown sort order"):
        irreps.sort("random")
    assert Irreps("1x0e + 2x0e + 1o + 0x2e + 1o").simplify() == Irreps("3x0e + 2x1o")
    assert Irreps("0e + 1o + 0e").simplify() == Irreps("0e + 1o + 0e")  # adjacent only
    assert irreps.regroup() == Irreps("0e + 0o + 2x1o + 1e")
    assert Irreps("0x0e + 2x1o").remove_zero_multiplicities() == Irreps("2x1o")
    assert Irreps("0e + 1o + 2e").filter(lmax=1) == Irreps("0e + 1o")
    assert Irreps("0e + 1o + 2e").filter(keep="1o + 2e") == Irreps("1o + 2e")
    assert Irreps("0e + 1o + 2e").filter(drop=["1o"]) == Irreps("0e + 2e")
    assert Irreps("0e + 2x1o").filter(lambda b: b.mul > 1) == Irreps("2x1o")


def test_irreps_spherical_harmonics():
    assert Irreps.spherical_harmonics(3) == Irreps("0e + 1o + 2e + 3o")
    assert Irreps.spherical_harmonics(2, p=1) == Irreps("0e + 1e + 2e")
    with pytest.raises(IrrepsError, match="parity"):
        Irreps.spherical_harmonics(2, p=0)


def test_irreps_operators():
    a, b = Irreps("0e"), Irreps("1o")
    assert a + b == Irreps("0e + 1o") and "2e" + a == Irreps("2e + 0e")
    assert (a + b) * 2 == Irreps("0e + 1o + 0e + 1o") == 2 * (a + b)
    with pytest.raises(IrrepsError, match="repeated"):
        _ = a * 1.5
    assert Irreps("0e + 1o + 2e")[1:] == Irreps("1o + 2e")
    assert isinstance(Irreps("0e + 1o")[1:], Irreps)
    assert Irreps("2x1o + 3x1o").count("1o") == 5
    assert "1o" in Irreps("2x1o") and "1e" not in Irreps("2x1o") and "zz" not in Irreps("2x1o")
    assert Irreps("2x1o") == "2x1o" and Irreps("2x1o") != "1x1o" and Irreps("1o") != "garbage"
    assert hash(Irreps("2x1o + 0e")) == hash(Irreps([(2, "1o"), (1, "0e")]))
    assert repr(Irreps("2x1o + 0e")) == "2x1o+1x0e"
    assert pickle.loads(pickle.dumps(Irreps("2x1o + 3e"))) == Irreps("2x1o + 3e")


def test_matches_e3nn():
    pytest.importorskip("e3nn")
    pytest.importorskip("torch")
    from e3nn import o3

    for s in ("8x0e + 4x1o + 2x2e + 1x1e", "3x1o + 2x0o + 1x3y", "0e", "2e + 0e + 1e",
              "1e + 0o + 2e + 0e + 1o"):
        ours, theirs = Irreps(s), o3.Irreps(s)
        assert ours.dim == theirs.dim and ours.num_irreps == theirs.num_irreps
        assert ours.lmax == theirs.lmax
        assert str(ours.sort("e3nn").irreps) == str(theirs.sort().irreps)
        assert list(ours.sort("e3nn").p) == list(theirs.sort().p)
        assert list(ours.sort("e3nn").inv) == list(theirs.sort().inv)
        assert str(ours.simplify()) == str(theirs.simplify())


def test_sort_permutation_remaps_instructions():
    """``p`` maps an original block index to its sorted position (the e3nn/MACE idiom)."""
    irreps = Irreps("2x2e + 3x0e + 1x1o")
    srt = irreps.sort()
    assert srt.irreps == Irreps("3x0e + 1x1o + 2x2e")
    for i, block in enumerate(irreps):
        assert srt.irreps[srt.p[i]] == block
        assert irreps[srt.inv[srt.p[i]]] == block


def test_filter_accepts_single_irreps():
    irreps = Irreps("0e + 1o + 1e + 2e")
    assert irreps.filter(Irrep("1o")) == Irreps("1o")
    assert irreps.filter(drop=Irrep("1o")) == Irreps("0e + 1e + 2e")
    with pytest.raises(IrrepsError, match="lmax must be a non-negative int"):
        irreps.filter(lmax=-1)
