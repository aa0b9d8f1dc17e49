"""The case catalogue shared by every backend.

A :class:`Case` is a named, lazily built descriptor plus test settings (batch shape, whether the
finite-difference and second-order checks run on it). Groups (``Case.tags``):

* ``paper``: the paper's microbenchmark workloads for ``L = 1..6``, one channel: SISO
  (``L x L -> L``), SIMO (``L x L -> 0..2L``), MIMO (s2 irreps ``0..L`` on both inputs ->
  ``0..2L``), as CGTP (fully connected ``uvw``), GTP and MTP (where the op has paths).
* ``oeq``: the OpenEquivariance problem shapes (MACE, NequIP, DiffDock, SevenNet channel and
  irreps patterns) with the multiplicities scaled down for CPU.
* ``random``: seeded random e3nn-style instruction lists: every connection mode, mixed parities,
  multiplicity 0 and 1 blocks, weighted and unweighted paths, ``path_weight`` and every
  normalization.
* ``gtp`` / ``mtp`` / ``vstp``: every parity-class pair (and mixed inputs), channel broadcast
  (``x2`` with one channel), per-degree weights.
* ``small``: cheap enough for finite differences and second-order checks.
* ``golden``: the subset whose inputs/outputs are committed under ``conformance/golden``.
* ``conv``: the convolution's cases (channelwise and fully connected CGTP, an unweighted GTP,
  a per-degree MTP).

>>> c = get_case("paper-mimo-cgtp-L2")
>>> c.family, c.descriptor.irreps_in1
('cgtp', 1x0e+1x1o+1x2e)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tp_spec as spec

__all__ = ["CASES", "Case", "cases", "get_case", "random_inputs", "s2_irreps"]


@dataclass(frozen=True)
class Case:
    """A catalogue entry: ``build()`` returns the descriptor (built once, on first use)."""

    name: str
    family: str  # "cgtp" | "gtp" | "mtp" | "vstp"
    build: Callable[[], spec.TensorProductDescriptor] = field(repr=False, compare=False)
    tags: frozenset[str] = frozenset()
    batch: tuple[int, ...] = (3,)

    @functools.cached_property
    def descriptor(self) -> spec.TensorProductDescriptor:
        return self.build()

    @property
    def small(self) -> bool:
        """True if the finite-difference and second-order checks run on this case."""
        return "small" in self.tags


def s2_irreps(lmin: int, lmax: int, parity: str = "natural") -> str:
    """``"0e+1o+2e+..."`` (natural parity), or all ``"e"`` / all ``"o"``."""
    out = []
    for l in range(lmin, lmax + 1):
        p = ("e" if l % 2 == 0 else "o") if parity == "natural" else parity
        out.append(f"{l}{p}")
    return "+".join(out)


def _natural(l: int) -> str:
    return f"{l}{'e' if l % 2 == 0 else 'o'}"


def _paper_cases() -> list[Case]:
    out: list[Case] = []
    for L in range(1, 7):
        small = {"small"} if L <= 2 else set()
        tags = frozenset({"paper", *small})
        ir = _natural(L)
        # CGTP: fully connected with one channel (every path weighted).
        out.append(Case(f"paper-siso-cgtp-L{L}", "cgtp",
                        functools.partial(spec.cgtp, ir, ir, f"{L}e", mode="uvw"), tags))
        out.append(Case(f"paper-simo-cgtp-L{L}", "cgtp",
                        functools.partial(spec.cgtp, ir, ir, s2_irreps(0, 2 * L, "e"), mode="uvw"),
                        tags))
        mimo_out = "+".join(f"{l}e+{l}o" for l in range(2 * L + 1))
        out.append(Case(f"paper-mimo-cgtp-L{L}", "cgtp",
                        functools.partial(spec.cgtp, s2_irreps(0, L), s2_irreps(0, L), mimo_out,
                                          mode="uvw"),
                        tags, batch=(2,)))
        # GTP: only even-sum paths exist (SISO needs 3L even).
        if L % 2 == 0:
            out.append(Case(f"paper-siso-gtp-L{L}", "gtp",
                            functools.partial(spec.gtp, ir, ir, _natural(L)), tags))
        out.append(Case(f"paper-simo-gtp-L{L}", "gtp",
                        functools.partial(spec.gtp, ir, ir, s2_irreps(0, 2 * L)), tags))
        out.append(Case(f"paper-mimo-gtp-L{L}", "gtp",
                        functools.partial(spec.gtp, s2_irreps(0, L), s2_irreps(0, L),
                                          s2_irreps(0, 2 * L)), tags, batch=(2,)))
        # MTP: default outputs (every reachable (l, p)).
        out.append(Case(f"paper-simo-mtp-L{L}", "mtp", functools.partial(spec.mtp, ir, ir), tags))
        out.append(Case(f"paper-mimo-mtp-L{L}", "mtp",
                        functools.partial(spec.mtp, s2_irreps(0, L), s2_irreps(0, L)), tags,
                        batch=(2,)))
    return out


def _oeq_cases() -> list[Case]:
    """OpenEquivariance's problem catalogue (roofline/benchmark configurations), scaled down."""
    t = frozenset({"oeq"})
    ts = frozenset({"oeq", "small"})
    return [
        # MACE: 128x0e+128x1o+128x2e x 0e+1o+2e+3o channelwise -> 0e+1o+2e+3o.
        Case("oeq-mace", "cgtp", functools.partial(
            spec.cgtp, "4x0e+4x1o+4x2e", "0e+1o+2e+3o", "0e+1o+2e+3o", mode="uvu"), t),
        # NequIP: 32x of every (l <= 2, p) x 0e+1o+2e channelwise.
        Case("oeq-nequip", "cgtp", functools.partial(
            spec.cgtp, "2x0o+2x0e+2x1o+2x1e+2x2o+2x2e", "0e+1o+2e",
            "0o+0e+1o+1e+2o+2e", mode="uvu"), t),
        # DiffDock: fully connected 10x1o+10x1e+48x0e+48x0o x 0e+1o+2e -> same irreps.
        Case("oeq-diffdock", "cgtp", functools.partial(
            spec.cgtp, "2x1o+2x1e+3x0e+3x0o", "0e+1o+2e", "2x1o+2x1e+3x0e+3x0o", mode="uvw"), ts),
        # SevenNet: 128x0e+64x1e+32x2e x 0e+1e+2e channelwise.
        Case("oeq-sevennet", "cgtp", functools.partial(
            spec.cgtp, "4x0e+3x1e+2x2e", "0e+1e+2e", mode="uvu"), ts),
        # MACE-like with a multi-channel second input (the case cuEquivariance's channelwise
        # descriptor does not match): uvu with mul2 = 2.
        Case("oeq-mace-mul2", "cgtp", functools.partial(
            spec.cgtp, "3x0e+3x1o", "2x0e+2x1o", "0e+1o+1e", mode="uvu"), ts),
    ]


