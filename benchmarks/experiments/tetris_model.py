"""The tetris shapes and a small equivariant message-passing classifier built on tp_torch.

The eight shapes are e3nn's tetris example: 4-point polycubes, two of them (``chiral_1``,
``chiral_2``) mirror images of each other (``y -> -y``). A point's neighbours are the points at
distance 1; the edge features are their directions' spherical harmonics.

The network (:class:`TetrisNet`) runs ``layers`` blocks of

    messages = TensorProductConv(h, Y(edge), w) / sqrt(mean degree)
    h = gate(Linear(messages) + Linear(h))

on hidden irreps ``C x (0e + 0o + 1o + 1e + ... + lmax)``, one tensor product family per
network (every conv has ``irreps_in1 = irreps_out = hidden``, ``irreps_in2 = 0e + 1o + ...``).
The sum over a shape's points goes through a Linear to ``0o + 7x0e``: seven class scores
``s`` (``s[0]`` for the chiral pair) and a pseudoscalar ``p``, giving the 8 logits
``(s0 + p, s0 - p, s1, ..., s6)``. A product without odd ``l1 + l2 + l3`` paths (the Gaunt
product) keeps every odd-class block (``0o, 1e, 2o``) at zero, so its ``p`` is zero and the
chiral pair gets identical logits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import tp_spec
import tp_torch
from tp_spec import Irreps, ShapeError

__all__ = ["MIRROR_PAIR", "SHAPE_NAMES", "SHAPES", "TetrisNet", "build_descriptor", "graph"]

#: e3nn's tetris shapes, ``(8, 4, 3)`` integer coordinates.
SHAPES = np.array([
    [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)],   # chiral_1
    [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)],  # chiral_2: chiral_1 with y -> -y
    [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)],   # square
    [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)],   # line
    [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)],   # corner
    [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)],   # L
    [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)],   # T
    [(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)],   # zigzag
], dtype=np.float64)
SHAPE_NAMES = ("chiral_1", "chiral_2", "square", "line", "corner", "L", "T", "zigzag")
#: the indices of the mirror-image pair
MIRROR_PAIR = (0, 1)
#: points at most this far apart are neighbours (the cube edge is 1)
NEIGHBOUR_RADIUS = 1.1


def graph(positions: np.ndarray, lmax: int) -> dict[str, Any]:
    """Neighbour graph of shapes ``positions (S, P, 3)``: ``senders``, ``receivers``
    ``(E,)`` int64 into the ``S * P`` points, ``sh (E, (lmax + 1)**2)`` float64 spherical
    harmonics (component normalization) of ``x[sender] - x[receiver]``, ``shape_of (S * P,)``
    and ``mean_degree``."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ShapeError(f"positions must be (shapes, points, 3), got {pos.shape}")
    n_shapes, n_points, _ = pos.shape
    flat = pos.reshape(-1, 3)
    shape_of = np.repeat(np.arange(n_shapes), n_points)
    diff = flat[None, :, :] - flat[:, None, :]          # diff[r, s] = x[s] - x[r]
    dist = np.linalg.norm(diff, axis=-1)
    near = (dist < NEIGHBOUR_RADIUS) & (shape_of[:, None] == shape_of[None, :])
    np.fill_diagonal(near, False)
    receivers, senders = np.nonzero(near)
    sh = tp_spec.spherical_harmonics(lmax, diff[receivers, senders], normalization="component")
    return {"senders": senders.astype(np.int64), "receivers": receivers.astype(np.int64),
            "sh": sh, "shape_of": shape_of.astype(np.int64),
            "mean_degree": len(senders) / len(flat)}


def hidden_irreps(channels: int, lmax: int) -> Irreps:
    """``C x (0e + 0o + 1o + 1e + ... )`` up to ``lmax``: every irrep once, both parities."""
    parts = []
    for l in range(lmax + 1):  # noqa: E741
        natural = "e" if l % 2 == 0 else "o"
        other = "o" if natural == "e" else "e"
        parts += [f"{channels}x{l}{natural}", f"{channels}x{l}{other}"]
    return Irreps(" + ".join(parts))


def build_descriptor(op: str, hidden: Irreps, sh: Irreps) -> Any:
    """The conv product ``hidden x sh -> hidden`` of family ``op`` with learned weights:
    CGTP channelwise (``uvu``, every allowed path summed into its output block), GTP, MTP and
    VSTP (where ``tp_spec`` has it) with per-degree weights."""
    if op == "cgtp":
        instructions = [(i1, i2, io, "uvu", True)
                        for i1, (_, ir1) in enumerate(hidden)
                        for i2, (_, ir2) in enumerate(sh)
                        for io, (_, ir_out) in enumerate(hidden)
                        if ir_out in ir1 * ir2]
        return tp_spec.cgtp(hidden, sh, hidden, instructions=instructions)
    if op in ("gtp", "mtp", "vstp"):
        if not hasattr(tp_spec, op):
            raise ValueError(f"tp_spec has no {op!r} in this version")
        return getattr(tp_spec, op)(hidden, sh, hidden, per_degree_weights=True)
    raise ValueError(f"unknown product {op!r}; expected cgtp, gtp, mtp or vstp")


