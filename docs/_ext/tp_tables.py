"""Generate the expressivity and interactability tables from tp_spec at build time, and copy
the benchmark results (summary, record pages, plots) from ``benchmarks/results/``.

Writes Markdown files into ``docs/generated/`` (not committed) before Sphinx reads the sources,
so the numbers in the docs are always the ones the installed ``tp_spec`` computes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
OUT = DOCS / "generated"


def _path_count_table(lmax: int = 10) -> str:
    from tp_spec.expressivity import path_counts

    lines = [
        "| L | all paths (CGTP) | even-sum paths (Gaunt-reachable) | odd-sum paths |",
        "|---|---|---|---|",
    ]
    for L in range(1, lmax + 1):
        c = path_counts(L)
        lines.append(f"| {L} | {c['all']} | {c['gaunt']} | {c['odd']} |")
    return "\n".join(lines) + "\n"


def _both_parities(lmax: int):
    import tp_spec as spec

    return spec.Irreps([(1, spec.Irrep(l, p)) for l in range(lmax + 1) for p in (1, -1)]).regroup()


def _expressivity_table(lmax: int = 4) -> str:
    import tp_spec as spec

    lines = [
        "| L | CGTP | GTP | MTP | CGTP, both parities out | GTP, both | MTP, both |",
        "|---|---|---|---|---|---|---|",
    ]
    for L in range(1, lmax + 1):
        s2 = spec.Irreps.spherical_harmonics(L)
        row = []
        for out in (spec.Irreps.spherical_harmonics(2 * L), _both_parities(2 * L)):
            row += [
                spec.expressivity(spec.cgtp(s2, s2, out, mode="uvw")),
                spec.expressivity(spec.gtp(s2, s2, out)),
                spec.expressivity(spec.mtp(s2, s2, out)),
            ]
        lines.append(f"| {L} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _interactability_table(L: int = 2) -> str:
    import tp_spec as spec

    s2 = spec.Irreps.spherical_harmonics(L)
    out = _both_parities(2 * L)
    ops = {
        "CGTP": spec.interactability(spec.cgtp(s2, s2, out, mode="uvw")),
        "GTP": spec.interactability(spec.gtp(s2, s2, out)),
        "MTP (default outputs)": spec.interactability(spec.mtp(s2, s2)),
        "MTP (outputs to 2L)": spec.interactability(spec.mtp(s2, s2, out)),
    }
    triples = sorted(set().union(*ops.values()), key=lambda t: (t[2][0], t[0][0], t[1][0], t[2][1]))

    def name(lp: tuple[int, int]) -> str:
        return f"{lp[0]}{'e' if lp[1] == 1 else 'o'}"

    lines = ["| path | " + " | ".join(ops) + " |", "|---|" + "---|" * len(ops)]
    for t in triples:
        marks = " | ".join("yes" if t in paths else "" for paths in ops.values())
        lines.append(f"| {name(t[0])} x {name(t[1])} -> {name(t[2])} | {marks} |")
    return "\n".join(lines) + "\n"


def _results_page() -> str:
    results = DOCS.parent / "benchmarks" / "results" / "RESULTS.md"
    if results.exists():
        return results.read_text()
    return "No committed benchmark results yet: run `nox -s bench`.\n"


def generate(app) -> None:  # noqa: ANN001 - Sphinx callback
    OUT.mkdir(exist_ok=True)
    (OUT / "path_counts.md").write_text(_path_count_table())
    (OUT / "expressivity.md").write_text(_expressivity_table())
    (OUT / "interactability.md").write_text(_interactability_table())
    (OUT / "results.md").write_text(_results_page())
    for stale in OUT.iterdir():  # copies of an earlier build's records
        if stale.is_dir():
            shutil.rmtree(stale)
    records = DOCS.parent / "benchmarks" / "results"
    if records.exists():
        # the plots, and each record's page (results.md, linked from the summary; listed
        # in results.md's hidden toctree)
        for path in [*records.rglob("*.png"), *records.glob("*/*/results.md")]:
            target = OUT / path.relative_to(records)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)


def setup(app):  # noqa: ANN001, ANN201 - Sphinx entry point
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "version": "1"}
