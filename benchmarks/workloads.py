"""Benchmark workloads: which tensor products are timed, at which sizes.

A :class:`Workload` names one descriptor (op family, irreps) at one batch size. Suites:

* ``paper`` - the microbenchmark of "The Price of Freedom" (Xie et al. 2025, section 7): one
  channel, batch 10,000, ``L = 1..10``, for every op family (CGTP, GTP, MTP, VSTP):

  - SISO: ``Ly x Ly -> L`` (one irrep each),
  - SIMO: ``Ly x Ly ->`` every irrep up to ``2L``,
  - MIMO: s2 irreps ``0e + 1o + ... + Ly`` on both inputs -> every irrep up to ``2L``.

  "Every irrep" means every irrep the op family can reach (a CGTP reaches both parities, a GTP
  only even-sum paths, an MTP the paths with a nonzero 6j symbol, a VSTP the paths with a
  nonzero vector-Gaunt coefficient); unreachable outputs are dropped so no implementation pays
  for zeros.
* ``models`` - the OpenEquivariance problem catalogue (MACE, NequIP, DiffDock, SevenNet shapes;
  source: ``openequivariance/benchmark/problems.py`` of PASSIONLab/OpenEquivariance), as CGTP
  (channelwise ``uvu``, DiffDock fully connected ``uvw`` with per-sample weights) and, where the
  shape satisfies the GTP/MTP channel rules, as GTP and MTP too.
* ``scaling`` - MIMO at fixed ``L`` with the batch swept over ``1 .. 1e6`` and the channel count
  swept at a fixed batch (``C`` channels of ``x1``, one broadcast channel of ``x2``).
* ``default`` - the main job: a small MIMO slice that fits in a few minutes on a 2-core CPU.

Op families per suite (:func:`suite_ops`): the paper suite times all of :data:`OPS`; the
others time :data:`MAIN_OPS` (the main job's time budget has no room for the VSTP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import tp_spec
from tp_spec import Irrep, Irreps

__all__ = [
    "CGTP_MODES",
    "MAIN_OPS",
    "MODEL_PROBLEMS",
    "OPS",
    "SUITES",
    "Workload",
    "build_descriptor",
    "paper_workloads",
    "s2_irreps",
    "suite_ops",
    "suite_workloads",
]

#: Every op family the harness builds; :data:`MAIN_OPS` those of every suite but ``paper``.
OPS = ("cgtp", "gtp", "mtp", "vstp")
MAIN_OPS = ("cgtp", "gtp", "mtp")
SUITES = ("default", "paper", "models", "scaling")
PAPER_KINDS = ("SISO", "SIMO", "MIMO")


def s2_irreps(lmax: int, channels: int = 1) -> str:
    """``"Cx0e + Cx1o + ... + CxLy"``: the irreps of a function on the sphere up to ``lmax``."""
    return "+".join(f"{channels}x{Irrep(l, (-1) ** l)!r}" for l in range(lmax + 1))


def _reachable(in1: str, in2: str, lmax_out: int, channels: int = 1) -> str:
    """Every irrep in ``in1 x in2`` with ``l <= lmax_out`` (both parities), sorted, mult C."""
    found: set[Irrep] = set()
    for _, ir1 in Irreps(in1):
        for _, ir2 in Irreps(in2):
            for ir3 in ir1 * ir2:
                if ir3.l <= lmax_out:
                    found.add(ir3)
    return "+".join(f"{channels}x{ir!r}" for ir in sorted(found))


def build_descriptor(op: str, in1: str, in2: str, out: str | None, mode: str = "uvw",
                     prune: bool = True) -> Any:
    """Build the ``op`` descriptor; with ``prune``, drop output irreps that no path reaches."""
    if op == "cgtp":
        d = tp_spec.cgtp(in1, in2, out, mode=mode)
    elif op == "gtp":
        d = tp_spec.gtp(in1, in2, out)
    elif op == "mtp":
        d = tp_spec.mtp(in1, in2, out)
    elif op == "vstp":
        d = tp_spec.vstp(in1, in2, out)
    else:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    if prune and mode == "uvw" and out is not None:
        used = sorted({p.i_out for p in d.paths})
        if len(used) != len(d.irreps_out) and used:
            kept = "+".join(f"{d.irreps_out[i].mul}x{d.irreps_out[i].ir!r}" for i in used)
            return build_descriptor(op, in1, in2, kept, mode, prune=False)
    return d


@dataclass(frozen=True)
class Workload:
    """One descriptor at one size. ``name`` is the shape family (``MIMO``, ``mace-large``...)."""

    suite: str
    name: str
    op: str
    irreps_in1: str
    irreps_in2: str
    irreps_out: str | None
    batch: int
    L: int | None = None
    channels: int = 1
    mode: str = "uvw"
    per_sample_weights: bool = False
    tags: tuple[str, ...] = field(default=(), compare=False)

    @cached_property
    def descriptor(self) -> Any:
        """The tp_spec descriptor (built once)."""
        return build_descriptor(self.op, self.irreps_in1, self.irreps_in2, self.irreps_out,
                                self.mode)

    def key(self) -> tuple[Any, ...]:
        return (self.suite, self.name, self.op, self.L, self.batch, self.channels)

    def as_dict(self) -> dict[str, Any]:
        d = self.descriptor
        return {
            "suite": self.suite, "name": self.name, "op": self.op, "L": self.L,
            "batch": self.batch, "channels": self.channels, "mode": self.mode,
            "irreps_in1": str(d.irreps_in1), "irreps_in2": str(d.irreps_in2),
            "irreps_out": str(d.irreps_out), "n_paths": len(d.paths),
            "weight_numel": int(d.weight_numel), "per_sample_weights": self.per_sample_weights,
        }


def _paper_irreps(kind: str, L: int) -> tuple[str, str, int]:
    if kind == "SISO":
        return f"{Irrep(L, (-1) ** L)!r}", f"{Irrep(L, (-1) ** L)!r}", L
    if kind == "SIMO":
        return f"{Irrep(L, (-1) ** L)!r}", f"{Irrep(L, (-1) ** L)!r}", 2 * L
    if kind == "MIMO":
        return s2_irreps(L), s2_irreps(L), 2 * L
    raise ValueError(f"unknown paper workload {kind!r}; expected one of {PAPER_KINDS}")


#: CGTP connection modes of the paper workloads: ``uvw`` (fully connected, one weight per path
#: and outputs summed per irrep), ``full`` (e3nn ``FullTensorProduct``, e3nn-jax
#: ``tensor_product``: every path its own output block, no weights; the CGTP the paper timed)
#: and ``uuu`` (``ElementwiseTensorProduct``: blocks paired in order, no weights).
CGTP_MODES = ("uvw", "full", "uuu")


def paper_workloads(kinds: tuple[str, ...] = PAPER_KINDS, Ls: tuple[int, ...] = tuple(range(1, 11)),
                    ops: tuple[str, ...] = OPS, batch: int = 10_000, suite: str = "paper",
                    channels: int = 1, cgtp_modes: tuple[str, ...] = ("uvw",)) -> list[Workload]:
    """The paper's SISO/SIMO/MIMO workloads (one channel unless ``channels`` > 1). The CGTP
    runs once per mode of ``cgtp_modes``; a mode other than ``uvw`` names its workloads
    ``<kind>-<mode>`` (``MIMO-full``), with outputs filtered as the kind's (SISO: degree L)."""
    for m in cgtp_modes:
        if m not in CGTP_MODES:
            raise ValueError(f"unknown CGTP mode {m!r}; expected some of {CGTP_MODES}")
    out = []
    for kind in kinds:
        for L in Ls:
            in1, in2, lout = _paper_irreps(kind, L)
            if channels > 1:
                in1 = "+".join(f"{channels}x{ir!r}" for _, ir in Irreps(in1))
            target = _reachable(in1, in2, lout, channels)
            if kind == "SISO":
                target = "+".join(f"{channels}x{ir!r}" for _, ir in Irreps(target) if ir.l == L)
            for op in ops:
                mode = "uvw" if channels == 1 else "uvu"
                if op == "cgtp" and channels == 1:
                    for m in cgtp_modes:
                        name = kind if m == "uvw" else f"{kind}-{m}"
                        filt = target if m == "uvw" else "+".join(
                            sorted({f"1x{ir!r}" for _, ir in Irreps(target)}))
                        out.append(Workload(suite, name, op, in1, in2, filt, batch, L, 1, m))
                    continue
                wl = Workload(suite, kind, op, in1, in2, target if mode == "uvw" else None,
                              batch, L, channels, mode)
                out.append(wl)
    return out


