"""GTP plans: ``grid`` (product on a Gauss-Legendre sphere grid), ``fourier`` (exact 2D Fourier
tables and a convolution) and the JAX-only adapter ``s2fft``."""

from __future__ import annotations

from .base import Method


def _is_gtp(d) -> str | None:
    return None if d.kind == "gtp" else f"not a GTP descriptor ({type(d).__name__})"


METHODS = (
    Method("gtp", "grid", "separable Gauss-Legendre grid transform (per-order Legendre GEMMs "
           "and a real DFT), pointwise product, projection back", available=_is_gtp,
           cost_model="grid"),
    Method("gtp", "fourier", "exact 2D Fourier tables, FFT convolution, projection back",
           available=_is_gtp, cost_model="fourier"),
    Method("gtp", "s2fft", "grid GTP through s2fft's spherical transforms", available=_is_gtp,
           frameworks=("jax",), adapter="s2fft"),
)
