"""The conformance summary: a table of backend x op x method with passed / failed / skipped.

The pytest suite writes one JSON record per test (``--summary-json PATH``); this module merges
any number of such files and prints the table::

    python -m tp_conformance.summary .nox/summary/*.json

The op of a row is the descriptor family (``cgtp``, ``gtp``, ``mtp``) of the product, or
``conv-<family>`` for the tensor-product convolution (:func:`op_label`).

Exit status: 1 if any record failed (or no file had records), else 0.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["format_table", "load_records", "main", "op_label"]

Record = dict[str, str]


def op_label(family: str, conv: bool = False) -> str:
    """The op column of a test: ``family``, or ``"conv-" + family`` for the convolution."""
    return f"conv-{family}" if conv else family


def load_records(paths: Iterable[str | Path]) -> list[Record]:
    records: list[Record] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            records.extend(json.loads(p.read_text()))
    return records


def _short(reason: str, width: int = 70) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= width else reason[: width - 3] + "..."


def format_table(records: Sequence[Record]) -> str:
    """Rows ``backend | op | method | passed | failed | skipped | skip reasons``."""
    groups: dict[tuple[str, str, str], dict[str, object]] = {}
    for r in records:
        key = (r["backend"], r["op"], r["method"])
        g = groups.setdefault(key, {"passed": 0, "failed": 0, "skipped": 0,
                                    "reasons": defaultdict(int)})
        g[r["outcome"]] += 1  # type: ignore[operator]
        if r["outcome"] == "skipped":
            g["reasons"][_short(r.get("reason", ""))] += 1  # type: ignore[index]
    header = ("backend", "op", "method", "passed", "failed", "skipped", "skip reasons")
    rows = []
    for key in sorted(groups):
        g = groups[key]
        reasons = "; ".join(f"{n}x {why}" if n > 1 else why
                            for why, n in sorted(g["reasons"].items()))  # type: ignore[union-attr]
        rows.append((*key, str(g["passed"]), str(g["failed"]), str(g["skipped"]), reasons))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    widths[-1] = len(header[-1])
    def line(cells: Sequence[str]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    total = {k: sum(1 for r in records if r["outcome"] == k) for k in ("passed", "failed",
                                                                       "skipped")}
    out.append(f"conformance: {total['passed']} passed, {total['failed']} failed, "
               f"{total['skipped']} skipped")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    records = load_records(paths)
    if not records:
        print("conformance summary: no records found in", paths)
        return 1
    print("=" * 30, "conformance summary", "=" * 30)
    print(format_table(records))
    return 1 if any(r["outcome"] == "failed" for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
