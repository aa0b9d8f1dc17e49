"""Matrix tensor product kernels: ``dense`` and ``sparse`` (``tp_spec.mtp``).

Each channel of an input is split by parity into an even and an odd ``n x n`` matrix
``X = sum x_lm B^(l)_m``; the products ``Z_e = X1e X2e + X1o X2o``, ``Z_o = X1e X2o + X1o X2e``
are read out as ``z_lm = sqrt(n) <B^(l)_m, Z>_F``.

* ``dense``: the change of basis is one dense matmul with the ``((L+1)^2, n^2)`` basis matrix
  (only the degrees present), ``O(L^4)`` per channel.
* ``sparse``: the change of basis per order ``m``: ``B^(l)_m`` for all ``l`` share a small
  support ``S_m`` of matrix entries (``|S_m| = O(n)``), so the embedding is one small dense
  matmul per ``m`` onto ``S_m`` followed by one ``index_add`` (``O(L^3)`` per channel), and the
  read-out gathers ``S_m`` and applies the transposed blocks.
"""

from __future__ import annotations

import numpy as np
import torch
from tp_spec.mtp import mtp_basis

from ._gtp import ChannelFunctionKernel
from ._layout import class_index

__all__ = ["MTPDense", "MTPSparse"]


def _parity(ir) -> int:
    return ir.p


def _basis_matrix(lt: int, lmax: int) -> np.ndarray:
    """``E[l*l + l + m, a*n + b] = B^(l)_m[a, b]`` for ``l <= lmax``: ``((lmax+1)^2, n^2)``."""
    n = 2 * lt + 1
    e = np.zeros(((lmax + 1) ** 2, n * n))
    for l in range(lmax + 1):
        b = mtp_basis(lt, l)  # (n, n, 2l+1)
        e[l * l:(l + 1) ** 2] = b.reshape(n * n, 2 * l + 1).T
    return e


class _MTPBase(ChannelFunctionKernel):
    def __init__(self, d) -> None:
        super().__init__(d, _parity)
        self.n = d.n
        self.active = bool(self.pairs)
        if not self.active:
            return
        self.add_index("g1", class_index(d.irreps_in1, self.cls1, _parity, self.L1, self.C)
                       .reshape(-1))
        self.add_index("g2", class_index(d.irreps_in2, self.cls2, _parity, self.L2, self.C2)
                       .reshape(-1))
        Lo = self.Lo
        nrow = len(self.clso) * self.C * (Lo + 1) ** 2
        go = np.full(d.irreps_out.dim, nrow, dtype=np.int64)
        for (mul, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
            if ir.p not in self.clso:
                continue
            k = self.clso.index(ir.p)
            for c in range(mul):
                base = (k * self.C + c) * (Lo + 1) ** 2 + ir.l * ir.l
                go[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = base + np.arange(ir.dim)
        self.add_index("go", go)
        self.needs_zero_row = bool((go == nrow).any())

    def _coeff(self, x: torch.Tensor, g: torch.Tensor, L: int) -> torch.Tensor:
        xp = torch.cat([x, x.new_zeros((x.shape[0], 1))], dim=1)
        return xp.index_select(1, g).reshape(-1, (L + 1) ** 2)  # (B*ncls*ch, (L+1)^2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        b = x1.shape[0]
        if not self.active:
            return x1.new_zeros((b, self.d.irreps_out.dim))
        x1, x2 = self.weighted_inputs(x1, x2, w)
        n = self.n
        m1 = self.embed(self._coeff(x1, self.g1, self.L1), 1).reshape(
            b, len(self.cls1), self.C, n, n)
        m2 = self.embed(self._coeff(x2, self.g2, self.L2), 2).reshape(
            b, len(self.cls2), self.C2, n, n)
        prods: list[torch.Tensor | None] = [None] * len(self.clso)
        for k1, k2, ko in self.pairs:
            p = torch.matmul(m1[:, k1], m2[:, k2])  # one x2 channel broadcasts
            prods[ko] = p if prods[ko] is None else prods[ko] + p
        z = torch.stack(prods, dim=1).reshape(-1, n * n)
        z = self.readout(z).reshape(
            b, len(self.clso) * self.C * (self.Lo + 1) ** 2)  # (B, ncls_o*C*(Lo+1)^2)
        if self.needs_zero_row:
            z = torch.cat([z, z.new_zeros((b, 1))], dim=1)
        return self.weighted_output(z.index_select(1, self.go), w)


class MTPDense(_MTPBase):
    """``dense``: dense change of basis."""

    def __init__(self, d) -> None:
        super().__init__(d)
        if not self.active:
            return
        self.add_const("e1", _basis_matrix(d.lt, self.L1))
        self.add_const("e2", _basis_matrix(d.lt, self.L2))
        self.add_const("eo", d.scale * _basis_matrix(d.lt, self.Lo).T.copy())

    def embed(self, coeff: torch.Tensor, which: int) -> torch.Tensor:
        return coeff @ self.const(f"e{which}", coeff.dtype)

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.const("eo", z.dtype)


class MTPSparse(_MTPBase):
    """``sparse``: per-order change of basis on the small supports ``S_m``."""

    def __init__(self, d) -> None:
        super().__init__(d)
        if not self.active:
            return
        for name, L in (("1", self.L1), ("2", self.L2), ("o", self.Lo)):
            e = _basis_matrix(d.lt, L)
            if name == "o":
                e = d.scale * e
            groups = []
            for m in range(-L, L + 1):
                rows = np.array([l * l + l + m for l in range(abs(m), L + 1)])
                cols = np.nonzero(np.any(e[rows] != 0, axis=0))[0]
                k = len(groups)
                self.add_index(f"r{name}_{k}", rows)
                self.add_index(f"c{name}_{k}", cols)
                self.add_const(f"e{name}_{k}", e[np.ix_(rows, cols)])
                groups.append((rows, cols))
            setattr(self, f"_ng{name}", len(groups))
            self.add_index(f"cols{name}", np.concatenate([c for _, c in groups]))
            # read-out: concatenated per-m results back to (l, m) order
            order = np.concatenate([r for r, _ in groups])
            inv = np.empty_like(order)
            inv[order] = np.arange(len(order))
            self.add_index(f"inv{name}", inv)

    def embed(self, coeff: torch.Tensor, which: int) -> torch.Tensor:
        name = str(which)
        parts = []
        for k in range(getattr(self, f"_ng{name}")):
            rows = getattr(self, f"r{name}_{k}")
            parts.append(coeff.index_select(1, rows) @ self.const(f"e{name}_{k}", coeff.dtype))
        vals = torch.cat(parts, dim=1)
        return coeff.new_zeros((coeff.shape[0], self.n * self.n)).index_add(
            1, getattr(self, f"cols{name}"), vals)

    def readout(self, z: torch.Tensor) -> torch.Tensor:
        parts = []
        for k in range(self._ngo):
            cols = getattr(self, f"co_{k}")
            parts.append(z.index_select(1, cols) @ self.const(f"eo_{k}", z.dtype).t())
        return torch.cat(parts, dim=1).index_select(1, self.invo)
