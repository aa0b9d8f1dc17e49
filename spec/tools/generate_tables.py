"""Generate ``tp_spec/_tables/coupling_tables.npz`` from the exact coupling coefficients.

Every triangle-valid triple ``(l1, l2, l3)`` with all degrees <= LMAX (default 10), in
lexicographic order. Per nonzero real Clebsch-Gordan entry ``C[a,b,c] = sign * sqrt(p/q)``:

    triples (T, 3) int16, offsets (T+1,) int64   rows of triple t: offsets[t]:offsets[t+1]
    cg_index (nnz, 3) uint8        (a, b, c)
    cg_sign int8, cg_p int64, cg_q int64          the exact value
    cg_f64 float64, cg_f32 float32                correctly rounded C
    gaunt_f64, gaunt_f32                          correctly rounded Gaunt value (0 if l1+l2+l3 odd)
    format_version, lmax

The exact values come from the direct Racah computation (never from the shipped file).
Usage: python spec/tools/generate_tables.py [--lmax 10] [--out PATH]
(all triangle triples with l1, l2 <= lmax)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tp_spec.clebsch_gordan import _TABLE_FORMAT_VERSION, compute_real_cg_exact
from tp_spec.gaunt import _gaunt_factor, round_over_sqrt_pi

DEFAULT_OUT = (Path(__file__).resolve().parents[1] / "src" / "tp_spec" / "_tables"
               / "coupling_tables.npz")
INT64_MAX = 2**63 - 1


def all_triples(lmax: int) -> list[tuple[int, int, int]]:
    return [
        (l1, l2, l3)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), l1 + l2 + 1)
    ]


def build_tables(triples: list[tuple[int, int, int]]) -> dict[str, np.ndarray]:
    """Arrays (see module docstring) for the given triples, in the given order."""
    offsets = [0]
    index, sign, p, q, f64, f32, g64, g32 = [], [], [], [], [], [], [], []
    for l1, l2, l3 in triples:
        table = compute_real_cg_exact(l1, l2, l3)
        even = (l1 + l2 + l3) % 2 == 0
        factor = _gaunt_factor(l1, l2, l3) if even else None
        for idx, v in zip(table.indices.tolist(), table.values, strict=True):
            if v.p > INT64_MAX or v.q > INT64_MAX:
                raise OverflowError(f"C{(l1, l2, l3)}{idx} = {v!r} does not fit int64")
            index.append(idx)
            sign.append(v.sign)
            p.append(v.p)
            q.append(v.q)
            f64.append(v.to_float(np.float64))
            f32.append(v.to_float(np.float32))
            if factor is None:
                g64.append(0.0)
                g32.append(0.0)
            else:
                g = v * factor
                g64.append(round_over_sqrt_pi(g, np.float64))
                g32.append(round_over_sqrt_pi(g, np.float32))
        offsets.append(len(index))
    return {
        "format_version": np.array(_TABLE_FORMAT_VERSION, dtype=np.int64),
        "lmax": np.array(max((max(t) for t in triples), default=0), dtype=np.int64),
        "triples": np.array(triples, dtype=np.int16).reshape(-1, 3),
        "offsets": np.array(offsets, dtype=np.int64),
        "cg_index": np.array(index, dtype=np.uint8).reshape(-1, 3),
        "cg_sign": np.array(sign, dtype=np.int8),
        "cg_p": np.array(p, dtype=np.int64),
        "cg_q": np.array(q, dtype=np.int64),
        "cg_f64": np.array(f64, dtype=np.float64),
        "cg_f32": np.array(f32, dtype=np.float32),
        "gaunt_f64": np.array(g64, dtype=np.float64),
        "gaunt_f32": np.array(g32, dtype=np.float32),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, default=10)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    arrays = build_tables(all_triples(args.lmax))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(arrays['triples'])} triples, {len(arrays['cg_sign'])} entries")


if __name__ == "__main__":
    main()
