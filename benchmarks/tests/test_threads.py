"""``benchmarks.threads``: ``--threads N`` pins the process (and the children it starts) to N CPUs,
so that XLA, which ignores the thread flags for its dots, runs on N cores too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.threads import ONE_THREAD_XLA_FLAGS, cpus_for, pin_child

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity")
needs_two = pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _: [0])(0)) < 2,
                               reason="one CPU: pinning to one cannot be told from not pinning")


def _child(code: str, **kwargs) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; its last stdout line."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "OMP_NUM_THREADS")}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False, **kwargs)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip().splitlines()[-1]


def test_cpus_for_rejects_zero_threads():
    with pytest.raises(ValueError, match="positive integer"):
        cpus_for(0)


@linux_only
def test_cpus_for_takes_the_first_allowed_cpus():
    allowed = sorted(os.sched_getaffinity(0))
    assert cpus_for(1) == allowed[:1]
    assert cpus_for(len(allowed) + 5) == allowed  # never more than the process may use


@linux_only
@needs_two
def test_pin_one_restricts_the_process_and_sets_the_flags():
    info = json.loads(_child("""
        import json, os
        from benchmarks.threads import pin
        info = pin(1)
        info["affinity"] = len(os.sched_getaffinity(0))
        info["omp"] = os.environ["OMP_NUM_THREADS"]
        print(json.dumps(info))
    """))
    assert info["affinity"] == 1 and info["cpus"] == cpus_for(1)
    assert info["omp"] == "1" and ONE_THREAD_XLA_FLAGS in info["XLA_FLAGS"]
    if "torch_threads" in info:
        assert info["torch_threads"] == 1


@linux_only
@needs_two
def test_pin_default_leaves_every_cpu():
    info = json.loads(_child("""
        import json
        from benchmarks.threads import pin
        print(json.dumps(pin("default")))
    """))
    assert info["cpus"] == sorted(os.sched_getaffinity(0))
    assert info["XLA_FLAGS"] == ""


@linux_only
@needs_two
def test_pin_child_starts_the_child_on_n_cpus():
    code = "import os; print(len(os.sched_getaffinity(0)))"
    assert _child(code, preexec_fn=pin_child(1)) == "1"
    assert _child(code, preexec_fn=pin_child(None)) == str(len(os.sched_getaffinity(0)))


@linux_only
@needs_two
def test_pinned_xla_matmul_uses_one_cpu():
    """The reason for the affinity: XLA's dot runs on every CPU the process may use, whatever
    the flags say. Pinned, the process's CPU time cannot exceed its wall time."""
    pytest.importorskip("jax")
    out = json.loads(_child("""
        import json, time
        from benchmarks.threads import pin
        pin(1)
        import jax, jax.numpy as jnp
        a = jnp.ones((1024, 1024), jnp.float32)
        f = jax.jit(lambda a: a @ a)
        f(a).block_until_ready()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(40):
            f(a).block_until_ready()
        print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
    """))
    assert out["cpu"] <= 1.1 * out["wall"] + 0.02, out
