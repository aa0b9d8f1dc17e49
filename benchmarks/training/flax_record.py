"""The record of :mod:`benchmarks.training.flax_mace` (``kind: "flax-training"``) as Markdown,
without importing JAX (``python -m benchmarks docs-page`` runs anywhere)."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown"]

BACKENDS = ("tp_jax", "e3nn-jax")


def markdown(record: dict[str, Any]) -> str:
    """The record as a table: one row per thread setting."""
    c = record["config"]
    lines = [f"### Flax MACE-style model ({c['hidden_irreps']}, max_ell {c['max_ell']}, "
             f"correlation {c['correlation']}, {c['num_interactions']} interactions, "
             f"Cu fcc {'x'.join(map(str, c['repeat']))} cells), {record['steps']} steps x "
             f"{record['repeats']} blocks per backend", "",
             "| threads | tp_jax step, ms: median [q1, q3] | e3nn-jax step, ms: median [q1, q3] "
             "| e3nn-jax / tp_jax |", "|---|---|---|---|"]
    for run in record["runs"]:
        cells = [f"{1e3 * run[b]['median_s']:.0f} [{1e3 * run[b]['q1_s']:.0f}, "
                 f"{1e3 * run[b]['q3_s']:.0f}]" for b in BACKENDS]
        lines.append(f"| {run['threads']} | {cells[0]} | {cells[1]} | {run['ratio']:.2f}x |")
    return "\n".join(lines)
