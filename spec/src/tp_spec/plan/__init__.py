"""How each method computes: plans, the method registry, tuning (NumPy only).

A descriptor says *what* is computed; a plan says *how* one method computes it, decided once
per descriptor: coupling blocks with the coefficients folded in, index tables, layouts and flags,
all NumPy. Backends bind a plan's arrays and execute it (one executor per plan type); the NumPy
executors here run every plan too, so each plan is tested against the reference without a
framework.

>>> import tp_spec as spec
>>> from tp_spec import plan
>>> d = spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o + 1e", mode="uvw")
>>> sorted(plan.methods(d, "torch"))
['cueq', 'dense', 'fused', 'oeq', 'sparse']
>>> plan.default_method(d)
'fused'
"""

from __future__ import annotations

from .base import FRAMEWORKS, Method, Plan
from .conv import ConvPlan, conv_plan
from .registry import (
    DEFAULT_METHODS,
    METHODS,
    default_method,
    execute,
    family,
    flops,
    get_method,
    methods,
    plan,
)
from .tuning import DEFAULT_TUNING, Tuning

__all__ = [
    "ConvPlan",
    "DEFAULT_METHODS",
    "DEFAULT_TUNING",
    "FRAMEWORKS",
    "METHODS",
    "Method",
    "Plan",
    "Tuning",
    "conv_plan",
    "default_method",
    "execute",
    "family",
    "flops",
    "get_method",
    "methods",
    "plan",
]
