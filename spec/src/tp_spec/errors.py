"""Exception types shared by the specification and every backend.

Every backend raises these same classes for the same bad input, so user code (and the conformance
suite) can rely on them. All value errors subclass :class:`ValueError`; dtype errors subclass
:class:`TypeError`.
"""

from __future__ import annotations

__all__ = ["DTypeError", "DeviceError", "IndexRangeError", "InstructionError", "IrrepsError",
           "ShapeError"]


class IrrepsError(ValueError):
    """A malformed irreps string or an irrep that is not allowed where it is used."""


class InstructionError(ValueError):
    """A tensor-product instruction or option that violates the selection rules or the layout."""


class ShapeError(ValueError):
    """An input, weight or output array whose shape does not match the descriptor."""


class DTypeError(TypeError):
    """Inputs of mixed or unsupported dtypes."""


class DeviceError(ValueError):
    """Inputs that live on different devices."""


class IndexRangeError(IndexError, ValueError):
    """An index array (graph senders or receivers, species) with a value outside its range, or
    of a non-integer dtype."""
