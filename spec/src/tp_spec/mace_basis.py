"""MACE's product basis in terms of :mod:`tp_spec.symmetric_contraction`'s: exact maps of
MACE's weights (mace-torch's ``U_matrix_{nu}`` buffers, in either of its bases) onto
:class:`~tp_spec.symmetric_contraction.SymmetricContractionDescriptor`'s.

MACE pins e3nn 0.4.4, whose Wigner 3j differ in sign from :func:`tp_spec.clebsch_gordan` for
some triples, and it can use a reduced (cuEquivariance) basis; a least-squares map checked to
reproduce MACE's ``U`` covers both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InstructionError, ShapeError
from .symmetric_basis import symmetrized
from .symmetric_contraction import SymmetricContractionDescriptor

__all__ = ["mace_basis_maps", "weights_from_mace"]


def mace_basis_maps(d: SymmetricContractionDescriptor, u_mace: Any) -> list[list[np.ndarray]]:
    """Per output ``i`` and order ``nu``, the matrix ``t (K, K')`` with ``d.U[i][nu - 1] @ t ==
    u_mace[i][nu - 1]`` (MACE's ``U_matrix_{nu}`` buffers, ``(2L+1, D, ..., D, K')``, no
    ``M`` axis for ``L = 0``; for ``d.basis == "reduced"`` in their symmetric parts,
    :func:`tp_spec.symmetric_basis.symmetrized`): MACE's weights ``w (num_species, K', k)``
    are ``t @ w`` in this basis.

    InstructionError if a MACE basis is not in the span of ``d.U`` (not the same product basis;
    checked to 1e-5: MACE's ``U`` can be float32-accurate even in a float64 model, e.g. its
    cuEquivariance basis built after a float32 model in the same process).
    """
    maps = []
    for i, (_, ir) in enumerate(d.irreps_out):
        row = []
        for nu in range(1, d.correlation + 1):
            u = d.U[i][nu - 1]
            um = np.asarray(u_mace[i][nu - 1])
            atol = 1e-5  # a wrong basis misses by O(1); MACE's U may be float32-accurate
            um = um.astype(np.float64)
            um = um.reshape(u.shape[:-1] + (um.shape[-1],))
            rows = math.prod(u.shape[:-1])
            if d.basis == "reduced":  # only the symmetric parts are contracted
                u, um = symmetrized(u), symmetrized(um)
            # MACE's basis: the same paths up to sign, so the map is a signed identity
            a, b = u.reshape(rows, u.shape[-1]), um.reshape(rows, um.shape[-1])
            t = np.linalg.pinv(a) @ b if a.shape[1] else np.zeros((0, b.shape[1]))
            if not np.allclose(a @ t, b, rtol=0, atol=atol):
                raise InstructionError(
                    f"MACE's U for output {ir}, nu={nu} is not in the span of this basis"
                )
            row.append(t)
        maps.append(row)
    return maps


def weights_from_mace(d: SymmetricContractionDescriptor, u_mace: Any, w_mace: Any) -> np.ndarray:
    """Weights of ``d`` that compute what MACE computes with ``u_mace[i][nu - 1]`` (its
    ``U_matrix_{nu}`` buffers, see :func:`mace_basis_maps`) and ``w_mace[i][nu - 1]``
    (``(num_species, K', k)``) -> ``(num_species, weight_numel)``.
    """
    blocks = []
    maps = mace_basis_maps(d, u_mace)
    for i, (_, ir) in enumerate(d.irreps_out):
        for nu in range(1, d.correlation + 1):
            t = maps[i][nu - 1]
            wm = np.asarray(w_mace[i][nu - 1], dtype=np.float64)
            if wm.shape != (d.num_species, t.shape[1], d.mul):
                raise ShapeError(
                    f"MACE weights for output {ir}, nu={nu}: expected "
                    f"{(d.num_species, t.shape[1], d.mul)}, got {wm.shape}"
                )
            blocks.append(np.einsum("pq,sqk->spk", t, wm).reshape(d.num_species, -1))
    return np.concatenate(blocks, axis=1)
