"""How the backends compute MACE's product basis (:mod:`tp_spec.symmetric_contraction`): the
contraction as symmetric monomials, in two orders.

* :func:`monomial_plan`, coefficients first: the parity-grouped monomials times the
  symmetrized ``U`` (independent of the species), then each node's weights.
* :func:`suffix_plan`, weights first: each species' weights contracted into the symmetrized
  ``U``, then one product per species over every node, the top degree in Horner's form.

:func:`weights_first` picks the order with fewer multiply-adds for ``n`` nodes; the NumPy
executors :func:`run_monomial_numpy` and :func:`run_suffix_numpy` run each plan against
:func:`tp_spec.symmetric_contraction.apply` in the tests.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..symmetric_basis import symmetrized
from ..symmetric_contraction import (
    SymmetricContractionDescriptor,
    _readonly,
    channels_last,
    check_inputs,
    split_weights,
)

__all__ = [
    "MonomialPlan",
    "SuffixPlan",
    "monomial_plan",
    "run_monomial_numpy",
    "run_suffix_numpy",
    "suffix_monomials",
    "suffix_plan",
    "weights_first",
]


@dataclass(frozen=True, eq=False)
class MonomialPlan:
    """The contraction as symmetric monomials, for the backends.

    With ``X (k, n, D)`` (``x[:, in_index].reshape(n, k, D)``, channels first), the full
    lexicographic lists of monomials ``i_1 <= ... <= i_d`` of degree ``d < correlation`` are
    ``P_1 = X`` and ``P_d = P_{d-1}[..., prefix[d]] * X[..., last[d]]``. Monomials are grouped by
    parity; group ``g`` is the concatenation over its pieces ``(d, pre, last)`` of
    ``P_{d-1}[..., pre] * X[..., last]`` (``X[..., last]`` for ``d = 1``). Output ``i`` is
    ``B_i[c, M] = sum_{p < hi - lo} P_g[c, p + lo] * C_i[z, c, p, M]`` with
    ``C_i[z] = einsum("pMe,zec->zcpM", coeff[i], cat_nu W[i][nu - 1])``; ``coeff[i]`` holds the
    symmetrized ``U`` (the sum of ``U`` over the distinct orderings of each monomial).
    ``out_index`` maps ``(n, k, sum dim L_i)`` (flat) to mul_ir.
    """

    in_index: np.ndarray
    prefix: tuple[np.ndarray, ...]
    last: tuple[np.ndarray, ...]
    groups: tuple[tuple[tuple[int, np.ndarray, np.ndarray], ...], ...]
    outputs: tuple[tuple[int, int, int], ...]  # (group, lo, hi) per output
    coeff: tuple[np.ndarray, ...]
    out_index: np.ndarray


def _symmetrized_rows(U: np.ndarray, monos: list[tuple[int, ...]]) -> np.ndarray:
    """``(len(monos), M, K)``: ``U`` summed over the distinct orderings of each monomial."""
    S = symmetrized(U) * math.factorial(U.ndim - 2)
    rows = np.stack([S[(slice(None), *m)] for m in monos])  # monos is not empty
    counts = np.array(
        [math.prod(math.factorial(m.count(j)) for j in set(m)) for m in monos], dtype=float
    )
    return rows / counts[:, None, None]


@functools.lru_cache(maxsize=32)
def monomial_plan(d: SymmetricContractionDescriptor) -> MonomialPlan:
    """The :class:`MonomialPlan` of ``d`` (cached per descriptor)."""
    D, k, corr = d.coupling.dim, d.mul, d.correlation
    parity = np.concatenate([np.full(ir.dim, ir.p) for _, ir in d.coupling])
    in_index = np.concatenate(
        [np.arange(sl.start, sl.stop).reshape(k, ir.dim)
         for sl, (_, ir) in zip(d.irreps_in.slices(), d.irreps_in, strict=True)], axis=1
    ).reshape(-1)
    monos = {deg: list(itertools.combinations_with_replacement(range(D), deg))
             for deg in range(1, corr + 1)}
    position = {deg: {m: j for j, m in enumerate(ms)} for deg, ms in monos.items()}
    prefix, last = [np.zeros(0, np.int64), np.zeros(0, np.int64)], [np.zeros(0, np.int64)] * 2
    for deg in range(2, corr):
        prefix.append(np.array([position[deg - 1][m[:-1]] for m in monos[deg]], np.int64))
        last.append(np.array([m[-1] for m in monos[deg]], np.int64))
    groups, order = [], {}
    for g, p in enumerate((1, -1)):
        pieces, rows = [], []
        for deg in range(1, corr + 1):
            sel = [m for m in monos[deg] if np.prod(parity[list(m)]) == p]
            pre = [0 if deg == 1 else position[deg - 1][m[:-1]] for m in sel]
            pieces.append((deg, np.array(pre, np.int64), np.array([m[-1] for m in sel], np.int64)))
            rows += [(deg, m) for m in sel]
        groups.append(tuple(pieces))
        order[p] = (g, rows)
    outputs, coeff = [], []
    for i, (_, ir) in enumerate(d.irreps_out):
        g, rows = order[ir.p]
        K = [u.shape[-1] for u in d.U[i]]
        c = np.zeros((len(rows), ir.dim, sum(K)))
        for nu in range(1, corr + 1):
            sel = [j for j, (deg, _) in enumerate(rows) if deg == nu]
            ms = [rows[j][1] for j in sel]
            if K[nu - 1] and ms:
                start = sum(K[: nu - 1])
                c[sel, :, start : start + K[nu - 1]] = _symmetrized_rows(d.U[i][nu - 1], ms)
        nz = np.flatnonzero(np.abs(c).sum(axis=(1, 2)) > 0)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        outputs.append((g, lo, hi))
        coeff.append(_readonly(c[lo:hi]))
    dims = [ir.dim for _, ir in d.irreps_out]
    offsets = np.cumsum([0] + dims)
    total = offsets[-1]
    out_index = np.concatenate(
        [(np.arange(k)[:, None] * total + offsets[i] + np.arange(dim)[None, :]).reshape(-1)
         for i, dim in enumerate(dims)]
    )
    return MonomialPlan(
        in_index=in_index, prefix=tuple(prefix), last=tuple(last), groups=tuple(groups),
        outputs=tuple(outputs), coeff=tuple(coeff), out_index=out_index,
    )


def run_monomial_numpy(d: SymmetricContractionDescriptor, x: Any, weights: Any,
                       species: Any) -> np.ndarray:
    """:func:`apply` through :func:`monomial_plan` (the backends' algorithm, in NumPy)."""
    x, w, s = check_inputs(d, x, weights, species)
    p = monomial_plan(d)
    n, k, D = x.shape[0], d.mul, d.coupling.dim
    X = x[:, p.in_index].reshape(n, k, D).transpose(1, 0, 2)
    full = [None, X]
    for deg in range(2, d.correlation):
        full.append(full[deg - 1][..., p.prefix[deg]] * X[..., p.last[deg]])
    P = [
        np.concatenate(
            [X[..., last] if deg == 1 else full[deg - 1][..., pre] * X[..., last]
             for deg, pre, last in pieces], axis=-1)
        for pieces in p.groups
    ]
    W = split_weights(d, w)
    outs = []
    for i, (g, lo, hi) in enumerate(p.outputs):
        wcat = np.concatenate(W[i], axis=1)  # (S, K, k)
        C = np.einsum("pMe,zec->zcpM", p.coeff[i], wcat)
        outs.append(np.einsum("cnp,ncpM->ncM", P[g][..., lo:hi], C[s]))
    return np.concatenate(outs, axis=-1).reshape(n, -1)[:, p.out_index]


@dataclass(frozen=True, eq=False)
class SuffixPlan:
    """The contraction with the weights contracted into the coefficients first, for the
    backends' small-species case (:func:`weights_first`).

    The monomials of each degree are listed in lexicographic order ``i_1 <= ... <= i_d``, so
    those of degree ``d`` that start with ``i`` are ``X[..., i]`` times the monomials of
    degree ``d - 1`` whose first index is ``>= i``: a contiguous suffix ``P_{d-1}[...,
    suffix[d - 2][i]:]``. With ``X (..., D)``, ``P_0 = 1``, ``P_1 = X`` and ``P_d = concat_i
    X[..., i:i+1] * P_{d-1}[..., suffix[d - 2][i]:]`` (static slices only: their derivatives
    are slices and pads, not scatters), up to ``d = correlation - 1`` (``c``); the top degree
    is never built (Horner's step)::

        B_i[z, ch, M] = sum_p P_low[ch, p] L_i[z, ch, p, M]
                        + sum_j X[ch, j] sum_m P_{c-1}[ch, m] T_i[z, ch, j, m, M]

    with ``P_low = concat(P_1, ..., P_{c-1})``, ``L_i[z] = einsum("pMe,zek->kpM", lower[i],
    W_i[z])`` and ``T_i[z] = einsum("jmMe,zek->kjmM", top[i], W_i[z])`` (``W_i`` the
    concatenation over ``nu`` of the weights ``W[i][nu - 1]``). ``lower[i]`` ``(sum_{d<c}
    N_d, M, K)`` holds the symmetrized ``U`` of degrees ``1 .. c - 1``; ``top[i]`` ``(D,
    N_{c-1}, M, K)`` that of degree ``c`` at the monomial ``(j,) + m``, zero where ``m`` starts
    below ``j`` (not lexicographic). The ``N_d = C(D + d - 1, d)`` monomials of degree ``d``.
    """

    suffix: tuple[np.ndarray, ...]  # per degree d in 2 .. correlation - 1: (D,) start offsets
    num_low: int  # sum_{d < correlation} N_d
    num_top: int  # N_{correlation - 1}
    lower: tuple[np.ndarray, ...]
    top: tuple[np.ndarray, ...]


@functools.lru_cache(maxsize=32)
def suffix_plan(d: SymmetricContractionDescriptor) -> SuffixPlan:
    """The :class:`SuffixPlan` of ``d`` (cached per descriptor)."""
    D, corr = d.coupling.dim, d.correlation
    monos = {deg: list(itertools.combinations_with_replacement(range(D), deg))
             for deg in range(0, corr + 1)}
    suffix = tuple(np.searchsorted([m[0] for m in monos[deg - 1]], np.arange(D))
                   .astype(np.int64) for deg in range(2, corr))
    low_start = np.cumsum([0] + [len(monos[deg]) for deg in range(1, corr)])
    prev = monos[corr - 1]
    top_rows = {(j,) + m: (j, r) for j in range(D) for r, m in enumerate(prev)
                if not m or m[0] >= j}
    lower, top = [], []
    for i, (_, ir) in enumerate(d.irreps_out):
        K = [u.shape[-1] for u in d.U[i]]
        lo = np.zeros((int(low_start[-1]), ir.dim, sum(K)))
        tp = np.zeros((D, len(prev), ir.dim, sum(K)))
        for nu in range(1, corr + 1):
            if not K[nu - 1]:
                continue
            cols = slice(sum(K[:nu - 1]), sum(K[:nu]))
            rows = _symmetrized_rows(d.U[i][nu - 1], monos[nu])
            if nu < corr:
                lo[low_start[nu - 1]:low_start[nu], :, cols] = rows
            else:
                for m, row in zip(monos[nu], rows, strict=True):
                    tp[top_rows[m]][:, cols] = row
        lower.append(_readonly(lo))
        top.append(_readonly(tp))
    return SuffixPlan(suffix=suffix, num_low=int(low_start[-1]), num_top=len(prev),
                      lower=tuple(lower), top=tuple(top))


def weights_first(d: SymmetricContractionDescriptor, n: int) -> bool:
    """Whether ``n`` nodes run :func:`suffix_plan` (weights contracted into the coefficients
    per species, then one product per species over every node) rather than
    :func:`monomial_plan` (monomials times the coefficients, then each node's weights): the
    one with fewer multiply-adds. Per output ``i``, with ``R = sum_{d<c} N_d + D N_{c-1}``
    coefficient rows, the first costs ``num_species k R M_i (K_i + n)``, the second ``n k
    (P_i M_i K_i + M_i K_i)`` (``P_i`` the monomials of output ``i``'s parity group)."""
    D, corr = d.coupling.dim, d.correlation
    count = [math.comb(D + deg - 1, deg) for deg in range(corr)]  # N_0 .. N_{c-1}
    rows = sum(count[1:]) + D * count[-1]  # counted, so the rule never builds the suffix plan
    first = d.num_species * d.mul * sum(
        rows * ir.dim * (sum(u.shape[-1] for u in U) + n)
        for (_, ir), U in zip(d.irreps_out, d.U, strict=True))
    second = n * d.mul * sum((c.shape[0] + 1) * c.shape[1] * c.shape[2]
                             for c in monomial_plan(d).coeff)
    return first <= second


def suffix_monomials(p: SuffixPlan, X: np.ndarray) -> list[np.ndarray]:
    """``[P_1, ..., P_{correlation - 1}]`` of :class:`SuffixPlan` for ``X (..., D)``."""
    mono = [X]
    for suf in p.suffix:
        prev = mono[-1]
        mono.append(np.concatenate([X[..., i:i + 1] * prev[..., a:]
                                    for i, a in enumerate(suf)], axis=-1))
    return mono


def run_suffix_numpy(d: SymmetricContractionDescriptor, x: Any, weights: Any,
                     species: Any) -> np.ndarray:
    """:func:`apply` through :func:`suffix_plan` (the backends' weights-first algorithm, in
    NumPy)."""
    x, w, s = check_inputs(d, x, weights, species)
    p = suffix_plan(d)
    X = channels_last(d.irreps_in, x)  # (n, k, D)
    mono = suffix_monomials(p, X) if d.correlation > 1 else []
    low = np.concatenate(mono, axis=-1) if mono else X[..., :0]
    last = mono[-1] if mono else np.ones(X.shape[:-1] + (1,))
    W = split_weights(d, w)
    outs = []
    for i in range(len(d.irreps_out)):
        wi = np.concatenate(W[i], axis=1)[s]  # (n, K, k)
        b = np.einsum("ncp,pMe,nec->ncM", low, p.lower[i], wi)
        b += np.einsum("ncj,ncm,jmMe,nec->ncM", X, last, p.top[i], wi)
        outs.append(b.reshape(len(s), -1))
    return np.concatenate(outs, axis=-1)
