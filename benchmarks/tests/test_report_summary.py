"""The results summary, the record pages, supersession and the plots, on records whose times
are set by hand (one fake NumPy row cloned per subject, size and pass): every expected ratio
below is worked out by hand from those times."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks import claims, report, runner, summary
from benchmarks.cli import main
from benchmarks.workloads import Workload

from .conftest import FAST, FakeSubject

#: (median, q1, q3) seconds of each subject at L = 1, 2 (MIMO, forward)
TIMES = {
    "e3nn/cgtp": {1: (6.0, 5.0, 8.0), 2: (12.0, 10.0, 13.0)},
    "tp_torch/fused": {1: (2.0, 1.5, 2.5), 2: (3.0, 2.0, 4.0)},
    "tp_torch/dense": {1: (1.0, 1.0, 1.0), 2: (1.0, 1.0, 1.0)},  # not the headline method
    "e3nn-jax/cgtp": {1: (1.0, 0.9, 1.2)},
    "tp_jax/fused": {1: (2.0, 1.8, 2.5)},
}


def _record(times: dict[str, dict[Any, tuple[float, float, float]]], *, op: str = "cgtp",
            created: str = "2026-01-01T00:00:00+00:00", machine: str = "m",
            suite: str = "paper", name: str = "MIMO", passes: tuple[str, ...] = ("fwd",)
            ) -> dict[str, Any]:
    """A record with ``{subject: {L or batch: (median, q1, q3)}}`` for each pass; subjects of
    the form ``op:subject`` belong to another op."""
    wl = Workload(suite, name, "cgtp", "0e+1o", "0e+1o", "0e+1o+1e+2e", batch=16, L=1)
    rec = runner.run([wl], [FakeSubject("x/y")], passes=("fwd",), progress=False, timing=FAST,
                     machine=machine)
    (row,) = rec["results"]
    rec["results"], rec["created"] = [], created
    rec["config"].update(threads=1, suite=suite, cpus=[0])
    row["cpus"] = [0]  # a run pinned to one CPU (benchmarks.threads)
    for pass_ in passes:
        for key, by_size in times.items():
            sop, subject = key.split(":") if ":" in key else (op, key)
            for size, (med, q1, q3) in by_size.items():
                r = copy.deepcopy(row)
                r["subject"], r["pass"] = subject, pass_
                r["workload"]["op"] = sop
                r["framework"] = summary.framework_of(subject, "numpy")
                if name.endswith("-batch"):
                    r["workload"]["batch"], r["workload"]["L"] = size, 3
                else:
                    r["workload"]["L"] = size
                r["samples_s"] = [q1, med, q3]
                r["stats"] = {"median": med, "q1": q1, "q3": q3, "iqr": q3 - q1, "min": q1,
                              "max": q3, "n": 3}
                rec["results"].append(r)
    report.validate(rec)
    return rec


def test_primary_anchors() -> None:
    assert summary.reference("cgtp", "tp_torch/fused") == ("cgtp", "e3nn/cgtp")
    assert summary.reference("cgtp", "tp_jax/dense") == ("cgtp", "e3nn-jax/cgtp")
    assert summary.reference("mtp", "tp_torch/sparse") == ("mtp", "e3x/mtp")  # the only one
    assert summary.reference("vstp", "tp_jax/grid") == ("cgtp", "tp_jax/dense")
    assert summary.reference("cgtp", "e3nn/cgtp") is None  # anchors have no ratio
    assert summary.reference("conv-gtp", "tp_torch/grid") is None  # no anchor for the op


def test_headline_ratio_and_quartile_spread() -> None:
    """tp_torch/fused against e3nn/cgtp: L=1 6/2 = 3 (5/2.5 = 2 to 8/1.5 = 5.33), L=2 12/3 = 4
    (10/4 = 2.5 to 13/2 = 6.5): median 3.5, spread 2 to 6.5. tp_jax/fused at L=1 only:
    1/2 = 0.5 (0.9/2.5 = 0.36 to 1.2/1.8 = 0.67)."""
    rows = {r["subject"]: r for r in summary.headline(_record(TIMES))}
    assert sorted(rows) == ["tp_jax/fused", "tp_torch/fused"]  # one row per backend
    torch = rows["tp_torch/fused"]
    assert torch["anchor"] == "e3nn/cgtp" and torch["sizes"] == [1, 2]
    assert torch["per_size"][1] == pytest.approx((3.0, 2.0, 8.0 / 1.5))
    assert torch["per_size"][2] == pytest.approx((4.0, 2.5, 6.5))
    assert (torch["median"], torch["low"], torch["high"]) == pytest.approx((3.5, 2.0, 6.5))
    jax = rows["tp_jax/fused"]
    assert (jax["median"], jax["low"], jax["high"]) == pytest.approx((0.5, 0.36, 1.2 / 1.8))


def test_summary_has_one_row_per_suite_and_op() -> None:
    page = claims.docs_page([("benchmarks/results/m/run/results.json", _record(TIMES))])
    rows = [x for x in page.splitlines() if x.startswith("| m/run |")]
    assert rows == [
        "| m/run | MIMO | CGTP | tp_jax/fused vs e3nn-jax/cgtp | L=1 | 0.5x (0.36-0.67) | - | - |",
        "| m/run | MIMO | CGTP | tp_torch/fused vs e3nn/cgtp | L=1,2 | 3.5x (2-6.5) | - | - |"]
    assert "- [m/run](./m/run/results.md): paper suite, 1 thread, m " in page
    assert "**current**" in page


def test_vstp_against_the_dense_cgtp() -> None:
    """VSTP 2 s against the same framework's dense CGTP 3 s: 1.5x (2/2.5 = 0.8 to 4/1.5)."""
    rec = _record({"tp_torch/grid": {1: (2.0, 1.5, 2.5)},
                   "cgtp:tp_torch/dense": {1: (3.0, 2.0, 4.0)}}, op="vstp")
    (row,) = summary.headline(rec)
    assert row["anchor"] == "tp_torch/dense"
    assert (row["median"], row["low"], row["high"]) == pytest.approx((1.5, 0.8, 4.0 / 1.5))


