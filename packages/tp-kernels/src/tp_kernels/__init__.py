"""tp_kernels: the compiled CPU kernels (Numba) of the channelwise Clebsch-Gordan tensor
product (``uvu`` paths, ``x2`` multiplicity 1: the MACE/NequIP convolution) and of the
products given by their coupling entries (single-channel full, elementwise and fully
connected CGTPs; unweighted full and elementwise ones), on NumPy arrays.

Framework-neutral: tp_torch runs them on CPU tensors, tp_jax as XLA FFI calls; importing this
package imports neither framework (nor Numba, until a kernel is asked for).

* :mod:`tp_kernels.source`: the generated per-path kernels and their first-use compilation;
* :mod:`tp_kernels.cache`: their on-disk cache (``$TP_KERNELS_CACHE_DIR``, else
  ``~/.cache/tp_kernels``) and parallel compilation;
* :mod:`tp_kernels.channelwise`: a whole descriptor over a batch of rows (chunks, threads);
* :mod:`tp_kernels.coupling`: a product given by its nonzero coupling entries (one compiled
  kernel for every descriptor);
* :mod:`tp_kernels.pages`: transparent huge pages under large result buffers.

>>> import numpy as np, tp_spec
>>> from tp_kernels import ChannelwiseKernels, available
>>> d = tp_spec.cgtp("4x0e + 4x1o", "0e + 1o", "4x0e + 4x1o", mode="uvu")
>>> k = ChannelwiseKernels(d)
>>> x1, x2 = np.ones((3, 16), np.float32), np.ones((3, 4), np.float32)
>>> w = np.ones(d.weight_numel, np.float32)
>>> out = k.forward(x1, x2, w, threads=2) if available() else np.zeros((3, 32))
>>> out.shape, d.irreps_out.dim  # one output block per path
((3, 32), 32)
"""

from __future__ import annotations

from .channelwise import ChannelwiseKernels
from .coupling import CouplingKernels
from .source import available, supports

__version__ = "0.1.0"

__all__ = ["ChannelwiseKernels", "CouplingKernels", "available", "supports"]
