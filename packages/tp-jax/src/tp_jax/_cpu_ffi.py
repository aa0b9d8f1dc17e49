"""Python functions as XLA CPU FFI targets on the arrays' own memory: how tp_jax runs the
compiled CPU kernels of :mod:`tp_kernels` inside jitted programs.

XLA's typed FFI calls a handler ``XLA_FFI_Error* handler(XLA_FFI_CallFrame*)`` with the
operands' and results' buffers (``xla/ffi/api/c_api.h``, a stable C ABI). :func:`register`
wraps a Python function ``fn(*operands, *results)`` (NumPy views of the buffers, no copies:
``jax.pure_callback`` copies every operand, 14 ms for a ``(2000, 3328)`` float32 array) in a
ctypes handler that decodes the call frame, answers XLA's metadata query (the API version it
was written against), and runs ``fn`` at the execute stage under the GIL; the kernels release
the GIL while they run. ``fn`` writes every result in place and must not raise: callers check
shapes and dtypes before the call is traced (an exception inside would abort the program).
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import jax
import numpy as np
from tp_kernels.pages import huge_pages

from ._multilinear import exporting

__all__ = ["call", "num_threads", "on_cpu", "register"]


class _Extension(ctypes.Structure):
    pass


_Extension._fields_ = [("struct_size", ctypes.c_size_t), ("type", ctypes.c_int),
                       ("next", ctypes.POINTER(_Extension))]


class _ApiVersion(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                ("major_version", ctypes.c_int), ("minor_version", ctypes.c_int)]


class _Metadata(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("api_version", _ApiVersion),
                ("traits", ctypes.c_uint32), ("state_type_id", ctypes.c_int64)]


class _MetadataExtension(ctypes.Structure):
    _fields_ = [("extension_base", _Extension), ("metadata", ctypes.POINTER(_Metadata))]


class _Buffer(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                ("dtype", ctypes.c_int), ("data", ctypes.c_void_p), ("rank", ctypes.c_int64),
                ("dims", ctypes.POINTER(ctypes.c_int64))]


class _List(ctypes.Structure):  # XLA_FFI_Args / XLA_FFI_Rets / XLA_FFI_Attrs (prefix)
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                ("size", ctypes.c_int64), ("types", ctypes.c_void_p),
                ("items", ctypes.POINTER(ctypes.c_void_p))]


class _Attrs(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.c_void_p),
                ("size", ctypes.c_int64), ("types", ctypes.c_void_p), ("names", ctypes.c_void_p),
                ("attrs", ctypes.c_void_p)]


class _CallFrame(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("extension_start", ctypes.POINTER(_Extension)),
                ("api", ctypes.c_void_p), ("ctx", ctypes.c_void_p), ("stage", ctypes.c_int),
                ("args", _List), ("rets", _List), ("attrs", _Attrs),
                ("future", ctypes.c_void_p)]


_API_VERSION = (0, 3)  # XLA_FFI_API_MAJOR / MINOR of the header these structs follow
_METADATA_EXTENSION = 1  # XLA_FFI_Extension_Metadata
_EXECUTE = 3  # XLA_FFI_ExecutionStage_EXECUTE
_DTYPES = {11: np.float32, 12: np.float64}  # XLA_FFI_DataType F32, F64
_HANDLER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
#: the ctypes handlers, alive as long as the process (XLA keeps only their addresses)
_HANDLERS: dict[str, Any] = {}


def _array(address: int) -> np.ndarray:
    """The NumPy view of one ``XLA_FFI_Buffer`` (row-major, XLA's default CPU layout)."""
    b = _Buffer.from_address(address)
    shape = tuple(b.dims[i] for i in range(b.rank))
    dt = np.dtype(_DTYPES[b.dtype])
    n = int(np.prod(shape))
    if n == 0:
        return np.empty(shape, dt)
    raw = (ctypes.c_char * (n * dt.itemsize)).from_address(b.data)
    return np.frombuffer(raw, dt).reshape(shape)


def _handler(fn: Callable[..., None]) -> Callable[[int], int | None]:
    def handle(frame: int) -> int | None:
        cf = _CallFrame.from_address(frame)
        if cf.extension_start and cf.extension_start.contents.type == _METADATA_EXTENSION:
            ext = ctypes.cast(cf.extension_start, ctypes.POINTER(_MetadataExtension)).contents
            md = ext.metadata.contents
            md.api_version.major_version, md.api_version.minor_version = _API_VERSION
            md.traits = 0
            return None
        if cf.stage != _EXECUTE:
            return None
        args = [_array(cf.args.items[i]) for i in range(cf.args.size)]
        rets = [_array(cf.rets.items[i]) for i in range(cf.rets.size)]
        for r in rets:
            huge_pages(r)
        fn(*args, *rets)
        return None  # success

    return handle


def register(name: str, fn: Callable[..., None]) -> str:
    """Register ``fn(*operands, *results)`` as the CPU FFI target ``name`` (once per name)."""
    if name not in _HANDLERS:
        h = _HANDLER(_handler(fn))
        jax.ffi.register_ffi_target(
            name, jax.ffi.pycapsule(ctypes.cast(h, ctypes.c_void_p).value), platform="cpu")
        _HANDLERS[name] = h
    return name


def call(name: str, results: list[jax.ShapeDtypeStruct], *operands: jax.Array) -> Any:
    """The target ``name`` on ``operands``: a list of arrays shaped as ``results``. Inside
    ``shard_map`` the results vary over the mesh axes any operand varies over (as the XLA code
    they replace would)."""
    outs = jax.ffi.ffi_call(name, results)(*operands)
    axes = frozenset().union(*(_varying(o) for o in operands))
    if axes:
        outs = [jax.lax.pcast(o, tuple(sorted(axes)), to="varying") for o in outs]
    return outs


def _varying(x: Any) -> frozenset:
    """The manual mesh axes ``x`` varies over (none outside ``shard_map``)."""
    mat = getattr(jax.typeof(x), "mat", None)
    return frozenset(getattr(mat, "varying", ()))


@cache
def num_threads() -> int:
    """The threads the kernels split a batch over: XLA's CPU intra-op setting in ``XLA_FLAGS``
    (``--xla_cpu_multi_thread_eigen=false`` or ``intra_op_parallelism_threads=1``: one), else
    every core this process may run on."""
    flags = os.environ.get("XLA_FLAGS", "")
    m = re.search(r"intra_op_parallelism_threads=(\d+)", flags)
    if m:
        return max(1, int(m.group(1)))
    if re.search(r"xla_cpu_multi_thread_eigen=(false|0)", flags):
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def on_cpu(kernel: Callable, xla: Callable) -> Callable:
    """``kernel`` where the program is lowered for the CPU, ``xla`` elsewhere and for
    ``jax.export`` (an exported program must not call this process's FFI targets)."""
    def fn(*ops):
        if exporting():
            return xla(*ops)
        return jax.lax.platform_dependent(*ops, cpu=kernel, default=xla)
    return fn
