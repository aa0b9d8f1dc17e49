"""tp_spec: the framework-neutral specification of equivariant tensor products.

What is computed lives here (irreps, exact coupling tables, descriptors, NumPy reference
implementations, cost and expressivity measures); how it is computed fast lives in the backends
(``tp_jax``, ``tp_torch``). Nothing here imports jax or torch.

Several public functions share the name of the module that defines them (``gtp``, ``gaunt``,
``clebsch_gordan``, ...): ``tp_spec.gtp`` is the function; import module contents with
``from tp_spec.gtp import GTPDescriptor``.
"""

from __future__ import annotations

import logging

from . import reference
from .backend import Backend, load_backends
from .cgtp import CGTPDescriptor, cgtp
from .channel_fold import ChannelFold, channel_fold
from .clebsch_gordan import ExactTable, clebsch_gordan, clebsch_gordan_exact
from .descriptor import Path, TensorProductDescriptor
from .errors import (
    DeviceError,
    DTypeError,
    IndexRangeError,
    InstructionError,
    IrrepsError,
    ShapeError,
)
from .expressivity import expressivity, interactability, path_counts
from .gaunt import gaunt, gaunt_exact
from .gtp import GTPDescriptor, gtp
from .irreps import Irrep, Irreps, MulIrrep
from .linear import LinearDescriptor, linear
from .mtp import MTPDescriptor, mtp
from .rotations import random_rotation, wigner_D
from .spherical_harmonics import spherical_harmonics
from .sqrt_rational import SqrtRational
from .symmetric_contraction import (
    GauntSymmetricContractionDescriptor,
    SymmetricContractionDescriptor,
    gaunt_symmetric_contraction,
    symmetric_contraction,
)
from .vstp import VSTPDescriptor, vstp
from .wigner_6j import wigner_6j

# The modules log to "tp_spec.<module>" (table builds, plan builds); silent unless the
# application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "CGTPDescriptor",
    "ChannelFold",
    "DTypeError",
    "DeviceError",
    "ExactTable",
    "GTPDescriptor",
    "IndexRangeError",
    "InstructionError",
    "Irrep",
    "Irreps",
    "IrrepsError",
    "LinearDescriptor",
    "MTPDescriptor",
    "MulIrrep",
    "Path",
    "ShapeError",
    "SqrtRational",
    "SymmetricContractionDescriptor",
    "GauntSymmetricContractionDescriptor",
    "TensorProductDescriptor",
    "VSTPDescriptor",
    "cgtp",
    "channel_fold",
    "clebsch_gordan",
    "clebsch_gordan_exact",
    "expressivity",
    "gaunt",
    "gaunt_exact",
    "gtp",
    "interactability",
    "linear",
    "load_backends",
    "mtp",
    "path_counts",
    "random_rotation",
    "reference",
    "spherical_harmonics",
    "symmetric_contraction",
    "vstp",
    "gaunt_symmetric_contraction",
    "wigner_6j",
    "wigner_D",
]
