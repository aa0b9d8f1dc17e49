"""The CPU memory cap turns an allocation that does not fit into an exception, not a kill."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from benchmarks import memory


@pytest.mark.skipif(memory.address_space_in_use() is None, reason="needs Linux /proc")
def test_allocation_over_the_cap_raises_and_the_process_lives() -> None:
    # In a child process: the cap cannot be lifted again once set.
    code = textwrap.dedent("""
        import numpy as np
        from benchmarks.memory import cap_address_space, address_space_in_use
        cap = cap_address_space(512 * 2**20)
        assert cap is not None and cap - address_space_in_use() <= 512 * 2**20
        small = np.ones(2**20)  # 8 MiB fits
        try:
            np.ones(2**28)  # 2 GiB does not
        except MemoryError:
            print("refused", small.sum())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", str(float(2**20))]


def test_fraction_is_validated() -> None:
    with pytest.raises(ValueError, match="fraction"):
        memory.cap_address_space(fraction=1.5)


def test_cli_rejects_a_bad_cap() -> None:
    from benchmarks.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--memory-cap", "lots"])
    assert build_parser().parse_args(["run", "--memory-cap", "2.5"]).memory_cap == 2.5


@pytest.mark.skipif(memory.address_space_in_use() is None, reason="needs Linux /proc")
def test_rearmed_cap_makes_room_after_memory_stays_mapped() -> None:
    """Memory the process keeps mapped (here: held on purpose) uses up a cap set once; the
    cap re-armed before the next task counts from what is in use then."""
    code = textwrap.dedent("""
        import numpy as np
        from benchmarks.memory import cap_address_space
        cap_address_space(600 * 2**20)
        held = np.ones(2**26)  # 512 MiB stays mapped
        try:
            np.ones(2**26)
            print("fits")
        except MemoryError:
            print("refused")
        cap_address_space(600 * 2**20)  # re-armed
        more = np.ones(2**26)
        print("fits", int(held[0] + more[0]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "fits", "2"]
