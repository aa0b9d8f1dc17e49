"""The "tp_kernels" logger names the fallback when Numba is missing (INFO: not printed unless the
application configures logging)."""

from __future__ import annotations

import logging
import subprocess
import sys

from tp_kernels import source as _kernel_source


def test_missing_numba_is_logged(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    _kernel_source._numba_importable.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="tp_kernels"):
            assert not _kernel_source.available()
    finally:
        _kernel_source._numba_importable.cache_clear()  # the next check sees the real Numba
    [rec] = [r for r in caplog.records if r.name == "tp_kernels"]
    assert rec.levelno == logging.INFO
    assert "Numba is not importable" in rec.getMessage()
    assert "compiled CPU kernels are off" in rec.getMessage()


def test_missing_numba_prints_nothing_by_default():
    code = ("import sys\n"
            "sys.modules['numba'] = None\n"
            "from tp_kernels import source as _kernel_source\n"
            "print(_kernel_source.available())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       timeout=300)
    assert r.stdout.strip() == "False"
    assert "tp_kernels" not in r.stderr and "Numba" not in r.stderr