# OpenEquivariance problem catalogue (label, in1, in2, out, connection mode, per-sample weights).
MODEL_PROBLEMS: tuple[tuple[str, str, str, str, str, bool], ...] = (
    ("mace-large", "128x0e+128x1o+128x2e", "1x0e+1x1o+1x2e+1x3o",
     "128x0e+128x1o+128x2e+128x3o", "uvu", False),
    ("mace-medium", "128x0e+128x1o", "1x0e+1x1o+1x2e+1x3o", "128x0e+128x1o+128x2e", "uvu", False),
    ("nequip-lips", "32x0o+32x0e+32x1o+32x1e+32x2o+32x2e", "0e+1o+2e",
     "32x0o+32x0e+32x1o+32x1e+32x2o+32x2e", "uvu", False),
    ("nequip-revmd17-aspirin", "64x0o+64x0e+64x1o+64x1e", "0e+1o", "64x0o+64x0e+64x1o+64x1e",
     "uvu", False),
    ("nequip-revmd17-benzene", "64x0o+64x0e+64x1o+64x1e+64x2o+64x2e+64x3o+64x3e", "0e+1o+2e+3o",
     "64x0o+64x0e+64x1o+64x1e+64x2o+64x2e+64x3o+64x3e", "uvu", False),
    ("diffdock-L=1", "10x1o+10x1e+48x0e+48x0o", "1x0e+1x1o", "10x1o+10x1e+48x0e+48x0o", "uvw",
     True),
    ("diffdock-L=2", "10x1o+10x1e+48x0e+48x0o", "1x0e+1x1o+1x2e", "10x1o+10x1e+48x0e+48x0o",
     "uvw", True),
    ("sevennet-l3i5-main", "128x0e+64x1e+32x2e+32x3e", "1x0e+1x1e+1x2e+1x3e",
     "0e+1e+2e+3e", "uvu", False),
)


