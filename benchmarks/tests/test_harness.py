"""Schema validation, the reference-check refusal, the compare command, the CLI plumbing."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report, runner
from benchmarks.cli import main

from .conftest import FAST, FakeSubject


def test_record_is_valid_and_timed(tiny_record: dict[str, Any]) -> None:
    report.validate(tiny_record)
    (r,) = tiny_record["results"]
    assert r["status"] == "ok" and r["check"]["ok"]
    assert r["stats"]["min"] <= r["stats"]["median"] <= r["stats"]["max"]
    assert len(r["samples_s"]) == r["stats"]["n"] == 3
    assert tiny_record["machine"]["name"] == "test-machine"
    json.dumps(tiny_record)  # serialisable


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("machine"), "machine"),
    (lambda r: r.update(schema_version=99), "schema_version"),
    (lambda r: r["results"][0].update(status="great"), "status"),
    (lambda r: r["results"][0].update(samples_s=[]), "samples_s"),
    (lambda r: r["results"][0]["check"].update(ok=False), "reference check"),
    (lambda r: r["results"][0].update({"pass": "sideways"}), "pass"),
    (lambda r: r["results"][0]["stats"].update(median=-1.0), "median"),
])
def test_schema_rejects(tiny_record: dict[str, Any], mutate: Any, message: str) -> None:
    bad = copy.deepcopy(tiny_record)
    mutate(bad)
    with pytest.raises(report.SchemaError, match=message):
        report.validate(bad)


def test_wrong_subject_is_refused_and_never_timed(tiny_workload: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[str] = []
    real_measure = runner.measure

    def spy(call: Any, **kw: Any) -> Any:
        timed.append("called")
        return real_measure(call, **kw)

    monkeypatch.setattr(runner, "measure", spy)
    wrong = FakeSubject("fake/wrong", factor=1.01)  # 1% off: far outside float32 tolerance
    right = FakeSubject("fake/right")
    rec = runner.run([tiny_workload], [wrong, right], passes=("fwd",), progress=False,
                     timing=FAST)
    report.validate(rec)
    by = {r["subject"]: r for r in rec["results"]}
    assert by["fake/wrong"]["status"] == "failed check"
    assert "samples_s" not in by["fake/wrong"]
    assert by["fake/wrong"]["check"]["rel_err"] == pytest.approx(0.01, rel=1e-6)
    assert by["fake/right"]["status"] == "ok"
    assert timed == ["called"]  # only the right subject was timed


def test_unavailable_subject_is_reported_not_raised(tiny_workload: Any) -> None:
    class Missing(FakeSubject):
        def available(self) -> str | None:
            return "cannot import nothing_here"

    rec = runner.run([tiny_workload], [Missing("missing/x")], passes=("fwd", "bwd"),
                     progress=False, timing=FAST)
    assert [r["status"] for r in rec["results"]] == ["unavailable", "unavailable"]
    assert "nothing_here" in rec["results"][0]["reason"]
    report.validate(rec)


def test_compare_and_cli(tiny_record: dict[str, Any], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    report.dump(tiny_record, a)
    slower = copy.deepcopy(tiny_record)
    r = slower["results"][0]
    r["samples_s"] = [s * 2 for s in r["samples_s"]]
    r["stats"] = {k: (v * 2 if k != "n" else v) for k, v in r["stats"].items()}
    report.dump(slower, b)
    text = report.compare(tiny_record, slower)
    assert "| 2 |" in text and "geometric mean B/A = 2" in text
    assert main(["compare", str(a), str(b)]) == 0
    assert "B/A" in capsys.readouterr().out
    assert main(["validate", str(a)]) == 0
    assert main(["docs-page", str(a)]) == 0
    assert "# Benchmark results" in capsys.readouterr().out


def test_markdown_speedups_against_anchor(tiny_workload: Any) -> None:
    fast = FakeSubject("tp_torch/fake")  # a torch subject: its primary anchor is e3nn's
    rec = runner.run([tiny_workload], [fast], passes=("fwd",), progress=False, timing=FAST)
    # pretend an anchor of this op ran 3x slower in the same run
    anchor = copy.deepcopy(rec["results"][0])
    anchor["subject"] = "e3nn/cgtp"
    anchor["anchor"] = True
    anchor["stats"] = {k: (v * 3 if k != "n" else v) for k, v in anchor["stats"].items()}
    rec["results"].append(anchor)
    sp = report.speedups(rec)
    key = next(k for k in sp if k[-1] == "tp_torch/fake")
    assert sp[key]["e3nn/cgtp"] == pytest.approx(3.0)
    assert "x3" in report.markdown(rec)


def test_plots_written(tiny_workload: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from dataclasses import replace

    wls = [tiny_workload, replace(tiny_workload, irreps_in1="0e+1o+2e",
                                  irreps_in2="0e+1o+2e", irreps_out="0e+1o+2e", L=2)]
    rec = runner.run(wls, [FakeSubject()], passes=("fwd",), progress=False, timing=FAST)
    files = report.plots(rec, tmp_path)
    assert files and all(f.suffix == ".png" and f.stat().st_size > 1000 for f in files)


def test_checkpoint_gets_a_valid_record_after_each_task(tiny_workload: Any) -> None:
    """A run that dies midway (the OOM killer took a paper-suite run at L=8) keeps the tasks
    done: the CLI writes each checkpoint to ``results.partial.json``."""
    seen: list[dict[str, Any]] = []
    rec = runner.run([tiny_workload], [FakeSubject("fake/a"), FakeSubject("fake/b")],
                     passes=("fwd",), progress=False, timing=FAST,
                     checkpoint=lambda r: seen.append(copy.deepcopy(r)))
    assert [len(r["results"]) for r in seen] == [1, 2]
    for r in seen:
        report.validate(r)
    assert seen[0]["results"][0]["subject"] == "fake/a"
    assert seen[-1]["results"] == rec["results"]


def test_slow_first_call_is_skipped_not_timed(tiny_workload: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_call_s``: a subject whose first call exceeds it is recorded as skipped with that
    call's time and is never handed to ``measure``; a fast subject in the same run is timed."""
    import time

    class Slow(FakeSubject):
        def build(self, wl: Any, dtype: str, device: str) -> Any:
            built = super().build(wl, dtype, device)
            inner = built.fn

            def fn(*a: Any) -> Any:
                time.sleep(0.05)
                return inner(*a)

            built.fn = fn
            return built

    timed: list[int] = []
    real_measure = runner.measure
    monkeypatch.setattr(runner, "measure", lambda call, **kw: (timed.append(1),
                                                                real_measure(call, **kw))[1])
    rec = runner.run([tiny_workload], [Slow("fake/slow"), FakeSubject("fake/fast")],
                     passes=("fwd",), progress=False, timing=FAST, max_call_s=0.03)
    report.validate(rec)
    by = {r["subject"]: r for r in rec["results"]}
    slow = by["fake/slow"]
    assert slow["status"] == "skipped" and slow["reason"].startswith("slow call")
    assert slow["first_call_s"] >= 0.05 and "samples_s" not in slow
    assert by["fake/fast"]["status"] == "ok"
    assert timed == [1]  # only the fast subject was timed
    text = report.markdown(rec)
    assert "slow call" in text and "fake/slow cgtp MIMO L=1 fwd" in text