def random_instruction_descriptor(seed: int) -> spec.CGTPDescriptor:
    """A random e3nn-style CGTP: random irreps (mixed parities, multiplicities 0..3), random
    instructions over every mode, random ``has_weight`` / ``path_weight`` and normalizations."""
    rng = np.random.default_rng(seed)
    modes = ("uvw", "uvu", "uvv", "uuw", "uuu", "uvuv")

    def rand_irreps(n: int) -> list[tuple[int, spec.Irrep]]:
        blocks = []
        for _ in range(n):
            mul = int(rng.choice([0, 1, 1, 2, 2, 3]))
            blocks.append((mul, spec.Irrep(int(rng.integers(0, 3)), int(rng.choice([1, -1])))))
        return blocks

    in1 = rand_irreps(int(rng.integers(2, 4)))
    in2 = rand_irreps(int(rng.integers(2, 4)))
    out: list[tuple[int, spec.Irrep]] = []
    instructions = []
    for k in range(int(rng.integers(4, 8))):
        i1, i2 = int(rng.integers(len(in1))), int(rng.integers(len(in2)))
        (m1, ir1), (m2, ir2) = in1[i1], in2[i2]
        mode = modes[k % len(modes)] if k < len(modes) else str(rng.choice(modes))
        if mode in ("uuw", "uuu") and m1 != m2:
            mode = "uvw"
        ir3 = list(ir1 * ir2)[int(rng.integers(len(list(ir1 * ir2))))]
        mo = {"uvw": int(rng.integers(0, 3)), "uvu": m1, "uvv": m2, "uuw": int(rng.integers(1, 3)),
              "uuu": m1, "uvuv": m1 * m2}[mode]
        # Reuse an existing output block when it fits (several paths into one output).
        io = next((j for j, (m, ir) in enumerate(out) if m == mo and ir == ir3), None)
        if io is None or rng.random() < 0.3:
            out.append((mo, ir3))
            io = len(out) - 1
        has_weight = bool(rng.random() < 0.7) or mode == "uvw"
        path_weight = float(rng.choice([1.0, 0.5, 2.0]))
        instructions.append((i1, i2, io, mode, has_weight, path_weight))
    irrep_norm = str(rng.choice(["component", "norm", "none"]))
    path_norm = str(rng.choice(["element", "path", "none"]))
    return spec.cgtp(spec.Irreps(in1), spec.Irreps(in2), spec.Irreps(out),
                     instructions=instructions, irrep_normalization=irrep_norm,
                     path_normalization=path_norm)