def model_workloads(batch: int, ops: tuple[str, ...] = MAIN_OPS,
                    names: tuple[str, ...] | None = None) -> list[Workload]:
    """The catalogue as CGTP, plus GTP/MTP where the shape allows them (checked when built)."""
    out = []
    for label, in1, in2, o, mode, per_sample in MODEL_PROBLEMS:
        if names and label not in names:
            continue
        for op in ops:
            if op == "cgtp":
                # Channelwise (uvu): ``irreps_out`` only filters which output irreps are kept.
                filt = "+".join(sorted({f"1x{ir!r}" for _, ir in Irreps(o)}))
                out.append(Workload("models", label, op, in1, in2,
                                    o if mode == "uvw" else filt, batch, None,
                                    max(m for m, _ in Irreps(in1)), mode, per_sample))
            else:
                out.append(Workload("models", label, op, in1, in2, None, batch, None,
                                    max(m for m, _ in Irreps(in1)), "uvu", False))
    return out


def _cgtp_uvu(in1: str, in2: str, out_filter: str) -> Any:
    return tp_spec.cgtp(in1, in2, out_filter, mode="uvu")


def scaling_workloads(L: int = 3, batches: tuple[int, ...] = (1, 10, 100, 1_000, 10_000,
                                                               100_000, 1_000_000),
                      channels: tuple[int, ...] = (1, 4, 16, 64), channel_batch: int = 10_000,
                      ops: tuple[str, ...] = MAIN_OPS) -> list[Workload]:
    """MIMO at fixed ``L``: a batch sweep (one channel) and a channel sweep (fixed batch).

    Ordered by size: the batches up to ``channel_batch``, the channel sweep, then the larger
    batches, so that a time budget cuts the most expensive cells, not a whole sweep."""
    by_batch, big, by_channels = [], [], []
    for b in batches:
        for wl in paper_workloads(("MIMO",), (L,), ops, b, "scaling"):
            (by_batch if b <= channel_batch else big).append(
                Workload("scaling", "MIMO-batch", wl.op, wl.irreps_in1, wl.irreps_in2,
                         wl.irreps_out, b, L, 1, wl.mode))
    for c in channels:
        for wl in paper_workloads(("MIMO",), (L,), ops, channel_batch, "scaling", channels=c):
            by_channels.append(Workload("scaling", "MIMO-channels", wl.op, wl.irreps_in1,
                                        wl.irreps_in2, wl.irreps_out, channel_batch, L, c,
                                        wl.mode))
    return by_batch + by_channels + big


def suite_ops(suite: str) -> tuple[str, ...]:
    """The op families ``suite`` times by default: all of :data:`OPS` for ``paper``, else
    :data:`MAIN_OPS`."""
    if suite not in SUITES and suite != "conv":
        raise ValueError(f"unknown suite {suite!r}; expected one of {SUITES + ('conv',)}")
    return OPS if suite == "paper" else MAIN_OPS


def suite_workloads(suite: str, *, Ls: tuple[int, ...] | None = None,
                    batch: int | None = None, ops: tuple[str, ...] | None = None,
                    kinds: tuple[str, ...] | None = None, device: str = "cpu",
                    cgtp_modes: tuple[str, ...] | None = None) -> list[Workload]:
    """All workloads of ``suite`` (``ops``/``Ls``/``batch``/``kinds``/``cgtp_modes`` override
    the suite defaults: ops :func:`suite_ops`; the paper suite times every CGTP mode, the main
    job ``uvw``)."""
    if ops is None:
        ops = suite_ops(suite)
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; expected some of {OPS}")
    if suite == "paper":
        return paper_workloads(kinds or PAPER_KINDS, Ls or tuple(range(1, 11)), ops,
                               batch or 10_000, cgtp_modes=cgtp_modes or CGTP_MODES)
    if suite == "default":
        return paper_workloads(kinds or ("MIMO",), Ls or (1, 2, 4), ops, batch or 10_000,
                               suite="default", cgtp_modes=cgtp_modes or ("uvw",))
    if suite == "models":
        return model_workloads(batch or (50_000 if device != "cpu" else 2_000), ops)
    if suite == "scaling":
        L = (Ls or (3,))[0]
        if batch:
            return scaling_workloads(L, batches=(batch,), channels=(), ops=ops)
        return scaling_workloads(L, ops=ops)
    raise ValueError(f"unknown suite {suite!r}; expected one of {SUITES}")
