"""``tp_torch.precompile``: the kernels of a module compiled ahead of time into the cache of
:mod:`tp_kernels.cache` (a new process's forward and backward compile nothing), its input
checks and command line."""

from __future__ import annotations

import logging

import pytest
import torch
import tp_spec
import tp_torch
from tp_kernels import source as _kernel_source

pytestmark = pytest.mark.skipif(not _kernel_source._numba_importable(), reason="Numba missing")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """``precompile`` into an empty cache, as if in a new process."""
    saved = _kernel_source.forget()
    monkeypatch.setenv("TP_KERNELS_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    _kernel_source.restore(saved)


def compiles(caplog):
    return [r.getMessage() for r in caplog.records if "compiling" in r.getMessage()]


def test_precompile_then_the_module_loads_every_kernel(fresh, caplog):
    """``precompile`` a module; a new process's forward and backward compile nothing, and every
    kernel was compiled for exactly the argument types the executors pass."""
    caplog.set_level(logging.INFO, logger="tp_kernels")
    d = tp_spec.cgtp("2x0e", "0e+1o", "0e+1o", mode="uvu")
    tp = tp_torch.TensorProduct(d, "fused")
    res = tp_torch.precompile(tp, dtypes=("float64",))
    assert res["kernels"] == 2 * len(d.paths) and res["cache_dir"] == str(fresh / "cpu_kernels")
    assert len(compiles(caplog)) == 1
    _kernel_source.forget()
    caplog.clear()
    x1 = torch.randn(4, d.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(4, d.irreps_in2.dim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, d.weight_numel, dtype=torch.float64, requires_grad=True)
    tp(x1, x2, w).square().sum().backward()
    assert compiles(caplog) == []
    for p in d.paths:
        m = _kernel_source._MODULES[(*p.lll, "float64")]
        assert m.ready == {"fwd", "bwd"}
        assert len(m.mod.fwd.signatures) == 1 and len(m.mod.bwd.signatures) == 1

def test_precompile_rejects_bad_input(fresh):
    d = tp_spec.cgtp("2x0e", "0e", "0e", mode="uvu")
    with pytest.raises(ValueError, match="float16"):
        tp_torch.precompile(d, dtypes=("float16",))
    with pytest.raises(TypeError, match="descriptors or torch modules"):
        tp_torch.precompile(["2x0e"])


def test_precompile_command_line(capsys):
    from tp_torch.precompile import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--mace-medium", "--mace-large", "--irreps", "--dtype", "--conv",
                "--cache-dir"):
        assert opt in text
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2 and "nothing to compile" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--irreps", "2x0e", "0e", "not-irreps"])
    assert "--irreps 2x0e 0e not-irreps" in capsys.readouterr().err