def test_subject_filter_by_op() -> None:
    """``name@op`` selects one op's subject where a method name exists for several ops."""
    from benchmarks.subjects import all_subjects

    both = all_subjects(("tp_torch/sparse",))
    assert sorted(op for s in both for op in s.ops) == ["cgtp", "mtp"]
    (only,) = all_subjects(("tp_torch/sparse@mtp",))
    assert only.ops == ("mtp",) and only.name == "tp_torch/sparse"
    assert all_subjects(("tp_torch/sparse@gtp",)) == []
    assert {s.name for s in all_subjects(("e3nn@cgtp",))} == {"e3nn/cgtp", "e3nn-jax/cgtp"}


def test_merge_replaces_and_adds_cells(tiny_workload: Any, tmp_path: Path) -> None:
    """``merge``: a later run's cell replaces the first run's cell of the same workload, pass
    and subject; its other cells are added; the record lists what was merged; records from
    another machine or other library versions are refused."""
    from dataclasses import replace

    first = runner.run([tiny_workload], [FakeSubject("fake/a"), FakeSubject("fake/b")],
                       passes=("fwd",), progress=False, timing=FAST, machine="m")
    wl2 = replace(tiny_workload, irreps_in1="0e+1o+2e", irreps_in2="0e+1o+2e",
                  irreps_out="0e+1o+2e", L=2)
    second = runner.run([tiny_workload, wl2], [FakeSubject("fake/b")], passes=("fwd",),
                        progress=False, timing=FAST, machine="m")
    merged = report.merge(first, second)
    report.validate(merged)
    cells = {(r["subject"], r["workload"]["L"]): r for r in merged["results"]}
    assert sorted(cells) == [("fake/a", 1), ("fake/b", 1), ("fake/b", 2)]
    assert cells[("fake/b", 1)]["samples_s"] == second["results"][0]["samples_s"]
    assert cells[("fake/a", 1)]["samples_s"] == first["results"][0]["samples_s"]
    (m,) = merged["config"]["merged"]
    assert (m["replaced"], m["added"]) == (1, 1)
    # merging into a merged record keeps its history
    again = report.merge(merged, second)
    assert [(x["replaced"], x["added"]) for x in again["config"]["merged"]] == [(1, 1), (2, 0)]
    other = copy.deepcopy(second)
    other["machine"]["name"] = "elsewhere"
    with pytest.raises(ValueError, match="machine"):
        report.merge(first, other)
    other = copy.deepcopy(second)
    other["device"] = "cuda"
    with pytest.raises(ValueError, match="device"):
        report.merge(first, other)
    other = copy.deepcopy(second)
    other["versions"]["numpy"] = "0.0.1"
    with pytest.raises(ValueError, match="numpy"):
        report.merge(first, other)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    report.dump(first, a)
    report.dump(second, b)
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m"), "--no-plots",
                 "--note", "two runs"]) == 0
    on_disk = report.load(tmp_path / "m" / "results.json")
    assert on_disk["config"]["note"] == "two runs" and len(on_disk["results"]) == 3


