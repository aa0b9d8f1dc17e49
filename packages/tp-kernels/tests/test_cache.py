"""The compiled CPU kernels' cache (:mod:`tp_kernels.cache`): one compile per kernel and
cache directory (log line, helper processes, other processes load it), and what is refused:
files and directories another user can write, files that differ from the hashes this user
recorded (corrupt or planted pickles), planted sources. Every test uses its own
``TP_KERNELS_CACHE_DIR`` and small paths."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tp_kernels import cache as _kernel_cache
from tp_kernels import source as _kernel_source
from tp_spec import clebsch_gordan

pytestmark = pytest.mark.skipif(not _kernel_source._numba_importable(), reason="Numba missing")

OTHER_UID = 54321  # a user that is not this one (the tests run as root: chown works)
PATH = (1, 1, 1)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache directory, and this process's loaded kernels and warnings forgotten (a
    new process, as far as the cache is concerned)."""
    monkeypatch.setenv("TP_KERNELS_CACHE_DIR", str(tmp_path / "cache"))
    saved = _kernel_source.forget()
    yield tmp_path / "cache"
    _kernel_source.restore(saved)


def forget():
    _kernel_source.forget()


def compiles(caplog):
    return [r.getMessage() for r in caplog.records if "compiling" in r.getMessage()]


def run_fwd(fwd, lll, dtype=np.float32, batch=3, mul=2, seed=0):
    """The forward kernel on random rows against ``w[u] * x1[u, i] C[i, j, k] x2[j]``."""
    rng = np.random.default_rng(seed)
    d1, d2, d3 = (2 * v + 1 for v in lll)
    x1 = rng.standard_normal((batch, mul * d1)).astype(dtype)
    x2 = rng.standard_normal((batch, d2)).astype(dtype)
    w = rng.standard_normal((batch, mul)).astype(dtype)
    out = np.full((batch, mul * d3), np.nan, dtype)
    fwd(x1, x2, w, 1, out, 0, 0, 0, 0, mul, dtype(0.5), False)
    c = np.asarray(clebsch_gordan(*lll), np.float64)
    want = 0.5 * np.einsum("bu,bui,ijk,bj->buk", w, x1.reshape(batch, mul, d1), c, x2)
    np.testing.assert_allclose(out.reshape(batch, mul, d3), want, rtol=1e-5, atol=1e-6)


def module(lll=PATH, dtype="float32"):
    return _kernel_source._MODULES[(*lll, dtype)]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A cache holding the forward of ``PATH`` (float32), compiled once for the tests that
    copy it and tamper with the copy."""
    root = tmp_path_factory.mktemp("template") / "cache"
    old = os.environ.get("TP_KERNELS_CACHE_DIR")
    os.environ["TP_KERNELS_CACHE_DIR"] = str(root)
    saved = dict(_kernel_source._MODULES)
    forget()
    try:
        _kernel_source.kernel_table([PATH], "float32", ("fwd",))
    finally:
        forget()
        _kernel_source._MODULES.update(saved)
        if old is None:
            del os.environ["TP_KERNELS_CACHE_DIR"]
        else:
            os.environ["TP_KERNELS_CACHE_DIR"] = old
    return root


@pytest.fixture
def copied(template, fresh):
    shutil.copytree(template, fresh)  # keeps mtimes: Numba's source stamp still matches
    return fresh / "cpu_kernels"


def numba_files(kdir, kind="fwd"):
    return sorted(p for p in (kdir / "__pycache__").iterdir()
                  if f".{kind}-" in p.name and p.suffix in (".nbi", ".nbc"))


class Payload:
    """Unpickling this creates ``marker``: the code a planted pickle would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def plant_pickle(path, marker):
    path.write_bytes(pickle.dumps(Payload(marker)))


# -- compile once, log once, load elsewhere -------------------------------------------------

