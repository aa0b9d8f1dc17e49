"""What ``gpu/check.sh`` runs on: the GPU, CUDA compiler, Python, and which packages import.

OpenEquivariance is only located here, not imported: its first import compiles a CUDA
extension, which check.sh runs as a step of its own (``oeq-build``).

``python gpu/env_report.py --cuda-lib-dirs`` prints instead the folders of this python's NVIDIA
wheels that hold the CUDA libraries cuEquivariance's ops load by name (``libnvrtc.so.*``,
``libcublas.so.*``, ``libcublasLt.so.*``), joined by ``:`` for ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time

PACKAGES = ("numpy", "torch", "jax", "jaxlib", "tp_spec", "tp_torch", "tp_jax", "tp_conformance",
            "e3nn", "e3nn_jax", "cuequivariance", "cuequivariance_torch",
            "cuequivariance_ops_torch", "cuequivariance_jax", "cuequivariance_ops_jax",
            "matplotlib", "tqdm", "pytest", "xdist")


#: The libraries cuEquivariance's ops name without a search path.
CUDA_LIBS = ("libnvrtc.so.*", "libcublas.so.*", "libcublasLt.so.*")


def cuda_lib_dirs() -> list[str]:
    """Folders under this python's ``site-packages/nvidia`` that hold :data:`CUDA_LIBS`."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    found = {os.path.dirname(p) for root in roots for pattern in CUDA_LIBS
             for p in glob.glob(os.path.join(root, "nvidia", "**", pattern), recursive=True)}
    return sorted(found)


def _run(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return f"{cmd[0]}: not found"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cmd[0]}: {exc}"


def main() -> None:
    print(_run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                "--format=csv,noheader"]))
    print(_run(["nvcc", "--version"]).splitlines()[-1])
    print("python", platform.python_version(), platform.machine())
    for name in PACKAGES:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(name)
            print(f"{name:26} {getattr(mod, '__version__', '?')!s:14} "
                  f"({time.perf_counter() - t0:.1f} s import)")
        except Exception as exc:  # noqa: BLE001 - reported; the steps that need it skip
            print(f"{name:26} MISSING: {type(exc).__name__}: {str(exc)[:200]}")
    spec = importlib.util.find_spec("openequivariance")
    print(f"{'openequivariance':26} {'found at ' + str(spec.origin) if spec else 'MISSING'}")
    try:
        import torch

        cuda = torch.cuda.is_available()
        print("torch", torch.__version__, "cuda", torch.version.cuda, "available", cuda,
              torch.cuda.get_device_name(0) if cuda else "")
    except ImportError:
        pass
    try:
        import jax

        print("jax.devices()", jax.devices())
    except Exception as exc:  # noqa: BLE001 - reported
        print("jax.devices() failed:", type(exc).__name__, exc)


if __name__ == "__main__":
    if sys.argv[1:] == ["--cuda-lib-dirs"]:
        print(":".join(cuda_lib_dirs()))
    else:
        main()
