"""MACE's product basis (``SymmetricContraction``) and its Gaunt variant as torch modules.

The math is :mod:`tp_spec.symmetric_contraction`. ``SymmetricContraction`` runs its
:func:`~tp_spec.plan.symmetric_contraction.monomial_plan`: the per-species weights are contracted
into the symmetrized ``U`` first (``C[z] (k, monomials, 2L+1)``, independent of the number of
nodes), the symmetric monomials of each channel's features are built once (grouped by parity,
each output reading only its parity's rows), and the nodes, sorted by species, go through one
batched GEMM per species and output. Everything is plain differentiable torch, so double
backward (forces) works.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint
from tp_spec import DTypeError, ShapeError
from tp_spec import fourier as fourier
from tp_spec.mace_basis import weights_from_mace

from ._common import NotScriptable, no_autocast
from ._constants import ConstantTables

_sc = importlib.import_module("tp_spec.symmetric_contraction")
_plans = importlib.import_module("tp_spec.plan.symmetric_contraction")

__all__ = ["GauntSymmetricContraction", "SymmetricContraction"]


def _check(d: Any, x: torch.Tensor, species: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """:func:`tp_spec.symmetric_contraction.check_call` (``weight``: any of the module's weight
    Parameters, for its dtype) and the species range; ``species (n,)`` ints or MACE's one-hot
    ``node_attrs (n, num_species)`` -> ``(n,)`` long."""
    for name, t in (("x", x), ("species", species)):
        if not isinstance(t, torch.Tensor):
            raise DTypeError(f"{name} must be a torch.Tensor, got {type(t)}")
    n, num_species = x.shape[0], d.num_species
    if species.dim() == 2:
        if species.shape != (n, num_species) or not species.is_floating_point():
            raise ShapeError(
                f"node_attrs must be a float one-hot ({n}, {num_species}), got "
                f"{tuple(species.shape)} {species.dtype}"
            )
        binary = ((species == 0) | (species == 1)).all()
        if not bool(binary) or not bool((species.sum(dim=1) == 1).all()):
            raise ShapeError("node_attrs must be one-hot: one 1 per row, zeros elsewhere")
        species = species.argmax(dim=1)
    _sc.check_call(d, x, species, weight_dtype=weight.dtype)
    if species.numel():
        lo, hi = torch.aminmax(species)
        _sc.check_species(d, int(lo), int(hi))
    return species.long()


class SymmetricContraction(NotScriptable, ConstantTables):
    """MACE's ``SymmetricContraction``: ``forward(x (n, irreps_in.dim) mul_ir, species)`` ->
    ``(n, irreps_out.dim)`` mul_ir; ``species`` is ``(n,)`` ints or MACE's one-hot
    ``node_attrs (n, num_species)``.

    ``weights[i][nu - 1]``: Parameter ``(num_species, K, k)`` of output ``i`` and order ``nu``,
    MACE's ``contractions[i].weights_max`` (``nu = correlation``) or
    ``contractions[i].weights[correlation - 1 - nu]``; :meth:`load_mace_weights` copies them.
    ``basis="reduced"``: only the independent paths (:func:`tp_spec.symmetric_contraction`),
    the same functions with fewer weights; MACE's weights still load (mapped).

    Args:
        irreps_in: ``k x (irreps)``, one multiplicity ``k`` for every irrep.
        irreps_out: the output irreps (multiplicity ``k``).
        correlation: the highest order ``nu``.
        num_species: the number of species (weight rows).
        internal_weights: hold the ``weights`` Parameters; if False, call :meth:`contract`.
        basis: ``"mace"`` (MACE's paths and weight shapes) or ``"reduced"``.

    >>> import torch, tp_torch
    >>> sc = tp_torch.SymmetricContraction("4x0e + 4x1o", "4x0e + 4x1o", 3, num_species=2)
    >>> sc(torch.randn(5, 16), torch.tensor([0, 1, 1, 0, 1])).shape
    torch.Size([5, 16])
    """

    def __init__(self, irreps_in: Any, irreps_out: Any, correlation: int,
                 num_species: int, *, internal_weights: bool = True,
                 basis: str = "mace") -> None:
        super().__init__()
        d = _sc.symmetric_contraction(irreps_in, irreps_out, correlation, num_species,
                                      basis=basis)
        self.descriptor = d
        self.irreps_in, self.irreps_out = d.irreps_in, d.irreps_out
        self.num_species, self.correlation = d.num_species, d.correlation
        self.internal_weights = bool(internal_weights)
        self.weights = torch.nn.ModuleList()
        for shapes in d.weight_shapes if self.internal_weights else ():
            row = torch.nn.ParameterList()
            for S, K, k in shapes:
                row.append(torch.nn.Parameter(torch.randn(S, K, k) / max(K, 1)))
            self.weights.append(row)
        p = _plans.monomial_plan(d)
        self._plan = p
        self._m_total = sum(ir.dim for _, ir in d.irreps_out)
        #: monomials x channels x nodes per chunk (float32: 8 MiB at the default)
        self.chunk_elements = 2**21
        #: monomials x channels x nodes kept for backward before chunks are recomputed instead
        #: (float32: 64 MiB at the default)
        self.remat_elements = 2**24
        for deg in range(2, d.correlation):
            self.register_buffer(f"prefix_{deg}", torch.tensor(p.prefix[deg]), persistent=False)
            self.register_buffer(f"last_{deg}", torch.tensor(p.last[deg]), persistent=False)
        for g, pieces in enumerate(p.groups):
            for j, (_, pre, last) in enumerate(pieces):
                self.register_buffer(f"g{g}_pre{j}", torch.tensor(pre), persistent=False)
                self.register_buffer(f"g{g}_last{j}", torch.tensor(last), persistent=False)
        for i, c in enumerate(p.coeff):
            self.add_const(f"coeff{i}", c)

    def _buf(self, name: str) -> torch.Tensor:
        return self.get_buffer(name)

    def flat_weights(self) -> torch.Tensor:
        """The weights as one ``[num_species, weight_numel]`` tensor in tp_spec's layout (for
        :func:`tp_spec.symmetric_contraction.apply`)."""
        S = self.num_species
        return torch.cat([w.reshape(S, -1) for row in self.weights for w in row], dim=1)

    @torch.no_grad()
    def load_mace_weights(self, mace_module: Any) -> None:
        """Copy the weights of MACE's ``SymmetricContraction`` (same irreps, correlation and
        species), mapped exactly onto this basis (:func:`tp_spec.mace_basis.weights_from_mace`)."""
        d = self.descriptor
        u_mace, w_mace = [], []
        for c in mace_module.contractions:
            corr = c.correlation
            u_mace.append([c.U_tensors(nu).detach().cpu().numpy()
                           for nu in range(1, corr + 1)])
            w_mace.append([(c.weights_max if nu == corr else c.weights[corr - 1 - nu])
                           .detach().cpu().double().numpy() for nu in range(1, corr + 1)])
        flat = torch.tensor(weights_from_mace(d, u_mace, w_mace))
        for blk, w in zip(_sc.split_weights(d, flat), self.weights, strict=True):
            for b, p in zip(blk, w, strict=True):
                p.copy_(b)

    def _monomials(self, X: torch.Tensor) -> list[torch.Tensor]:
        """``X (D, k, n)`` -> one ``(monomials, k, n)`` tensor per parity group (row gathers)."""
        full = [X, X]
        for deg in range(2, self.correlation):
            full.append(full[deg - 1].index_select(0, self._buf(f"prefix_{deg}"))
                        * X.index_select(0, self._buf(f"last_{deg}")))
        used = {g for g, lo, hi in self._plan.outputs if hi > lo}
        out: list[torch.Tensor] = []
        for g, pieces in enumerate(self._plan.groups):
            if g not in used:  # a parity no output reads (e.g. only 0e out)
                out.append(X.new_zeros(0))
                continue
            parts = []
            for j, (deg, _, _) in enumerate(pieces):
                last = X.index_select(0, self._buf(f"g{g}_last{j}"))
                if deg > 1:
                    last = full[deg - 1].index_select(0, self._buf(f"g{g}_pre{j}")) * last
                parts.append(last)
            out.append(torch.cat(parts, dim=0))
        return out

    def _chunk(self, X: torch.Tensor, *C: torch.Tensor) -> torch.Tensor:
        """Nodes of one species: ``X (D, k, c)``, ``C[i] (k, M_i, p_i)`` -> ``(k, sum M, c)``."""
        P = self._monomials(X)
        outs = []
        for Ci, (g, lo, hi) in zip(C, self._plan.outputs, strict=True):
            if hi == lo:
                outs.append(X.new_zeros(X.shape[1], Ci.shape[1], X.shape[2]))
                continue
            Pg = P[g] if (lo, hi) == (0, P[g].shape[0]) else P[g][lo:hi]
            outs.append(torch.bmm(Ci, Pg.transpose(0, 1)))
        return torch.cat(outs, dim=1)

    @no_autocast
    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """``x (n, irreps_in.dim)``, ``species (n,)`` ints or ``(n, num_species)`` one-hot ->
        ``(n, irreps_out.dim)``."""
        if not self.internal_weights:
            raise ShapeError("this module has no internal weights: call contract(x, species, "
                             "weights)")
        return self.contract(x, species, [list(row) for row in self.weights])

    def contract(self, x: torch.Tensor, species: torch.Tensor,
                 weights: list[list[torch.Tensor]]) -> torch.Tensor:
        """:meth:`forward` with the given ``weights[i][nu - 1]`` ``(num_species, K, k)`` (the
        layout of :attr:`weights`: ``descriptor.weight_shapes``)."""
        shapes = [[tuple(w.shape) for w in row] for row in weights]
        if shapes != [list(row) for row in self.descriptor.weight_shapes]:
            raise ShapeError(f"weights: expected shapes {self.descriptor.weight_shapes}, got "
                             f"{shapes}")
        z = _check(self.descriptor, x, species, weights[0][0])
        n, k = x.shape[0], self.descriptor.mul
        order = torch.argsort(z, stable=True)
        counts = torch.bincount(z, minlength=self.num_species).tolist()
        xs = x.index_select(0, order)
        X = torch.cat(
            [xs[:, sl].reshape(n, k, ir.dim).permute(2, 1, 0)
             for sl, (_, ir) in zip(self.irreps_in.slices(), self.irreps_in, strict=True)],
            dim=0,
        )  # (D, k, n): nodes sorted by species
        Cs = []  # per output: the species' weights contracted into U, (k, M, p) per species
        for i in range(len(self._plan.outputs)):
            w = torch.cat(list(weights[i]), dim=1)
            Cs.append(torch.einsum("pMe,zec->zcMp", self.const(f"coeff{i}", x.dtype), w).unbind(0))
        # chunks of nodes of one species, small enough to stay in cache
        rows = sum(len(pre) for pieces in self._plan.groups for _, pre, _ in pieces)
        step = max(1, self.chunk_elements // max(1, rows * k))
        sizes, owner = [], []
        for sp, c in enumerate(counts):
            for a in range(0, c, step):
                sizes.append(min(step, c - a))
                owner.append(sp)
        # keeping every chunk's monomials for backward costs rows * k * n elements: above
        # remat_elements each chunk is recomputed in backward instead (checkpoint)
        remat = torch.is_grad_enabled() and rows * k * n > self.remat_elements
        parts = []
        for Xc, sp in zip(torch.split(X, sizes, dim=2), owner, strict=True):
            Csp = [C[sp] for C in Cs]
            if remat:
                parts.append(checkpoint(self._chunk, Xc, *Csp, use_reentrant=False))
            else:
                parts.append(self._chunk(Xc, *Csp))
        out = torch.cat(parts, dim=2) if parts else x.new_zeros(k, self._m_total, 0)
        outs, start = [], 0
        for _, ir in self.irreps_out:
            outs.append(out[:, start : start + ir.dim].permute(2, 0, 1).reshape(n, k * ir.dim))
            start += ir.dim
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n, device=order.device)
        return torch.cat(outs, dim=1).index_select(0, inverse)


class GauntSymmetricContraction(NotScriptable, ConstantTables):
    """The Gaunt variant (:mod:`tp_spec.symmetric_contraction`): ``forward(x (n, dim_in),
    species)`` -> ``(n, dim_out)``; Parameters ``u (num_species, correlation, len(irreps_in),
    k)`` and ``v (num_species, correlation, len(irreps_out), k)``.

    ``method``: how the powers ``f**nu`` of each channel's function are computed, both exact:

    * ``"grid"``: values on the descriptor's Gauss-Legendre sphere grid, raised pointwise,
      projected back by quadrature;
    * ``"fourier"``: 2D Fourier series on the torus (:mod:`tp_spec.fourier`): the
      coefficients of ``f`` zero-padded to ``(2 nu L + 1)**2``, a 2D FFT, the ``nu``-th power,
      the inverse FFT (a ``nu``-fold linear convolution) and the exact projection back.
    """

    METHODS = ("grid", "fourier")

    def __init__(self, irreps_in: Any, irreps_out: Any, correlation: int,
                 num_species: int, *, method: str = "grid") -> None:
        super().__init__()
        if method not in self.METHODS:
            raise ShapeError(f"method must be one of {self.METHODS}, got {method!r}")
        self.method = method
        d = _sc.gaunt_symmetric_contraction(irreps_in, irreps_out, correlation, num_species)
        self.descriptor = d
        self.irreps_in, self.irreps_out = d.irreps_in, d.irreps_out
        self.num_species, self.correlation = d.num_species, d.correlation
        S, c, k = d.num_species, d.correlation, d.mul
        self.u = torch.nn.Parameter(torch.randn(S, c, len(d.irreps_in), k))
        self.v = torch.nn.Parameter(torch.randn(S, c, len(d.irreps_out), k))
        # f coefficients (degree-ordered) from x: x_block j scattered to degree l_j's slot
        li = d.lmax_in
        coeff_index = np.zeros(d.irreps_in.dim, np.int64)
        for sl, (mul, ir) in zip(d.irreps_in.slices(), d.irreps_in, strict=True):
            coeff_index[sl] = (np.arange(mul)[:, None] * (li + 1) ** 2 + ir.l**2
                               + np.arange(ir.dim)[None, :]).reshape(-1)
        self.register_buffer("coeff_index", torch.tensor(coeff_index), persistent=False)
        deg_in = np.zeros((li + 1) ** 2, np.int64)  # input irrep j of each coefficient
        for j, (_, ir) in enumerate(d.irreps_in):
            deg_in[ir.l**2 : (ir.l + 1) ** 2] = j
        present = np.zeros((li + 1) ** 2, bool)
        for _, ir in d.irreps_in:
            present[ir.l**2 : (ir.l + 1) ** 2] = True
        self.register_buffer("deg_in", torch.tensor(deg_in), persistent=False)
        self.register_buffer("present", torch.tensor(present), persistent=False)
        out_cols, out_irrep = [], []
        for i, (_, ir) in enumerate(d.irreps_out):
            out_cols.append(np.arange(ir.l**2, (ir.l + 1) ** 2))
            out_irrep.append(np.full(ir.dim, i))
        self.register_buffer("out_cols", torch.tensor(np.concatenate(out_cols)),
                             persistent=False)
        self.register_buffer("out_irrep", torch.tensor(np.concatenate(out_irrep)),
                             persistent=False)
        self.register_buffer("powers", torch.arange(1, c + 1).view(1, c, 1, 1), persistent=False)
        if method == "grid":
            self.add_const("to_grid", d.to_grid.T)
            self.add_const("from_grid", d.from_grid.T)
        else:  # complex tables as real and imaginary parts (module casts keep them exact)
            cols = np.concatenate(out_cols)
            to_f = fourier.sh_to_fourier(li).to_dense()  # (nc, 2L+1, 2L+1)
            self.add_const("to_fourier_re", to_f.real)
            self.add_const("to_fourier_im", to_f.imag)
            for nu in range(1, c + 1):
                proj = fourier.fourier_to_sh(d.lmax_out, nu * li).to_dense()[cols]
                self.add_const(f"from_fourier{nu}_re", proj.real)
                self.add_const(f"from_fourier{nu}_im", proj.imag)

    def flat_weights(self) -> torch.Tensor:
        """The weights ``u``, ``v`` as one ``[num_species, weight_numel]`` tensor in tp_spec's
        layout (for :func:`tp_spec.symmetric_contraction.gaunt_apply`)."""
        S = self.num_species
        return torch.cat([self.u.reshape(S, -1), self.v.reshape(S, -1)], dim=1)

    @no_autocast
    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """``x [n, irreps_in.dim]``, ``species [n]`` ints or ``[n, num_species]`` one-hot ->
        ``[n, irreps_out.dim]``."""
        d = self.descriptor
        z = _check(d, x, species, self.u)
        n, k = x.shape[0], d.mul
        nc = (d.lmax_in + 1) ** 2
        A = x.new_zeros(n, k * nc).index_copy(1, self.coeff_index, x).view(n, 1, k, nc)
        u = self.u.index_select(0, z)  # (n, c, J, k)
        f = A * (u.index_select(2, self.deg_in) * self.present[:, None]).transpose(2, 3)
        if self.method == "grid":
            vals = (f @ self.const("to_grid", x.dtype)) ** self.powers  # (n, c, k, P)
            proj = (vals @ self.const("from_grid", x.dtype)).index_select(3, self.out_cols)
        else:
            proj = self._fourier_powers(f)  # (n, c, k, dim_L)
        v = self.v.index_select(0, z).index_select(2, self.out_irrep)  # (n, c, dim_L, k)
        b = (proj * v.transpose(2, 3)).sum(dim=1)  # (n, k, sum dim L)
        outs, start = [], 0
        for _, ir in d.irreps_out:
            outs.append(b[..., start : start + ir.dim].reshape(n, -1))
            start += ir.dim
        return torch.cat(outs, dim=1)

    def _complex(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.complex(self.const(f"{name}_re", dtype), self.const(f"{name}_im", dtype))

    def _fourier_powers(self, f: torch.Tensor) -> torch.Tensor:
        """``f (n, c, k, (lmax_in+1)**2)`` -> the projections of ``f[:, nu-1]**nu`` onto the
        output degrees, ``(n, c, k, dim_L)``, through 2D Fourier series."""
        li = self.descriptor.lmax_in
        to_f = self._complex("to_fourier", f.dtype)
        out = []
        for nu in range(1, self.correlation + 1):
            F = torch.einsum("nks,suv->nkuv", f[:, nu - 1].to(to_f.dtype), to_f)
            size = 2 * nu * li + 1  # the nu-fold convolution fits without wrapping
            G = torch.fft.ifft2(torch.fft.fft2(F, s=(size, size)) ** nu)
            proj = self._complex(f"from_fourier{nu}", f.dtype)  # (dim_L, size, size)
            out.append(torch.einsum("nkuv,suv->nks", G, proj).real)
        return torch.stack(out, dim=1)
