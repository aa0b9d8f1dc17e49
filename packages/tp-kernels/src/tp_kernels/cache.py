"""The on-disk cache of the compiled CPU kernels: where it is, when it is safe to load, and the
compilation of many kernels at once (worker processes that fill Numba's cache).

Layout: ``$TP_KERNELS_CACHE_DIR/cpu_kernels`` (else ``$XDG_CACHE_HOME/tp_kernels/cpu_kernels``
or ``~/.cache/tp_kernels/cpu_kernels``) holds one generated source ``<name>.py`` per kernel module,
Numba's index and machine code (``__pycache__/<name>.<fn>-<line>.py3X.nbi`` / ``.nbc``) and
``<name>.sha256``, the SHA-256 of each of those Numba files as this process's user wrote them.

Numba's files are pickles and machine code: loading one runs it. So the cache is used only
when every directory from the kernel directory up is safe (the kernel directory and its
``__pycache__`` owned by this user and not writable by group or others; the directories above
owned by this user or root and not writable by group or others unless sticky, as ``/tmp``).
Before a module's functions run, every Numba file of that module must be owned by this user,
not writable by group or others, and match the hash recorded for it; a file that fails is
deleted (and its kernel compiled again) with one warning. An unsafe directory makes the
kernels compile in memory, with one warning. Sources are never executed from disk: the file is
written for Numba's cache key (its ``stat``) and the module is executed from the generated
text.

This module imports only the standard library and NumPy at import time: the worker processes
load it by path (``python -c``) without importing a framework or this package.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["KernelModule", "cache_dir", "compile_modules", "dir_lock", "timed_compile", "warn_once",
           "warned"]

log = logging.getLogger("tp_kernels")

#: the reasons already warned about (one warning per reason and process)
warned: set[str] = set()

#: function name -> dummy-call builder kind; the kernels a module defines
KINDS = ("fwd", "bwd", "fwd_ix", "bwd_ix", "bwd_dual", "bwd_dual_ix")


def warn_once(key: str, msg: str, *args: Any) -> None:
    if key not in warned:
        warned.add(key)
        log.warning(msg, *args)


def _root() -> Path:
    base = os.environ.get("TP_KERNELS_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tp_kernels"


def _unsafe_reason(path: Path, *, own: bool) -> str | None:
    """Why ``path`` (a directory or file, not followed if a link) is unsafe to trust, or None.
    ``own``: must belong to this user (else this user or root) and never be group/other
    writable (else writable by them only with the sticky bit)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"cannot stat {path}: {e}"
    uid = os.getuid()
    if stat.S_ISLNK(st.st_mode) and own:
        return f"{path} is a symbolic link"
    if st.st_uid != uid and (own or st.st_uid != 0):
        return f"{path} is owned by uid {st.st_uid}, not {uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        if own or not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
            return f"{path} is writable by group or others"
    return None


def cache_dir() -> tuple[Path | None, str | None]:
    """``(directory, None)`` where the kernels may be cached, else ``(None, reason)``.

    Creates the kernel directory (mode 0700) and its ``__pycache__``; read per call, so a change
    of ``TP_KERNELS_CACHE_DIR`` applies to the kernels compiled after it."""
    kdir = _root() / "cpu_kernels"
    try:
        kdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (kdir / "__pycache__").mkdir(exist_ok=True, mode=0o700)
    except OSError as e:
        return None, f"cannot create {kdir}: {e}"
    kdir = kdir.absolute()
    for d in (kdir / "__pycache__", kdir):
        reason = _unsafe_reason(d, own=True)
        if reason:
            return None, reason
    for d in kdir.resolve().parents:
        reason = _unsafe_reason(d, own=False)
        if reason:
            return None, reason
    if not os.access(kdir, os.W_OK) or not os.access(kdir / "__pycache__", os.W_OK):
        return None, f"{kdir} is not writable"
    return kdir, None


