"""``oeq``: adapter to OpenEquivariance (GPU only; UNTESTED here: no GPU on the dev machines).

Written from OpenEquivariance's documented API: ``oeq.TPProblem(irreps_in1, irreps_in2,
irreps_out, instructions, irrep_normalization=..., path_normalization=..., shared_weights=...,
internal_weights=False, irrep_dtype=..., weight_dtype=...)`` and
``oeq.TensorProduct(problem, torch_op=True)``, called as ``tp(x1, x2, W)`` with weights in
OpenEquivariance's order (``tp.reorder_weights_from_e3nn``); for the convolution
``oeq.TensorProductConv(problem, deterministic=True, torch_op=True)`` called as
``conv(X, Y, W, rows, cols, sender_perm)``.

Our path coefficients are passed exactly as e3nn ``path_weight = coefficient**2`` under
``irrep_normalization="none"`` / ``path_normalization="none"`` (e3nn's factor is then
``sqrt(path_weight)``). Supported: all paths weighted, one mode ``uvu`` or ``uvw``, positive
coefficients. Availability needs ``torch.cuda.is_available()`` and an importable
``openequivariance``; ``import tp_torch`` never imports it.
"""

from __future__ import annotations

import importlib.util

import torch

from ._common import Kernel

__all__ = ["CGTPOeq", "oeq_unsupported_reason"]


def oeq_unsupported_reason(d, device: str = "cpu") -> str | None:
    """Why ``oeq`` cannot run ``d`` on ``device`` (None if it can)."""
    if getattr(d, "kind", None) != "cgtp":
        return "the oeq adapter runs CGTP descriptors only"
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return "needs CUDA and openequivariance"
    if importlib.util.find_spec("openequivariance") is None:
        return "needs CUDA and openequivariance (pip install 'tp-torch[oeq]')"
    if not d.paths:
        return "oeq: descriptor has no paths"
    modes = {p.mode for p in d.paths}
    if len(modes) != 1 or not modes <= {"uvu", "uvw"}:
        return f"oeq supports a single mode 'uvu' or 'uvw', got {sorted(modes)}"
    if not all(p.has_weight for p in d.paths):
        return "oeq needs every path weighted"
    if any(p.coefficient <= 0 for p in d.paths):
        return "oeq adapter needs positive path coefficients (they enter as sqrt(path_weight))"
    return None


class CGTPOeq(Kernel):
    """``oeq``: one ``oeq.TensorProduct`` per (descriptor, dtype, shared-weights) combination."""

    def __init__(self, d, device: str | torch.device = "cuda") -> None:
        super().__init__()
        import openequivariance  # noqa: F401  (fail early if it does not import)

        self.d = d
        self._device = torch.device(device)
        self._cache: dict[tuple[object, ...], torch.nn.Module] = {}

    def _problem(self, dtype: torch.dtype, shared: bool):
        import numpy as np
        import openequivariance as oeq

        d = self.d
        instructions = [(p.i_in1, p.i_in2, p.i_out, p.mode, True, p.coefficient ** 2)
                        for p in d.paths]
        npdt = np.float64 if dtype == torch.float64 else np.float32
        return oeq.TPProblem(
            str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out), instructions,
            irrep_normalization="none", path_normalization="none",
            shared_weights=shared, internal_weights=False,
            irrep_dtype=npdt, weight_dtype=npdt,
        )

    def _tp(self, dtype: torch.dtype, shared: bool):
        key = (dtype, shared)
        if key not in self._cache:
            import openequivariance as oeq

            self._cache[key] = oeq.TensorProduct(self._problem(dtype, shared), torch_op=True)
        return self._cache[key]

    def _conv(self, dtype: torch.dtype, shared: bool):
        key = ("conv", dtype, shared)
        if key not in self._cache:
            import openequivariance as oeq

            self._cache[key] = oeq.TensorProductConv(self._problem(dtype, shared),
                                                     deterministic=True, torch_op=True)
        return self._cache[key]

    def conv(self, x_nodes: torch.Tensor, x_edges: torch.Tensor, w: torch.Tensor,
             senders: torch.Tensor, receivers: torch.Tensor) -> torch.Tensor:
        """The convolution (:class:`tp_torch.TensorProductConv`) through OpenEquivariance's
        deterministic ``TensorProductConv``: ``z_i = sum over edges (i <- j, e) of
        W_e (x_j (x) y_e)`` with ``rows`` the receivers and ``cols`` the senders, the edges
        sorted by (receiver, sender) and ``sender_perm`` ordering those by (sender, receiver)."""
        shared = w.dim() == 1
        n_nodes = x_nodes.shape[0]
        if x_edges.shape[0] == 0:
            return x_nodes.new_zeros((n_nodes, self.d.irreps_out.dim)) + 0.0 * w.sum()
        r, s = receivers.long(), senders.long()
        perm = torch.argsort(r * n_nodes + s, stable=True)
        rows, cols = r[perm].contiguous(), s[perm].contiguous()
        sender_perm = torch.argsort(cols * n_nodes + rows, stable=True)
        tp = self._conv(x_nodes.dtype, shared)
        wr = tp.reorder_weights_from_e3nn(w if shared else w[perm], has_batch_dim=not shared)
        return tp(x_nodes.contiguous(), x_edges[perm].contiguous(), wr.contiguous(), rows,
                  cols, sender_perm)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        shared = w.dim() == 1
        tp = self._tp(x1.dtype, shared)
        if x1.shape[0] == 0:
            return x1.new_zeros((0, self.d.irreps_out.dim)) + 0.0 * w.sum()
        wr = tp.reorder_weights_from_e3nn(w, has_batch_dim=not shared)
        return tp(x1.contiguous(), x2.contiguous(), wr.contiguous())
