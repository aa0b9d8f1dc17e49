"""tp_spec: the framework-neutral specification of equivariant tensor products.

What is computed lives here (irreps, exact coupling tables, descriptors, NumPy reference
implementations, cost and expressivity measures); how it is computed fast lives in the backends
(``tp_jax``, ``tp_torch``). Nothing here imports jax or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .cgtp import CGTPDescriptor, cgtp
from .descriptor import Path, TensorProductDescriptor
from .errors import DeviceError, DTypeError, InstructionError, IrrepsError, ShapeError
from .irreps import Irrep, Irreps, MulIrrep

__version__ = "0.1.0"

# Public names provided by the other modules, imported on first use.
_LAZY = {
    "clebsch_gordan": "clebsch_gordan",
    "clebsch_gordan_exact": "clebsch_gordan",
    "gaunt": "gaunt",
    "gaunt_exact": "gaunt",
    "wigner_6j": "wigner_6j",
    "SqrtRational": "sqrt_rational",
    "spherical_harmonics": "spherical_harmonics",
    "wigner_D": "rotations",
    "random_rotation": "rotations",
    "gtp": "gtp",
    "GTPDescriptor": "gtp",
    "mtp": "mtp",
    "MTPDescriptor": "mtp",
    "expressivity": "expressivity",
    "interactability": "expressivity",
    "reference": None,
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
        value = module if _LAZY[name] is None else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tp_spec' has no attribute {name!r}")


__all__ = [
    "CGTPDescriptor",
    "DTypeError",
    "DeviceError",
    "InstructionError",
    "Irrep",
    "Irreps",
    "IrrepsError",
    "MulIrrep",
    "Path",
    "ShapeError",
    "TensorProductDescriptor",
    "cgtp",
    *_LAZY,
]