@contextlib.contextmanager
def dir_lock(kdir: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``kdir/.lock``: one process at a time checks, compiles
    and records the kernels of a cache directory."""
    fd = os.open(kdir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class KernelModule:
    """One generated kernel module ``name`` (source ``src``) in ``kdir`` (None: in memory):
    its functions, which of them are ready (compiled or loaded), and its cache files."""

    def __init__(self, name: str, src: str, dims: tuple[int, int, int], dtype: str,
                 kdir: Path | None) -> None:
        self.name, self.src, self.dims, self.dtype, self.kdir = name, src, dims, dtype, kdir
        self.modname = f"tp_kernels_cpu_{name}"
        self.ready: set[str] = set()
        self.mod: ModuleType | None = None

    # -- files ---------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        assert self.kdir is not None
        return self.kdir / f"{self.name}.py"

    def _numba_files(self) -> list[Path]:
        assert self.kdir is not None
        pyc = self.kdir / "__pycache__"
        return sorted(p for p in pyc.iterdir()
                      if p.name.startswith(f"{self.name}.")
                      and p.suffix in (".nbi", ".nbc"))

    def _manifest(self) -> dict[str, str]:
        assert self.kdir is not None
        m = self.kdir / f"{self.name}.sha256"
        if not os.path.lexists(m):
            return {}
        reason = _unsafe_reason(m, own=True)
        try:
            data = json.loads(m.read_text()) if reason is None else None
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):
            warn_once(f"manifest:{m}", "tp_kernels: ignoring the kernel cache manifest %s (%s)",
                       m, reason or "unreadable")
            return {}
        return data

    def record(self) -> None:
        """Write the hashes of this module's Numba files (as just written by this user)."""
        if self.kdir is None:
            return
        hashes = {p.name: _sha256(p) for p in self._numba_files()}
        _write_atomic(self.kdir / f"{self.name}.sha256",
                      json.dumps(hashes, sort_keys=True).encode())

    def verify(self) -> bool:
        """Check the source file and every Numba file of this module before any is loaded:
        delete (with one warning) the files that are not this user's, are writable by others
        or differ from the recorded hash. False where one could not be deleted (the module
        then compiles in memory)."""
        assert self.kdir is not None
        path = self.path
        if (os.path.lexists(path) and (_unsafe_reason(path, own=True) is not None
                                       or path.read_bytes() != self.src.encode())):
            warn_once(f"src:{path}", "tp_kernels: replacing the kernel source %s (%s)", path,
                       _unsafe_reason(path, own=True) or "unexpected content")
            try:
                path.unlink()
            except OSError:
                return False
        if not os.path.lexists(path):
            # a new source stamp: Numba treats older index files as stale
            _write_atomic(path, self.src.encode())
            os.chmod(path, 0o644)
        manifest = self._manifest()
        files = self._numba_files()
        for p in files:
            reason = _unsafe_reason(p, own=True)
            if reason is None and manifest.get(p.name) != _sha256(p):
                reason = ("not recorded by this user" if p.name not in manifest else
                          "content differs from the recorded hash (corrupt or replaced)")
            if reason is not None:  # the module's files go together (index -> data files)
                warn_once(f"nb:{p}", "tp_kernels: refusing the kernel cache file %s (%s); "
                           "rebuilding the kernels of %s", p, reason, self.name)
                try:
                    for q in files:
                        q.unlink()
                except OSError:
                    return False
                break
        return True

    def on_disk(self, kind: str) -> bool:
        """Whether Numba's cache holds an index of function ``kind`` (checked by
        :meth:`verify`)."""
        return self.kdir is not None and any(
            p.name.startswith(f"{self.name}.{kind}-") and p.suffix == ".nbi"
            for p in self._numba_files())

    def drop_numba_files(self) -> None:
        if self.kdir is not None:
            for p in self._numba_files():
                with contextlib.suppress(OSError):
                    p.unlink()

    # -- code ----------------------------------------------------------------------------
    def load(self) -> ModuleType:
        """Execute the source (from the generated text; Numba's cache keyed on the file),
        with Numba's on-disk cache where ``kdir`` is set."""
        if self.mod is None:
            src = self.src if self.kdir is not None else self.src.replace("cache=True",
                                                                          "cache=False")
            filename = str(self.path) if self.kdir is not None else f"<{self.modname}>"
            mod = ModuleType(self.modname)
            mod.__file__ = filename
            sys.modules[self.modname] = mod  # Numba's cached code finds its globals here
            exec(compile(src, filename, "exec"), mod.__dict__)
            self.mod = mod
        return self.mod

    def warm(self, kinds: tuple[str, ...]) -> None:
        """Compile (or load from the cache) the functions ``kinds`` for the argument types of
        their callers (a call on one-row arrays). The garbage collector is paused meanwhile:
        Numba's compiler allocates many short-lived objects, and each collection scans the
        whole heap (with torch imported, 12% of the compile CPU: 19.6 -> 17.2 s for the fwd and
        bwd of 9 MACE paths, float32, one process)."""
        mod = self.load()
        collecting = gc.isenabled()
        gc.disable()
        try:
            for kind in kinds:
                if kind not in self.ready:
                    getattr(mod, kind)(*dummy_args(kind, self.dims, self.dtype))
                    self.ready.add(kind)
        finally:
            if collecting:
                gc.enable()


def dummy_args(kind: str, dims: tuple[int, int, int], dtype: str) -> tuple[Any, ...]:
    """Arguments of the types :mod:`tp_kernels.channelwise` and tp_torch's convolution pass
    (C-contiguous 2-D arrays, Python ints and bools, a NumPy scalar coefficient, int64 index
    arrays), on one sample of multiplicity 1."""
    t = np.dtype(dtype).type
    d1, d2, d3 = dims
    x1, x2 = np.zeros((1, d1), t), np.zeros((1, d2), t)
    w, o = np.zeros((1, 1), t), np.zeros((1, d3), t)
    ix = np.zeros(1, np.int64)
    grads = (np.zeros((1, d1), t), np.zeros((1, d2), t), np.zeros((1, 1), t))
    if kind == "fwd":
        return (x1, x2, w, 1, o, 0, 0, 0, 0, 1, t(1.0), False)
    if kind == "bwd":
        return (x1, x2, w, 1, o, 0, 0, 0, 0, 1, t(1.0), *grads, True, True, True)
    if kind == "fwd_ix":
        return (x1, x2, w, 1, o, ix, ix, ix, 0, 1, 0, 0, 0, 0, 1, t(1.0))
    if kind == "bwd_dual":
        return (x1, x2, w, 1, o, x1.copy(), x2.copy(), w.copy(), 0, 0, 0, 0, 1, t(1.0), *grads,
                True, True, True)
    if kind == "bwd_dual_ix":
        return (x1, x2, w, 1, o, x1.copy(), x2.copy(), w.copy(), ix, ix, ix, 0, 1, 0, 0, 0, 0,
                1, t(1.0), *grads, True, True, True)
    if kind == "bwd_ix":
        return (x1, x2, w, 1, o, ix, ix, ix, 0, 1, 0, 0, 0, 0, 1, t(1.0), *grads, True, True,
                True)
    raise ValueError(f"unknown kernel kind {kind!r}; expected one of {KINDS}")


def _cost(job: tuple[KernelModule, str]) -> float:
    """Relative compile time of one function (the source's length; backward ~2x forward)."""
    m, kind = job
    return len(m.src) * (2.0 if kind.startswith("bwd") else 1.0)


def workers() -> int:
    """Helper processes for a compile: ``TP_KERNELS_COMPILE_WORKERS``, else one less than the
    CPUs this process may use (at most 7)."""
    env = os.environ.get("TP_KERNELS_COMPILE_WORKERS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"TP_KERNELS_COMPILE_WORKERS must be an integer, not {env!r}") \
                from None
        if n < 0:
            raise ValueError(f"TP_KERNELS_COMPILE_WORKERS must be >= 0, not {n}")
        return n
    return max(0, min(7, len(os.sched_getaffinity(0)) - 1))


#: functions per worker below which a helper process (startup ~1-2 s) is not worth it
_MIN_JOBS_PER_WORKER = 3

_WORKER_CODE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('tp_kernels_cache_worker', sys.argv[1])\n"
    "m = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(m)\n"
    "m._worker_main()\n"
)


def _worker_main() -> None:
    """A helper process: compile the functions named on stdin into the on-disk cache."""
    for job in json.loads(sys.stdin.read()):
        m = KernelModule(job["name"], job["src"], tuple(job["dims"]), job["dtype"],
                         Path(job["kdir"]))
        m.warm(tuple(job["kinds"]))


def compile_modules(jobs: list[tuple[KernelModule, str]]) -> None:
    """Make every ``(module, kind)`` ready, compiling in this process and, where the modules
    share a cache directory, in helper processes that fill it (this process then loads their
    code). The caller holds the directory lock and has verified the modules."""
    todo = [(m, k) for m, k in jobs if k not in m.ready]
    if not todo:
        return
    cached = todo[0][0].kdir is not None
    n_workers = min(workers(), len(todo) // _MIN_JOBS_PER_WORKER) if cached else 0
    # longest first, each to the least loaded; a helper starts ~one forward compile behind
    shares: list[list[tuple[KernelModule, str]]] = [[] for _ in range(n_workers + 1)]
    load = [0.0] + [_cost(todo[0])] * n_workers
    for job in sorted(todo, key=_cost, reverse=True):
        i = min(range(len(load)), key=load.__getitem__)
        shares[i].append(job)
        load[i] += _cost(job)
    procs = []
    for share in shares[1:]:
        if not share:
            continue
        by_mod: dict[str, dict[str, Any]] = {}
        for m, k in share:
            by_mod.setdefault(m.name, {"name": m.name, "src": m.src, "dims": m.dims,
                                       "dtype": m.dtype, "kdir": str(m.kdir), "kinds": []}
                              )["kinds"].append(k)
        err = tempfile.TemporaryFile()  # not a pipe: a full pipe would block the helper
        p = subprocess.Popen([sys.executable, "-c", _WORKER_CODE, __file__],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert p.stdin is not None
        p.stdin.write(json.dumps(list(by_mod.values())).encode())
        p.stdin.close()
        procs.append((p, err))
    for m, k in shares[0]:
        m.warm((k,))
    for p, err in procs:
        if p.wait() != 0:  # what it did not compile, this process compiles below
            err.seek(0)
            log.info("tp_kernels: a kernel compile helper failed (%s): %s", p.returncode,
                     err.read()[-2000:].decode(errors="replace"))
        err.close()
    # the helpers' functions: recorded, checked, then loaded from the cache
    helped = {m.name: m for share in shares[1:] for m, _ in share}
    for m in helped.values():
        m.record()
    for share in shares[1:]:
        for m, k in share:
            m.warm((k,))
    for m in {m.name: m for m, _ in todo}.values():
        m.record()


def timed_compile(jobs: list[tuple[KernelModule, str]], what: str) -> None:
    """:func:`compile_modules` with one WARNING line before (what, where) and an INFO line
    after (how long)."""
    todo = [(m, k) for m, k in jobs if k not in m.ready]
    if not todo:
        return
    kdir = todo[0][0].kdir
    log.warning("tp_kernels: compiling %d CPU kernels for %s (first use; %s)", len(todo), what,
                f"cached in {kdir}" if kdir is not None else "not cached: in memory")
    t0 = time.perf_counter()
    compile_modules(todo)
    log.info("tp_kernels: compiled %d CPU kernels in %.1f s", len(todo), time.perf_counter() - t0)
