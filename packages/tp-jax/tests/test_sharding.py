"""2-device sharding and shard_map, in a subprocess (the device count is fixed at JAX start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_two_device_sharding_subprocess():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    script = Path(__file__).with_name("_sharding_script.py")
    res = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SHARDING OK" in res.stdout
