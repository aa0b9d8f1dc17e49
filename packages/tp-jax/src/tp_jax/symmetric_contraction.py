"""MACE's product basis (the symmetric contraction) and its Gaunt variant as pure JAX functions.

The math is :mod:`tp_spec.symmetric_contraction`. :func:`symmetric_contraction` runs one of
the two orders of :mod:`tp_spec.plan.symmetric_contraction`, whichever its
``weights_first(d, n)`` finds has fewer multiply-adds for the ``n`` nodes of the call (a static
shape under ``jit``):

* weights first (``suffix_plan``; few species): each species' weights are contracted into the
  symmetrized ``U``, and every node's monomials are multiplied with every species' result in
  batched GEMMs over the channels, the top degree in Horner's form (``X`` times the product
  with the monomials of one degree less), the species then picked per node;
* coefficients first (``monomial_plan``; many species): the parity-grouped monomials times the
  symmetrized ``U`` in one species-independent GEMM, then each node's species weights.

Both jit with any species mix. Timings of both orders against e3nn-jax:
``packages/tp-jax/scripts/bench_symmetric_contraction.py`` and docs/symmetric_contraction.md.

>>> import tp_spec, jax.numpy as jnp
>>> d = tp_spec.symmetric_contraction("4x0e+4x1o", "4x0e+4x1o", 3, 2)
>>> f = symmetric_contraction(d)
>>> f(jnp.ones((5, 16)), jnp.ones((2, d.weight_numel)), jnp.zeros(5, int)).shape
(5, 16)
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec import InstructionError

_sc = importlib.import_module("tp_spec.symmetric_contraction")
_plans = importlib.import_module("tp_spec.plan.symmetric_contraction")

__all__ = ["gaunt_symmetric_contraction", "symmetric_contraction"]


def _check(d: Any, x: Any, weights: Any, species: Any) -> None:
    """:func:`tp_spec.symmetric_contraction.check_call`; concrete species are range-checked
    too (a traced gather would clamp them silently)."""
    _sc.check_call(d, x, species, weights)
    if not isinstance(species, jax.core.Tracer) and species.size:
        s = np.asarray(species)  # on the host: a concrete array captured by an outer jit too
        _sc.check_species(d, int(s.min()), int(s.max()))


@functools.lru_cache(maxsize=64)
def symmetric_contraction(d: Any) -> Callable:
    """A jitted pure function ``f(x, weights, species)``: MACE's product basis of ``d``.

    ``f`` takes ``x: [n, irreps_in.dim]``, ``weights: [num_species, weight_numel]``,
    ``species: [n]`` ints in ``[0, num_species)`` and returns ``[n, irreps_out.dim]``.

    Args:
        d: a :class:`tp_spec.SymmetricContractionDescriptor`.
    """
    if not isinstance(d, _sc.SymmetricContractionDescriptor):
        raise InstructionError(f"expected a SymmetricContractionDescriptor, got {type(d)}")
    p = _plans.monomial_plan(d)
    k, D = d.mul, d.coupling.dim
    shapes = [list(row) for row in d.weight_shapes]

    @jax.jit
    def run(x, weights, species):
        n = x.shape[0]
        if _plans.weights_first(d, n):  # at trace time: n is static
            return _weights_first_runner(d)(x, weights, species)
        X = x[:, p.in_index].reshape(n, k, D)
        full = [X, X]
        for deg in range(2, d.correlation):
            full.append(full[deg - 1][..., p.prefix[deg]] * X[..., p.last[deg]])
        P = [
            jnp.concatenate([X[..., last] if deg == 1 else full[deg - 1][..., pre] * X[..., last]
                             for deg, pre, last in pieces], axis=-1)
            for pieces in p.groups
        ]
        outs, start = [], 0
        for i, (g, lo, hi) in enumerate(p.outputs):
            K = sum(s[1] for s in shapes[i])
            w = weights[:, start : start + K * k].reshape(d.num_species, K, k)
            start += K * k
            M = p.coeff[i].shape[1]
            if hi == lo or K == 0:
                outs.append(jnp.zeros((n, k, M), x.dtype))
                continue
            coeff = jnp.asarray(p.coeff[i], x.dtype)  # (p, M, K)
            t = jnp.einsum("nkp,pMe->nkMe", P[g][..., lo:hi], coeff)
            outs.append(jnp.einsum("nkMe,nek->nkM", t, w[species]))
        return jnp.concatenate([o.reshape(n, -1) for o in outs], axis=1)

    def f(x, weights, species):
        x, weights, species = jnp.asarray(x), jnp.asarray(weights), jnp.asarray(species)
        _check(d, x, weights, species)
        return run(x, weights, species)

    return f


@functools.lru_cache(maxsize=64)
def _weights_first_runner(d: Any) -> Callable:
    """``(x, weights, species) -> out`` through the ``suffix_plan`` of
    :mod:`tp_spec.plan.symmetric_contraction`, channels first and nodes last (``X (k, D, n)``:
    every product a batched GEMM over channels, every monomial block a contiguous run): each
    output's coefficients contracted with the weights per species, the lower degrees as one
    product with their monomials, the top degree as ``X`` times one product with the
    monomials of one degree less, the species picked per node."""
    p = _plans.suffix_plan(d)
    k, S, D = d.mul, d.num_species, d.coupling.dim
    sizes = [sum(K * kk for _, K, kk in row) for row in d.weight_shapes]
    out_dims = [ir.dim for _, ir in d.irreps_out]
    q = S * sum(out_dims)

    def run(x, weights, species):
        n, dt = x.shape[0], x.dtype
        X = jnp.concatenate([x[:, sl].reshape(n, mul, ir.dim)
                             for sl, (mul, ir) in zip(d.irreps_in.slices(), d.irreps_in,
                                                      strict=True)], axis=-1)
        X = jnp.transpose(X, (1, 2, 0))  # (k, D, n)
        mono = [X]
        for suf in p.suffix:
            prev = mono[-1]
            mono.append(jnp.concatenate([X[:, i:i + 1] * prev[:, int(a):]
                                         for i, a in enumerate(suf)], axis=1))
        last = mono[-1] if d.correlation > 1 else jnp.ones((k, 1, n), dt)
        ws = [w.reshape(S, -1, k)
              for w in jnp.split(weights, np.cumsum(sizes)[:-1].tolist(), axis=1)]
        # (k, D * S * sum M, N_{c-1}): the top degree's coefficients times the weights
        top = jnp.concatenate([jnp.einsum("jmMe,zek->kjzMm", jnp.asarray(c, dt), w)
                               for c, w in zip(p.top, ws, strict=True)], axis=3)
        u = jnp.einsum("kqm,kmn->kqn", top.reshape(k, D * q, p.num_top), last)
        y = jnp.einsum("kjqn,kjn->kqn", u.reshape(k, D, q, n), X)  # (k, S * sum M, n)
        if d.correlation > 1:
            low = jnp.concatenate(mono, axis=1) if len(mono) > 1 else X
            lw = jnp.concatenate([jnp.einsum("pMe,zek->kzMp", jnp.asarray(c, dt), w)
                                  for c, w in zip(p.lower, ws, strict=True)], axis=2)
            y = y + jnp.einsum("kqp,kpn->kqn", lw.reshape(k, q, p.num_low), low)
        if S > 1:
            y = jnp.einsum("kzqn,nz->kqn", y.reshape(k, S, q // S, n),
                           jax.nn.one_hot(species, S, dtype=dt))
        y = jnp.transpose(y, (2, 0, 1))  # (n, k, sum M)
        outs = jnp.split(y, np.cumsum(out_dims)[:-1].tolist(), axis=2)
        return jnp.concatenate([o.reshape(n, -1) for o in outs], axis=1)

    return run


@functools.lru_cache(maxsize=64)
def gaunt_symmetric_contraction(d: Any) -> Callable:
    """A jitted pure function ``f(x, weights, species)``: the Gaunt symmetric contraction of
    ``d`` (the features on the exact grid, their powers, projected back).

    ``f`` takes ``x: [n, irreps_in.dim]``, ``weights: [num_species, weight_numel]``,
    ``species: [n]`` ints in ``[0, num_species)`` and returns ``[n, irreps_out.dim]``.

    Args:
        d: a :class:`tp_spec.GauntSymmetricContractionDescriptor`.
    """
    if not isinstance(d, _sc.GauntSymmetricContractionDescriptor):
        raise InstructionError(f"expected a GauntSymmetricContractionDescriptor, got {type(d)}")
    k, c, li = d.mul, d.correlation, d.lmax_in
    nc = (li + 1) ** 2
    coeff_index = np.zeros(d.irreps_in.dim, np.int64)
    deg_in = np.zeros(nc, np.int64)
    present = np.zeros(nc)
    for j, (sl, (mul, ir)) in enumerate(zip(d.irreps_in.slices(), d.irreps_in, strict=True)):
        coeff_index[sl] = (np.arange(mul)[:, None] * nc + ir.l**2
                           + np.arange(ir.dim)[None, :]).reshape(-1)
        deg_in[ir.l**2 : (ir.l + 1) ** 2] = j
        present[ir.l**2 : (ir.l + 1) ** 2] = 1.0
    out_cols = np.concatenate([np.arange(ir.l**2, (ir.l + 1) ** 2) for _, ir in d.irreps_out])
    out_irrep = np.concatenate([np.full(ir.dim, i) for i, (_, ir) in enumerate(d.irreps_out)])
    powers = np.arange(1, c + 1).reshape(1, c, 1, 1)
    nu_in = c * len(d.irreps_in) * k

    @jax.jit
    def run(x, weights, species):
        n = x.shape[0]
        u = weights[:, :nu_in].reshape(d.num_species, c, len(d.irreps_in), k)[species]
        v = weights[:, nu_in:].reshape(d.num_species, c, len(d.irreps_out), k)[species]
        A = jnp.zeros((n, k * nc), x.dtype).at[:, coeff_index].set(x).reshape(n, 1, k, nc)
        f = A * jnp.swapaxes(u[:, :, deg_in] * present[:, None].astype(x.dtype), 2, 3)
        vals = (f @ jnp.asarray(d.to_grid.T, x.dtype)) ** powers
        proj = (vals @ jnp.asarray(d.from_grid.T, x.dtype))[..., out_cols]
        b = (proj * jnp.swapaxes(v[:, :, out_irrep], 2, 3)).sum(axis=1)  # (n, k, sum dim)
        outs, start = [], 0
        for _, ir in d.irreps_out:
            outs.append(b[..., start : start + ir.dim].reshape(n, -1))
            start += ir.dim
        return jnp.concatenate(outs, axis=1)

    def f(x, weights, species):
        x, weights, species = jnp.asarray(x), jnp.asarray(weights), jnp.asarray(species)
        _check(d, x, weights, species)
        return run(x, weights, species)

    return f