def _random_cases() -> list[Case]:
    return [
        Case(f"random-{seed}", "cgtp", functools.partial(random_instruction_descriptor, seed),
             frozenset({"random", "small"}))
        for seed in range(8)
    ]


def _standard_cgtp_cases() -> list[Case]:
    ts = frozenset({"modes", "small"})
    return [
        Case("cgtp-uvw-mixed", "cgtp", functools.partial(
            spec.cgtp, "2x0e+1x1o+1x1e", "1x0e+2x1o", "2x0e+1x0o+2x1o+1x1e+1x2e", mode="uvw"), ts),
        Case("cgtp-uvu-channelwise", "cgtp", functools.partial(
            spec.cgtp, "3x0e+3x1o+3x2e", "0e+1o+2e", mode="uvu"), ts),
        Case("cgtp-uuu-elementwise", "cgtp", functools.partial(
            spec.cgtp, "2x0e+2x1o+1x2e", "2x1e+2x1o+1x2o", mode="uuu"), ts),
        Case("cgtp-full", "cgtp", functools.partial(
            spec.cgtp, "2x0e+1x1o", "1x1o+2x2e", mode="full"), ts),
        Case("cgtp-mul0", "cgtp", functools.partial(
            spec.cgtp, "0x0e+2x1o+0x2e", "1x0e+1x1o", "1x0e+0x1o+2x1o+1x2e", mode="uvw"), ts),
        Case("cgtp-norm-path", "cgtp", functools.partial(
            spec.cgtp, "2x0e+1x1o", "1x0e+1x1o", "1x0e+1x1o+1x1e",
            irrep_normalization="norm", path_normalization="path"), ts),
    ]


def _fixed_cases() -> list[Case]:
    """GTP, MTP and VSTP: every parity-class pair, mixed inputs, channel broadcast, per-degree
    weights."""
    out: list[Case] = []
    plus, minus = "0e+1o+2e", "0o+1e+2o"
    for fam, fn in (("gtp", spec.gtp), ("mtp", spec.mtp), ("vstp", spec.vstp)):
        tags = frozenset({fam, "small"})
        for n1, a in (("p", plus), ("m", minus)):
            for n2, b in (("p", plus), ("m", minus)):
                out.append(Case(f"{fam}-class-{n1}{n2}", fam, functools.partial(fn, a, b), tags))
        mixed = "0e+0o+1o+1e+2e"
        out.append(Case(f"{fam}-mixed-classes", fam, functools.partial(fn, mixed, "0e+1o+1e+0o"),
                        tags))
        out.append(Case(f"{fam}-channels", fam, functools.partial(
            fn, "3x0e+3x1o+3x2e", "3x0e+3x1o+3x1e"), tags))
        out.append(Case(f"{fam}-broadcast", fam, functools.partial(
            fn, "4x0e+4x1o+4x2e+4x2o", "0e+1o+2e"), tags))
        out.append(Case(f"{fam}-per-degree", fam, functools.partial(
            fn, "2x0e+2x1o+2x1e", "2x0e+2x1o", per_degree_weights=True), tags))
        out.append(Case(f"{fam}-per-degree-broadcast", fam, functools.partial(
            fn, "3x0e+3x1o+3x2e", "0e+1o+0o", per_degree_weights=True), tags))
        out.append(Case(f"{fam}-explicit-out", fam, functools.partial(
            fn, "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e+2x3o"), tags))
    return out


