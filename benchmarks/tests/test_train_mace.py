"""``python -m benchmarks train --model mace``: the record, its table and plot, and the two
backends training alike (runs where mace-torch is installed: ``nox -s mace``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mace.modules")

ROOT = Path(__file__).resolve().parents[2]


def test_train_command_writes_record_table_and_plot(tmp_path):
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    subprocess.run([sys.executable, "-m", "benchmarks", "train", "--model", "mace", "--size",
                    "tiny", "--steps", "2", "--threads", "1", "--structures", "4",
                    "--out", str(tmp_path)], cwd=ROOT, env=env, check=True,
                   capture_output=True, text=True)
    record = json.loads((tmp_path / "train-mace-tiny.json").read_text())
    assert record["kind"] == "training" and record["command"].startswith("python -m benchmarks")
    (run,) = record["runs"]
    assert run["threads"] == "1" and run["torch_threads"] == 1
    e3nn, ours = run["backends"]["e3nn"], run["backends"]["tp_torch"]
    assert len(e3nn["loss"]) == len(ours["loss"]) == 3  # one warm-up + two timed steps
    assert len(e3nn["step_s"]) == len(ours["step_s"]) == 2
    # same initial weights, same data, same optimizer: the same training to float32 noise
    for a, b in zip(e3nn["loss"], ours["loss"], strict=True):
        assert abs(a - b) <= 1e-4 * abs(a)
    for b in (e3nn, ours):
        assert b["time"]["q1"] <= b["time"]["median"] <= b["time"]["q3"]
        assert b["memory"]["rss_peak_mib"] > 0
    assert run["speedup"] == pytest.approx(e3nn["time"]["median"] / ours["time"]["median"])
    table = (tmp_path / "train-mace-tiny.md").read_text()
    assert "| 1 | tp_torch |" in table and "| 1 | e3nn |" in table
    assert (tmp_path / "train-mace-tiny.png").stat().st_size > 1000


def test_product_basis_experiment_record(tmp_path):
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    subprocess.run([sys.executable, "-m", "benchmarks", "train", "--model", "mace",
                    "--experiment", "product-basis", "--size", "tiny", "--steps", "1",
                    "--threads", "1", "--structures", "4", "--no-plots", "--out",
                    str(tmp_path)], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    record = json.loads((tmp_path / "train-mace-tiny.json").read_text())
    (run,) = record["runs"]
    variants = run["variants"]
    assert set(variants) == {"cg", "gaunt-grid", "gaunt-fourier"}
    for r in variants.values():
        assert len(r["epoch_s"]) == 1 and len(r["val"]) == 2  # warm-up epoch + one timed
        assert r["val"][-1]["force_mae"] > 0
    # the two Gaunt variants are one model computed two ways: the same training
    for a, b in zip(variants["gaunt-grid"]["loss"], variants["gaunt-fourier"]["loss"],
                    strict=True):
        assert abs(a - b) <= 1e-4 * abs(a)
    assert run["fourier_over_grid"] == pytest.approx(
        variants["gaunt-fourier"]["time"]["median"] / variants["gaunt-grid"]["time"]["median"])
    assert "Fourier / grid time per epoch" in (tmp_path / "train-mace-tiny.md").read_text()