def test_compile_logs_once_then_loads_from_disk(fresh, caplog):
    caplog.set_level(logging.INFO, logger="tp_kernels")
    (fwd,) = _kernel_source.kernel_table([PATH], "float32", ("fwd",))[0]
    msgs = compiles(caplog)
    assert len(msgs) == 1 and "compiling 1 CPU kernels" in msgs[0]
    assert str(fresh / "cpu_kernels") in msgs[0]
    run_fwd(fwd, PATH)
    _kernel_source.kernel_table([PATH], "float32", ("fwd",))  # same process: nothing new
    assert len(compiles(caplog)) == 1
    assert _kernel_source._MODULES[(*PATH, "float32")].mod.fwd.signatures  # compiled here
    forget()  # as a new process: loads the machine code Numba cached
    caplog.clear()
    (fwd2,) = _kernel_source.kernel_table([PATH], "float32", ("fwd",))[0]
    assert compiles(caplog) == []
    assert fwd2 is not fwd
    run_fwd(fwd2, PATH)
    st = os.stat(fresh / "cpu_kernels")
    assert st.st_mode & 0o077 == 0  # the kernel directory is this user's only


def test_helper_processes_fill_the_cache(fresh, monkeypatch, caplog):
    """Two forwards with one helper process: the helper's kernel is recorded and loaded."""
    caplog.set_level(logging.INFO, logger="tp_kernels")
    monkeypatch.setenv("TP_KERNELS_COMPILE_WORKERS", "1")
    monkeypatch.setattr(_kernel_cache, "_MIN_JOBS_PER_WORKER", 1)
    paths = [(0, 1, 1), (1, 0, 1)]
    table = _kernel_source.kernel_table(paths, "float32", ("fwd",))
    assert len(compiles(caplog)) == 1
    for (fwd,), lll in zip(table, paths, strict=True):
        run_fwd(fwd, lll)
    kdir = fresh / "cpu_kernels"
    for lll in paths:
        m = module(lll)
        assert m.on_disk("fwd")
        recorded = (kdir / f"{m.name}.sha256").read_text()
        assert all(p.name in recorded for p in m._numba_files())
    assert {len(module(lll).mod.fwd.signatures) for lll in paths} == {1}


