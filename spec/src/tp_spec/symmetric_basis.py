"""The part of a product basis a symmetric contraction sees, and its independent paths.

A path ``u (M, D, ..., D)`` of MACE's product basis is contracted with ``nu`` copies of the
same vector, so only its part symmetric in the ``D`` axes counts; MACE's paths are not
linearly independent in that part (e.g. 159 paths, 49 independent, per channel for
``k x (0e+1o+2e+3o) -> k x (0e+1o+2e)`` at correlation 3).

>>> import numpy as np
>>> u = np.zeros((1, 2, 2, 3)); u[0, 0, 1, 0] = 1; u[0, 1, 0, 1] = 1; u[0, 0, 0, 2] = 1
>>> independent_paths(u).tolist()  # paths 0 and 1 are the same symmetric tensor
[0, 2]
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["independent_paths", "symmetrized"]


def symmetrized(u: np.ndarray) -> np.ndarray:
    """``u (M, D, ..., D, K)`` (``nu`` axes ``D``) averaged over the permutations of its ``D``
    axes: the part the contraction with ``nu`` copies of one vector sees."""
    nu = u.ndim - 2
    perms = list(itertools.permutations(range(1, nu + 1)))
    return sum(np.transpose(u, (0, *q, nu + 1)) for q in perms) / len(perms)


def independent_paths(u: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    """Indices of the paths of ``u (M, D, ..., D, K)`` kept by a greedy pass in path order:
    a path is kept if its symmetrized part is not (to ``rtol`` times the largest path's norm)
    a combination of the symmetrized parts of the paths kept before it. Deterministic (no
    SVD basis choice)."""
    cols = symmetrized(u).reshape(-1, u.shape[-1]) if u.shape[-1] else np.zeros((1, 0))
    q = np.zeros((cols.shape[0], 0))
    keep = []
    # relative to the largest path: a path whose symmetric part is rounding noise is not new
    scale = np.linalg.norm(cols, axis=0).max(initial=0.0)
    for j in range(cols.shape[1]):
        c = cols[:, j]
        r = c - q @ (q.T @ c)
        r = r - q @ (q.T @ r)  # twice: orthogonal to float64 rounding
        if np.linalg.norm(r) > rtol * scale:
            q = np.concatenate([q, (r / np.linalg.norm(r))[:, None]], axis=1)
            keep.append(j)
    return np.asarray(keep, dtype=np.int64)