def test_tables_one_ratio_per_cell_and_anchor_times() -> None:
    text = report.markdown(_record(TIMES))
    lines = {x.split(" | ")[1]: x for x in text.splitlines() if x.startswith("| cgtp |")}
    assert lines["e3nn/cgtp (anchor)"] == "| cgtp | e3nn/cgtp (anchor) | 6.00 s | 12.00 s |"
    assert lines["tp_torch/fused"] == "| cgtp | tp_torch/fused | 2.00 s (x3) | 3.00 s (x4) |"
    assert lines["tp_jax/fused"] == "| cgtp | tp_jax/fused | 2.00 s (x0.5) | - |"


def test_superseded_rows_left_out() -> None:
    """A newer record on the same machine and threads re-measures the forward: the old
    record's forward cell is superseded, its double backward is not; a record on another
    machine is not touched."""
    old = _record(TIMES, passes=("fwd", "dbl"))
    new = _record(TIMES, created="2026-02-01T00:00:00+00:00")
    other = _record(TIMES, created="2026-03-01T00:00:00+00:00", machine="m2")
    paths = ["benchmarks/results/m/old/results.json", "benchmarks/results/m/new/results.json",
             "benchmarks/results/m2/x/results.json"]
    recs = list(zip(paths, (old, new, other), strict=True))
    sup = summary.superseded(recs)
    assert sup[paths[0]] == {("MIMO", "cgtp", "fwd", "tp_torch/fused"): paths[1],
                             ("MIMO", "cgtp", "fwd", "tp_jax/fused"): paths[1]}
    assert sup[paths[1]] == {} and sup[paths[2]] == {}
    page = claims.docs_page(recs)
    old_rows = [x for x in page.splitlines() if x.startswith("| m/old |")]
    assert old_rows and all(x.split(" | ")[5] == "-" for x in old_rows)  # fwd left out
    assert all(x.split(" | ")[7] != "- |" for x in old_rows)  # dbl kept
    assert "**partly superseded (m/new: MIMO CGTP fwd measured again in a newer run)**" in page
    only_fwd = claims.docs_page(recs[1:2] + [(paths[0], _record(TIMES))])
    assert "**superseded by m/new: every headline row" in only_fwd
    assert not [x for x in only_fwd.splitlines() if x.startswith("| m/old |")]


def _capture(monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], list[str]]:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    bars: list[dict[str, Any]] = []
    titles: list[str] = []
    errorbar, suptitle = Axes.errorbar, Figure.suptitle

    def spy_errorbar(self: Any, x: Any, y: Any, yerr: Any = None, **kw: Any) -> Any:
        bars.append({"ax": self, "label": kw.get("label"), "x": list(x), "y": list(y),
                     "yerr": [list(v) for v in yerr]})
        return errorbar(self, x, y, yerr=yerr, **kw)

    def spy_suptitle(self: Any, t: str, **kw: Any) -> Any:
        titles.append(t)
        return suptitle(self, t, **kw)

    monkeypatch.setattr(Axes, "errorbar", spy_errorbar)
    monkeypatch.setattr(Figure, "suptitle", spy_suptitle)
    return bars, titles


