"""``python -m benchmarks train --model nequip``: the record and the two backends training alike
(runs where nequip is installed: ``nox -s nequip``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nequip.model")

ROOT = Path(__file__).resolve().parents[2]


def test_train_command_nequip_backends_train_alike(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks", "train", "--model", "nequip", "--size",
                    "tiny", "--steps", "2", "--threads", "1", "--structures", "2",
                    "--no-memory", "--no-plots", "--out", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    record = json.loads((tmp_path / "train-nequip-tiny.json").read_text())
    assert record["kind"] == "training" and record["model"] == "nequip"
    (run,) = record["runs"]
    assert run["model"] == "nequip" and run["size"] == "tiny" and run["dtype"] == "float32"
    assert run["threads"] == "1" and run["torch_threads"] == 1
    assert set(run["versions"]) == {"torch", "nequip", "python"}
    e3nn, ours = run["backends"]["e3nn"], run["backends"]["tp_torch"]
    assert len(e3nn["loss"]) == len(ours["loss"]) == 3  # one warm-up + two timed steps
    # same initial weights, same data, same optimizer: the same training to float32 noise
    for a, b in zip(e3nn["loss"], ours["loss"], strict=True):
        assert math.isfinite(a) and abs(a - b) <= 1e-4 * abs(a)
    assert len(set(e3nn["loss"])) > 1  # the Adam steps change the weights
    for b in (e3nn, ours):
        assert len(b["step_s"]) == 2 and all(t > 0 for t in b["step_s"])
        assert b["time"]["q1"] <= b["time"]["median"] <= b["time"]["q3"]
        assert "memory" not in b
    assert math.isfinite(run["speedup"]) and run["speedup"] > 0
    assert run["speedup"] == pytest.approx(e3nn["time"]["median"] / ours["time"]["median"])
    assert run["max_loss_rel_diff"] <= 1e-4
    table = (tmp_path / "train-nequip-tiny.md").read_text()
    assert "| 1 | tp_torch |" in table and "| 1 | e3nn |" in table
    assert not (tmp_path / "train-nequip-tiny.png").exists()