def test_two_processes_compile_once(fresh, tmp_path):
    """Two processes starting together on an empty cache: the lock makes one compile and the
    other load."""
    code = textwrap.dedent("""
        import logging, sys
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        from tp_kernels import source as _kernel_source
        _kernel_source.kernel_table([(0, 0, 0)], "float64", ("fwd",))
    """)
    env = {**os.environ, "TP_KERNELS_COMPILE_WORKERS": "0"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sum("compiling 1 CPU kernels" in e for e in errs) == 1, errs


def test_kernel_table_rejects_bad_input():
    with pytest.raises(ValueError, match="float32 or float64"):
        _kernel_source.kernel_table([PATH], "float16")
    with pytest.raises(ValueError, match="unknown kernel kinds"):
        _kernel_source.kernel_table([PATH], "float32", ("fwdd",))


def test_compile_workers_variable_is_checked(monkeypatch):
    monkeypatch.setenv("TP_KERNELS_COMPILE_WORKERS", "many")
    with pytest.raises(ValueError, match="TP_KERNELS_COMPILE_WORKERS"):
        _kernel_cache.workers()
    monkeypatch.setenv("TP_KERNELS_COMPILE_WORKERS", "3")
    assert _kernel_cache.workers() == 3


def test_kernels_switch_is_read_at_every_call(monkeypatch):
    monkeypatch.setenv("TP_TORCH_CPU_KERNELS", "0")
    assert not _kernel_source.available("TP_TORCH_CPU_KERNELS")
    assert _kernel_source.available("TP_JAX_CPU_KERNELS")  # each backend's own switch
    assert _kernel_source.available()
    monkeypatch.setenv("TP_TORCH_CPU_KERNELS", "1")
    assert _kernel_source.available("TP_TORCH_CPU_KERNELS")


# -- what is refused -----------------------------------------------------------------------

@pytest.mark.parametrize("tamper", ["other_owner", "group_writable", "not_recorded"])
def test_planted_pickle_is_refused(copied, tmp_path, caplog, tamper):
    """A pickle planted as the forward's index: never unpickled, deleted, the kernel
    rebuilt, one warning."""
    caplog.set_level(logging.INFO, logger="tp_kernels")
    (nbi,) = [p for p in numba_files(copied) if p.suffix == ".nbi"]
    marker = tmp_path / "ran"
    plant_pickle(nbi, marker)
    if tamper == "other_owner":
        os.chown(nbi, OTHER_UID, OTHER_UID)
    elif tamper == "group_writable":
        os.chmod(nbi, 0o664)
    (fwd,) = _kernel_source.kernel_table([PATH], "float32", ("fwd",))[0]
    assert not marker.exists()
    refused = [r for r in caplog.records if "refusing" in r.getMessage()]
    assert len(refused) == 1 and r"nbi" in refused[0].getMessage()
    assert len(compiles(caplog)) == 1
    run_fwd(fwd, PATH)
    assert os.stat(numba_files(copied)[0]).st_uid == os.getuid()


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
def test_corrupt_cache_file_is_rebuilt_once(copied, caplog, suffix):
    """A truncated index or data file: one warning, rebuilt, and later calls (other
    processes) load the rebuilt file without any warning."""
    caplog.set_level(logging.INFO, logger="tp_kernels")
    (f,) = [p for p in numba_files(copied) if p.suffix == suffix]
    f.write_bytes(f.read_bytes()[:7])
    (fwd,) = _kernel_source.kernel_table([PATH], "float32", ("fwd",))[0]
    run_fwd(fwd, PATH)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING
                and "refusing" in r.getMessage()]) == 1
    forget()
    caplog.clear()
    (fwd,) = _kernel_source.kernel_table([PATH], "float32", ("fwd",))[0]
    run_fwd(fwd, PATH)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_planted_source_is_never_executed(copied, tmp_path):
    """A source file replaced by another user's: not executed (the module runs from the
    generated text), replaced by this user's."""
    _kernel_source.kernel_table([PATH], "float32", ("fwd",))
    name = module().name
    forget()
    src = copied / f"{name}.py"
    marker = tmp_path / "ran"
    src.write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    os.chown(src, OTHER_UID, OTHER_UID)
    (fwd,) = _kernel_source.kernel_table([PATH], "float32", ("fwd",))[0]
    run_fwd(fwd, PATH)
    assert not marker.exists()
    assert os.stat(src).st_uid == os.getuid() and "import os" not in src.read_text()


@pytest.mark.parametrize("unsafe", ["other_owner", "group_writable", "root_other_writable"])
def test_unsafe_cache_directory_compiles_in_memory(copied, tmp_path, caplog, unsafe):
    """A cache directory another user owns or can write (a shared cache): nothing in it is
    loaded (a planted index would run), no PermissionError, one warning, kernels in memory."""
    caplog.set_level(logging.INFO, logger="tp_kernels")
    (nbi,) = [p for p in numba_files(copied) if p.suffix == ".nbi"]
    marker = tmp_path / "ran"
    plant_pickle(nbi, marker)
    manifest = next(copied.glob("*.sha256"))  # recorded: only the directory check stops it
    hashes = json.loads(manifest.read_text())
    hashes[nbi.name] = hashlib.sha256(nbi.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(hashes))
    if unsafe == "other_owner":
        os.chown(copied, OTHER_UID, OTHER_UID)
    elif unsafe == "group_writable":
        os.chmod(copied, 0o770)
    else:
        os.chmod(copied.parent, 0o777)
    (fwd,) = _kernel_source.kernel_table([PATH], "float32", ("fwd",))[0]
    assert not marker.exists()
    run_fwd(fwd, PATH)
    assert module().kdir is None
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("cache is not used" in m for m in msgs) == 1
    assert any("in memory" in m for m in msgs)
    _kernel_source.kernel_table([(0, 0, 0)], "float32", ("fwd",))  # warned once only
    assert sum("cache is not used" in r.getMessage() for r in caplog.records) == 1