def test_plot_error_bars_come_from_the_quartiles(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    bars, titles = _capture(monkeypatch)
    files = report.plots(_record(TIMES), tmp_path)
    assert [f.name for f in files] == ["MIMO_cgtp.png"]
    mine = [b for b in bars if b["label"] == "tp_torch/fused"]
    speed = next(b for b in mine if b["ax"].get_ylabel().startswith("speedup"))
    time = next(b for b in mine if b["ax"].get_ylabel().startswith("time"))
    assert speed["x"] == [1, 2] and speed["y"] == pytest.approx([3.0, 4.0])
    # lower bar to anchor q1 / ours q3, upper bar to anchor q3 / ours q1
    assert speed["yerr"][0] == pytest.approx([3.0 - 2.0, 4.0 - 2.5])
    assert speed["yerr"][1] == pytest.approx([8.0 / 1.5 - 3.0, 6.5 - 4.0])
    assert time["y"] == pytest.approx([2.0, 3.0])
    assert time["yerr"] == [pytest.approx([0.5, 1.0]), pytest.approx([0.5, 1.0])]
    anchors = [b for b in bars if b["label"] == "e3nn/cgtp"]
    assert len(anchors) == 1  # anchors: a time series, no speedup series
    assert titles == ["paper MIMO: CGTP against L (float32, batch 16, 1 channel, 1 thread) "
                      "on m"]


def test_batch_sweep_title_names_the_fixed_sizes(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """The batch sweep's title holds L and the channels fixed, never 'batch 1'."""
    _, titles = _capture(monkeypatch)
    rec = _record({"e3nn/cgtp": {1: (2.0, 2.0, 2.0), 10: (4.0, 4.0, 4.0)},
                   "tp_torch/fused": {1: (1.0, 1.0, 1.0), 10: (1.0, 1.0, 1.0)}},
                  suite="scaling", name="MIMO-batch")
    (f,) = report.plots(rec, tmp_path)
    assert f.name == "MIMO-batch_cgtp.png"
    assert titles == ["scaling MIMO-batch: CGTP against batch (float32, L=3, 1 channel, "
                      "1 thread) on m"]


def test_models_suite_gets_a_plot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bars, titles = _capture(monkeypatch)
    rec = _record({"e3nn/cgtp": {1: (2.0, 2.0, 2.0)}, "tp_torch/fused": {1: (1.0, 1.0, 1.0)}},
                  suite="models", name="mace-large")
    (f,) = report.plots(rec, tmp_path)
    assert f.name == "models_cgtp.png" and f.stat().st_size > 1000
    assert titles == ["models: CGTP against shape (float32, batch 16, 1 thread) on m"]
    speed = next(b for b in bars if b["label"] == "tp_torch/fused"
                 and b["ax"].get_ylabel().startswith("speedup"))
    assert speed["y"] == pytest.approx([2.0])


def test_docs_page_command_writes_record_pages(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "m" / "run" / "results.json"
    path.parent.mkdir(parents=True)
    report.dump(_record(TIMES), path)
    assert main(["docs-page", "--write-pages", str(path)]) == 0
    out = capsys.readouterr().out
    assert "## Headline ratios" in out and "3.5x (2-6.5)" in out
    page = (path.parent / "results.md").read_text()
    assert page.startswith("# Benchmark record ") and "- status: current" in page
    assert "![MIMO_cgtp](MIMO_cgtp.png)" in page and (path.parent / "MIMO_cgtp.png").exists()
    assert "| cgtp | tp_torch/fused | 2.00 s (x3) | 3.00 s (x4) |" in page


def test_rows_against_an_older_anchor_configuration_are_marked() -> None:
    """The newest record times e3nn/cgtp with ``fft=False`` in every cell (grid sizes aside):
    an older record's rows against e3nn/cgtp without it are marked, on any machine."""
    old, new = _record(TIMES), _record(TIMES, created="2026-02-01T00:00:00+00:00",
                                       machine="m2")
    for rec, note in ((old, "grid 7x9"), (new, "grid 3x5, fft=False")):
        for r in rec["results"]:
            if r["subject"] == "e3nn/cgtp":
                r["note"] = note
    paths = ["benchmarks/results/m/old/results.json", "benchmarks/results/m2/new/results.json"]
    older = summary.older_anchors(list(zip(paths, (old, new), strict=True)))
    assert older == {paths[0]: {("MIMO", "cgtp", "fwd", "tp_torch/fused"):
                                frozenset({"fft=False"})}, paths[1]: {}}
    page = claims.docs_page(list(zip(paths, (old, new), strict=True)))
    assert "| m/old | MIMO | CGTP | tp_torch/fused vs e3nn/cgtp | L=1,2 | 3.5x (2-6.5) † |" in page
    assert "| m2/new | MIMO | CGTP | tp_torch/fused vs e3nn/cgtp | L=1,2 | 3.5x (2-6.5) |" in page
    assert "(e3nn/cgtp without: fft=False)" in page