def test_merge_keeps_which_rows_ran_pinned(tiny_workload: Any) -> None:
    """Rows carry the CPUs their run was pinned to (``cpus``), also through ``merge`` from a
    run whose rows predate the field; a one-thread record with a JAX row that has none is
    flagged (XLA's dots then used every core), and not once every JAX row is re-timed pinned.
    A later run's matmul peak replaces the base's."""
    from benchmarks.claims import unpinned_jax

    def run(config: dict[str, Any]) -> dict[str, Any]:
        rec = runner.run([tiny_workload], [FakeSubject("fake/a"), FakeSubject("fake/b")],
                         passes=("fwd",), progress=False, timing=FAST, machine="m",
                         config=config)
        rec["machine"]["cores"] = 4  # whatever this machine has
        for r in rec["results"]:
            if r["subject"] == "fake/b":
                r["framework"] = "jax"
        return rec

    old = run({"threads": 1})
    for r in old["results"]:
        del r["cpus"]  # a record from before the field
    old["machine"]["matmul_peak"] = {"jax": 200.0}
    assert unpinned_jax(old)
    pinned = run({"threads": 1, "cpus": [0]})
    assert all(r["cpus"] == [0] for r in pinned["results"]) and not unpinned_jax(pinned)
    del pinned["results"][0]  # the re-run times the JAX subject only
    pinned["machine"]["matmul_peak"] = {"jax": 100.0}
    merged = report.merge(old, pinned)
    assert not unpinned_jax(merged)
    assert merged["machine"]["matmul_peak"] == {"jax": 100.0}
    assert merged["config"]["merged"][0]["cpus"] == [0]
    assert unpinned_jax(report.merge(pinned, old))  # the old JAX row replaced the pinned one
    for config in ({"threads": "default"}, {"threads": 2, "cpu_count": 2}):  # every core
        every = run(config)
        for r in every["results"]:
            del r["cpus"]
        assert not unpinned_jax(every)