class Gate(torch.nn.Module):
    """``x (N, hidden.dim)``, ``gates (N, n_gated)`` -> ``(N, hidden.dim)``: SiLU on ``0e``,
    tanh on ``0o`` (odd, so parity is kept), every other block times ``sigmoid(gate)`` per
    channel."""

    def __init__(self, hidden: Irreps) -> None:
        super().__init__()
        self.hidden = hidden
        self.n_gated = sum(mul for mul, ir in hidden if ir.l > 0)

    def forward(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        out, g = [], 0
        for (mul, ir), sl in zip(self.hidden, self.hidden.slices(), strict=True):
            block = x[:, sl]
            if ir.l == 0:
                out.append(torch.nn.functional.silu(block) if ir.p == 1 else torch.tanh(block))
            else:
                s = torch.sigmoid(gates[:, g:g + mul])
                out.append((block.reshape(-1, mul, ir.dim) * s[:, :, None]).reshape(-1, ir.dim
                                                                                      * mul))
                g += mul
        return torch.cat(out, dim=1)


class TetrisNet(torch.nn.Module):
    """Equivariant classifier of point clouds into the 8 tetris classes.

    ``TetrisNet(op, channels=8, layers=3, lmax=2, method=None)``; ``forward(g)`` with a
    :func:`graph` dict of torch tensors (:meth:`tensors`) -> logits ``(S, 8)``.
    """

    def __init__(self, op: str, channels: int = 8, layers: int = 3, lmax: int = 2,
                 method: str | None = None) -> None:
        super().__init__()
        self.op = op
        self.hidden = hidden = hidden_irreps(channels, lmax)
        self.sh_irreps = Irreps(" + ".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}"
                                           for l in range(lmax + 1)))  # noqa: E741
        self.lmax = lmax
        self.embed = tp_torch.Linear("1x0e", hidden)
        self.gate = Gate(hidden)
        gates = f"{self.gate.n_gated}x0e"
        self.convs = torch.nn.ModuleList()
        self.mix = torch.nn.ModuleList()
        self.conv_weights = torch.nn.ParameterList()
        for _ in range(layers):
            d = build_descriptor(op, hidden, self.sh_irreps)
            conv = tp_torch.TensorProductConv(d, method)
            self.convs.append(conv)
            self.conv_weights.append(torch.nn.Parameter(torch.randn(conv.weight_numel)))
            self.mix.append(torch.nn.ModuleDict({
                "msg": tp_torch.Linear(hidden, hidden), "self": tp_torch.Linear(hidden, hidden),
                "gate_msg": tp_torch.Linear(hidden, gates),
                "gate_self": tp_torch.Linear(hidden, gates)}))
        self.method = self.convs[0].method
        self.readout = tp_torch.Linear(hidden, "0o + 7x0e")

    def tensors(self, g: dict[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        """A :func:`graph` dict with torch tensors (features in ``dtype``)."""
        return {"senders": torch.as_tensor(g["senders"]),
                "receivers": torch.as_tensor(g["receivers"]),
                "sh": torch.as_tensor(g["sh"], dtype=dtype),
                "shape_of": torch.as_tensor(g["shape_of"]),
                "mean_degree": float(g["mean_degree"])}

    def features(self, g: dict[str, Any]) -> torch.Tensor:
        """Node features ``(S * P, hidden.dim)`` after the last layer."""
        sh = g["sh"]
        if sh.shape[1] != self.sh_irreps.dim:
            raise ShapeError(f"edge harmonics have {sh.shape[1]} components; this network "
                             f"needs lmax = {self.lmax} ({self.sh_irreps.dim})")
        n = g["shape_of"].shape[0]
        h = self.embed(sh.new_ones((n, 1)))
        scale = 1.0 / math.sqrt(g["mean_degree"])
        for conv, w, mix in zip(self.convs, self.conv_weights, self.mix, strict=True):
            msg = conv(h, sh, w.to(sh.dtype), g["senders"], g["receivers"]) * scale
            z = mix["msg"](msg) + mix["self"](h)
            gates = mix["gate_msg"](msg) + mix["gate_self"](h)
            h = self.gate(z, gates)
        return h

    def forward(self, g: dict[str, Any]) -> torch.Tensor:
        h = self.features(g)
        n_shapes = int(g["shape_of"].max()) + 1
        pooled = h.new_zeros((n_shapes, h.shape[1])).index_add_(0, g["shape_of"], h)
        out = self.readout(pooled)
        p, s = out[:, :1], out[:, 1:]
        return torch.cat([s[:, :1] + p, s[:, :1] - p, s[:, 1:]], dim=1)
