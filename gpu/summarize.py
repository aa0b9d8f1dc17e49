"""The short pass/fail summary of a ``gpu/check.sh`` run.

``python gpu/summarize.py WORK_DIR`` reads ``WORK_DIR/steps.tsv`` (one ``name<TAB>exit
status<TAB>seconds`` line per step, written by check.sh), every conformance record
``WORK_DIR/conformance-*.json`` (``--summary-json`` of the conformance suite) and every
benchmark record ``WORK_DIR/bench-*/results.json`` (or ``results.partial.json`` of a run that
was stopped), and prints per step its status, per conformance backend its passed / failed /
skipped counts with the failed tests, and per benchmark subject its cells by status with the
errors. Exit status 1 if a step failed or a conformance test failed, else 0.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

#: How many failed tests / error reasons to list per section.
MAX_LISTED = 15


def _steps(work: Path) -> tuple[list[str], bool]:
    path = work / "steps.tsv"
    if not path.is_file():
        return [f"no {path}"], True
    lines, bad = [], False
    for row in path.read_text().splitlines():
        name, rc, secs = row.split("\t")
        status = {"0": "ok", "124": "TIMED OUT", "skip": "skipped"}.get(rc, f"FAILED (exit {rc})")
        bad |= rc not in ("0", "skip")
        lines.append(f"  {name:<28} {status:<18} {float(secs):7.1f} s")
    return lines, bad


def _conformance(work: Path) -> tuple[list[str], bool]:
    lines, bad = [], False
    for path in sorted(work.glob("conformance-*.json")):
        records = json.loads(path.read_text())
        by_backend: dict[str, Counter[str]] = defaultdict(Counter)
        failed = []
        for r in records:
            by_backend[r["backend"]][r["outcome"]] += 1
            if r["outcome"] == "failed":
                failed.append(r["test"])
        lines.append(f"  {path.name}:")
        for backend, counts in sorted(by_backend.items()):
            lines.append(f"    {backend:<14} passed {counts['passed']:5d}  failed "
                         f"{counts['failed']:4d}  skipped {counts['skipped']:5d}")
        lines += [f"    FAILED {t}" for t in failed[:MAX_LISTED]]
        if len(failed) > MAX_LISTED:
            lines.append(f"    ... and {len(failed) - MAX_LISTED} more failed tests")
        bad |= bool(failed)
    return lines or ["  no conformance records"], bad


def _bench_record(folder: Path) -> dict[str, Any] | None:
    for name in ("results.json", "results.partial.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


def _bench(work: Path) -> list[str]:
    lines = []
    for folder in sorted(p for p in work.glob("bench-*") if p.is_dir()):
        rec = _bench_record(folder)
        if rec is None:
            lines.append(f"  {folder.name}: no record")
            continue
        by_subject: dict[str, Counter[str]] = defaultdict(Counter)
        errors = []
        for r in rec["results"]:
            by_subject[r["subject"]][r["status"]] += 1
            if r["status"] in ("error", "failed check"):
                errors.append(f"{r['subject']} {r['workload'].get('name')} "
                              f"{r['workload'].get('op')} {r['pass']}: {r['reason'][:160]}")
        gpu = (rec.get("machine") or {}).get("gpu")
        lines.append(f"  {folder.name} (device {rec.get('device')}, gpu {gpu}, "
                     f"{rec.get('wall_s', 0):.0f} s):")
        for subject, counts in sorted(by_subject.items()):
            text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            lines.append(f"    {subject:<18} {text}")
        lines += [f"    ERROR {e}" for e in errors[:MAX_LISTED]]
        if len(errors) > MAX_LISTED:
            lines.append(f"    ... and {len(errors) - MAX_LISTED} more errors")
    return lines or ["  no benchmark records"]


def summary(work: Path) -> tuple[str, bool]:
    """The summary text and whether anything failed."""
    steps, bad_steps = _steps(work)
    conf, bad_conf = _conformance(work)
    text = "\n".join(["steps:", *steps, "conformance:", *conf, "benchmarks:", *_bench(work)])
    return text, bad_steps or bad_conf


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    text, bad = summary(Path(argv[0]))
    print(text)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