def test_paper_cgtp_modes() -> None:
    from benchmarks.workloads import paper_workloads

    wls = paper_workloads(("MIMO", "SISO"), (2,), ("cgtp",), 4, cgtp_modes=("uvw", "full", "uuu"))
    by_name = {w.name: w for w in wls}
    assert set(by_name) == {"MIMO", "MIMO-full", "MIMO-uuu", "SISO", "SISO-full", "SISO-uuu"}
    full = by_name["MIMO-full"].descriptor
    # 0e+1o+2e x 0e+1o+2e: every (l1, l2) pair gives l1 + l2 - |l1 - l2| + 1 paths
    assert len(full.paths) == sum(min(a, b) * 2 + 1 for a in range(3) for b in range(3))
    assert full.weight_numel == 0 and {p.mode for p in full.paths} == {"uvuv"}
    assert {ir.l for _, ir in by_name["SISO-full"].descriptor.irreps_out} == {2}
    assert len(by_name["MIMO-uuu"].descriptor.paths) == 1 + 3 + 5  # 0x0, 1x1, 2x2 blocks
    with pytest.raises(ValueError, match="unknown CGTP mode"):
        paper_workloads(("MIMO",), (1,), ("cgtp",), 4, cgtp_modes=("uvu",))


def test_threads_option() -> None:
    import argparse

    from benchmarks.cli import _threads, build_parser

    assert _threads("default") == "default" and _threads("3") == 3
    for bad in ("0", "-1", "all"):
        with pytest.raises(argparse.ArgumentTypeError, match="'default' or a positive"):
            _threads(bad)
    args = build_parser().parse_args(["run", "--threads", "default", "--framework", "jax"])
    assert args.threads == "default" and args.framework == "jax"


def test_peak_fraction() -> None:
    from benchmarks.peak import peak_fraction

    record = {"machine": {"matmul_peak": {"torch": {"gflops_per_s": 100.0}}}}
    r = {"framework": "torch", "stats": {"median": 0.01},
         "cost": {"flops_method": 2e8, "pass_factor": 2}}
    # 4e8 flops in 10 ms = 40 GFLOP/s = 40% of 100
    assert peak_fraction(r, record) == pytest.approx(0.4)
    assert peak_fraction({**r, "framework": "jax"}, record) is None


def test_opt_in_subjects_only_by_exact_name() -> None:
    from benchmarks.subjects import all_subjects

    assert "e3nn/cgtp-compiled" not in {s.name for s in all_subjects()}
    assert "e3nn/cgtp-compiled" not in {s.name for s in all_subjects(("e3nn",))}
    assert {s.name for s in all_subjects(("e3nn/cgtp-compiled",))} == {"e3nn/cgtp-compiled"}


def test_every_cli_option_has_help():
    import argparse

    from benchmarks.cli import build_parser

    parser = build_parser()
    (sub,) = parser._subparsers._group_actions
    missing = [(name, action.dest) for name, p in sub.choices.items() for action in p._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []


def test_measure_warms_up_for_warmup_s_before_timing() -> None:
    """A call slow for its first calls (one-off costs of a new shape) is warmed up for
    ``warmup_s`` and timed only once fast; with ``warmup_s=0`` one warm-up call is made."""
    from benchmarks.timing import measure

    def make() -> Any:
        n = [0]

        def call() -> None:
            n[0] += 1
            time.sleep(0.02 if n[0] <= 4 else 0.001)
        return call, n

    call, n = make()
    samples, info = measure(call, warmup=1, warmup_s=0.1, min_repeats=3, max_repeats=3,
                            target_s=0.0, min_sample_s=0.0)
    assert info["warmup"] >= 5 and max(samples) < 0.015
    call, n = make()
    samples, info = measure(call, warmup=1, warmup_s=0.0, min_repeats=3, max_repeats=3,
                            target_s=0.0, min_sample_s=0.0)
    assert info["warmup"] == 1 and min(samples) > 0.015  # the slow calls were timed
