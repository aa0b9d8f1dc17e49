"""The command line works from any directory: the default paths that name repository files
resolve next to the harness, and the installed ``tp-bench`` command is the CLI's ``main``."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from benchmarks import cli

ROOT = Path(__file__).resolve().parents[2]


def test_tp_bench_entry_point_is_the_cli():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module, func = project["scripts"]["tp-bench"].split(":")
    assert getattr(importlib.import_module(module), func) is cli.main


def test_default_folders_do_not_follow_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.RESULTS_DIR == ROOT / "benchmarks" / "results"
    assert cli.OUT_DIR == ROOT / "benchmarks" / "out"
    train = cli.build_parser().parse_args(["train"])
    assert Path(train.out) == ROOT / "benchmarks" / "out" / "train"


def test_docs_page_defaults_to_the_committed_records(tmp_path, monkeypatch, capsys):
    records = cli.committed_records()
    assert records, "no committed records under benchmarks/results"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["docs-page"]) == 0
    page = capsys.readouterr().out
    suites = [name for name in records if name.endswith("/results.json")]
    assert suites
    for name, path in records.items():
        assert name.startswith("benchmarks/results/") and path.is_file()
    for name in suites:  # each suite record's run (<machine>/<run>) is on the page
        assert str(Path(name).parent.relative_to("benchmarks/results")) in page
    assert not any(tmp_path.iterdir())  # nothing written to the working directory
