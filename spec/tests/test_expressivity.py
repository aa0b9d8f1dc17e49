"""Path counts, interactability and expressivity (docs/expressivity.md)."""

from __future__ import annotations

import pytest
import tp_spec as spec
from tp_spec.expressivity import expressivity, interactability, path_counts


def _s2(L, cls=1):
    return spec.Irreps([(1, spec.Irrep(l, cls * (-1) ** l)) for l in range(L + 1)])


def _both(L):
    """Every irrep up to L, both parities, once (natural order)."""
    return spec.Irreps([(1, spec.Irrep(l, p)) for l in range(L + 1) for p in (1, -1)]).regroup()


# ----------------------------------------------------------------------------- path counts
def test_path_count_table():
    table = {L: path_counts(L) for L in range(1, 11)}
    assert [table[L]["all"] for L in (1, 2, 3, 4)] == [6, 19, 44, 85]
    assert [table[L]["gaunt"] for L in (1, 2, 3, 4)] == [5, 14, 30, 55]
    assert [table[L]["odd"] for L in (1, 2, 3, 4)] == [1, 5, 14, 30]
    assert table[10]["all"] == 891
    for L, c in table.items():
        assert c["gaunt"] == (L + 1) * (L + 2) * (2 * L + 3) // 6
        assert c["odd"] == L * (L + 1) * (2 * L + 1) // 6
        assert c["all"] == c["gaunt"] + c["odd"]
    assert path_counts(0) == {"all": 1, "gaunt": 1, "odd": 0}
    with pytest.raises(ValueError, match="non-negative"):
        path_counts(-1)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_counts_match_interactability(L):
    cg = interactability(spec.cgtp(_s2(L), _s2(L), _both(2 * L), mode="uvw"))
    g = interactability(spec.gtp(_s2(L), _s2(L)))
    m = interactability(spec.mtp(_s2(L), _s2(L), _both(2 * L)))
    counts = path_counts(L)
    assert len(cg) == counts["all"]
    assert len(g) == counts["gaunt"] and g <= cg
    assert len(cg - g) == counts["odd"]
    assert all((a[0] + b[0] + c[0]) % 2 == 1 for a, b, c in cg - g)
    assert m == cg  # the matrix TP (lt = L) reaches every path here, odd-sum ones included


def test_interactability_of_parity_classes():
    # GTP includes the (-,-) class pair: pseudovector . pseudovector
    assert ((1, 1), (1, 1), (0, 1)) in interactability(spec.gtp("1e", "1e"))
    assert ((1, -1), (1, -1), (1, 1)) not in interactability(spec.gtp("1o", "1o", "0e + 1e + 2e"))
    assert ((1, -1), (1, -1), (1, 1)) in interactability(spec.mtp("1o", "1o"))


# ----------------------------------------------------------------------------- expressivity
@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_expressivity_values(L):
    s2, out = _s2(L), _s2(2 * L)
    assert expressivity(spec.cgtp(s2, s2, _both(2 * L), mode="uvw")) == path_counts(L)["all"]
    assert expressivity(spec.gtp(s2, s2, out)) == 4 * L + 1
    assert expressivity(spec.mtp(s2, s2, out)) == 4 * L + 1
    # With the odd-parity outputs too, MTP also reaches the 2L - 1 antisymmetric output types
    # (each one more output scale): (L+1) + (L+1) + (4L) - 2 = 6L.
    assert expressivity(spec.mtp(s2, s2, _both(2 * L))) == 6 * L


def test_expressivity_small_cases():
    # a single fixed path: only the overall scale is free
    assert expressivity(spec.cgtp("1o", "1o", "1e", instructions=[(0, 0, 0, "uuu", False)])) == 1
    # per-degree weights are subsumed by the linear layers
    assert expressivity(spec.gtp("2x0e + 2x1o", "0e + 1o", per_degree_weights=True)) == \
        expressivity(spec.gtp("2x0e + 2x1o", "0e + 1o"))
    # fully connected: every coupling tensor is free: 6 irrep triples x (2 * 1 * 2) entries
    d = spec.cgtp("2x0e + 2x1o", "0e + 1o", "2x0e + 2x1o + 2x1e + 2x2e", mode="uvw")
    assert expressivity(d) == 6 * 4
    # no paths at all
    assert expressivity(spec.cgtp("0e", "0e", "1o", instructions=[])) == 0


def test_expressivity_refuses_huge_jacobians_before_work():
    """MACE-large shape: ~1e13 Jacobian entries; a clear error instead of hours of NumPy
    (the models benchmark suite once spent 30 minutes here)."""
    d = spec.cgtp("128x0e+128x1o+128x2e", "0e+1o+2e+3o", mode="uvu")
    with pytest.raises(ValueError, match="max_entries"):
        expressivity(d)
    # a small one under an explicit bound still computes; the bound is exclusive of it
    small = spec.gtp("0e + 1o", "0e + 1o")
    assert expressivity(small, max_entries=None) == 5
    with pytest.raises(ValueError, match="max_entries"):
        expressivity(small, max_entries=1)