GOLDEN = (
    "paper-mimo-cgtp-L2", "paper-mimo-gtp-L3", "paper-mimo-mtp-L2", "oeq-mace", "random-0",
    "random-3", "cgtp-uvu-channelwise", "gtp-class-mm", "gtp-per-degree-broadcast",
    "mtp-mixed-classes", "mtp-per-degree",
)


#: A small subset that still covers every CGTP mode (random-3 mixes them, with multiplicity 0
#: and 1 blocks), the MACE-style channelwise product, all four GTP/MTP/VSTP parity-class pairs,
#: channel broadcast and per-degree weights. For backends whose per-test cost is dominated by
#: compilation (tp_jax on CPU): ``--case-tag quick``.
QUICK = (
    "random-3", "cgtp-uvu-channelwise", "cgtp-mul0", "gtp-mixed-classes",
    "gtp-per-degree-broadcast", "mtp-mixed-classes", "mtp-per-degree-broadcast",
    "vstp-mixed-classes", "vstp-per-degree-broadcast",
)


#: The cases the convolution checks run on (:mod:`tp_conformance.conv_checks`): the
#: MACE-style channelwise product (tp_torch's compiled conv kernels), a fully connected CGTP
#: with mixed parities, a GTP without weights and an MTP with per-degree weights. Few, since
#: each (method, case) compiles its own programs in tp_jax.
CONV = ("cgtp-uvu-channelwise", "cgtp-uvw-mixed", "gtp-mixed-classes", "mtp-per-degree")


@functools.lru_cache(maxsize=1)
def _catalogue() -> dict[str, Case]:
    all_cases = (_paper_cases() + _oeq_cases() + _random_cases() + _standard_cgtp_cases()
                 + _fixed_cases())
    out: dict[str, Case] = {}
    for c in all_cases:
        if c.name in out:
            raise ValueError(f"duplicate case name {c.name!r}")
        tags = (c.tags | ({"golden"} if c.name in GOLDEN else set())
                | ({"quick"} if c.name in QUICK else set())
                | ({"conv"} if c.name in CONV else set()))
        out[c.name] = Case(c.name, c.family, c.build, frozenset(tags), c.batch)
    return out


CASES: tuple[str, ...] = tuple(_catalogue())


def cases(tag: str | None = None, family: str | None = None) -> list[Case]:
    """Catalogue entries, optionally filtered by tag and family."""
    return [c for c in _catalogue().values()
            if (tag is None or tag in c.tags) and (family is None or c.family == family)]


def get_case(name: str) -> Case:
    """The catalogue entry called ``name``."""
    try:
        return _catalogue()[name]
    except KeyError:
        raise KeyError(f"unknown case {name!r}; known: {', '.join(CASES)}") from None


def random_inputs(
    d: spec.TensorProductDescriptor,
    batch: tuple[int, ...],
    rng: np.random.Generator,
    *,
    shared_weights: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Standard-normal float64 ``x1 (*batch, dim1)``, ``x2 (*batch, dim2)`` and weights
    (``None`` if the descriptor has none; ``(numel,)`` if ``shared_weights``)."""
    x1 = rng.standard_normal(tuple(batch) + (d.irreps_in1.dim,))
    x2 = rng.standard_normal(tuple(batch) + (d.irreps_in2.dim,))
    if d.weight_numel == 0:
        return x1, x2, None
    wshape = (d.weight_numel,) if shared_weights else tuple(batch) + (d.weight_numel,)
    return x1, x2, rng.standard_normal(wshape)
