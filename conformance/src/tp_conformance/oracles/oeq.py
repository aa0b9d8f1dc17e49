"""Oracle: OpenEquivariance (GPU only), for all-weighted single-mode 'uvu' / 'uvw' CGTPs.

``import openequivariance`` fails without CUDA (and its source build needs network), so this
adapter imports it lazily: on a machine without CUDA every case is skipped with that reason.
Weights are converted with OpenEquivariance's ``reorder_weights_from_e3nn``.
"""

from __future__ import annotations

import numpy as np

from ._common import TorchOracle, Unsupported, target_cgtp

__all__ = ["backend"]


def _cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "OpenEquivariance needs torch with CUDA (torch is not installed)"
    if not torch.cuda.is_available():
        return "OpenEquivariance needs a CUDA GPU (torch.cuda.is_available() is False)"
    try:
        import openequivariance  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure is a skip reason
        return f"openequivariance does not import: {type(exc).__name__}: {exc}"
    return None


class OeqOracle(TorchOracle):
    name = "oeq"
    method = "oeq"

    def __init__(self) -> None:
        self._cache: dict = {}
        self._reason: str | None | bool = False  # False: not checked yet

    def devices(self) -> list[str]:
        return ["cuda"]

    def methods(self, descriptor, device: str = "cuda") -> dict[str, str | None]:
        if self._reason is False:
            self._reason = _cuda_reason()
        if self._reason:
            return {self.method: self._reason}
        return super().methods(descriptor, device)

    def _supported(self, d) -> None:
        cg = target_cgtp(d)
        modes = {p.mode for p in cg.paths}
        if len(modes) != 1 or modes - {"uvu", "uvw"}:
            raise Unsupported(f"OpenEquivariance needs a single mode 'uvu' or 'uvw', got {modes}")
        if not all(p.has_weight for p in cg.paths):
            raise Unsupported("OpenEquivariance needs every path weighted")
        if cg.irrep_normalization != "component" or cg.path_normalization != "element":
            raise Unsupported("OpenEquivariance uses e3nn's default normalizations only")

    def _torch_fn(self, d, dtype):  # pragma: no cover - needs CUDA
        key = (id(d), dtype)
        if key not in self._cache:
            import openequivariance as oeq
            import torch

            cg = target_cgtp(d)
            ins = [(p.i_in1, p.i_in2, p.i_out, p.mode, True, p.path_weight) for p in cg.paths]
            problem = oeq.TPProblem(str(cg.irreps_in1), str(cg.irreps_in2), str(cg.irreps_out),
                                    ins, shared_weights=False, internal_weights=False,
                                    irrep_dtype=getattr(np, dtype),
                                    weight_dtype=getattr(np, dtype))
            tp = oeq.TensorProduct(problem)

            def fn(x1, x2, w):
                dev = torch.device("cuda")
                wr = torch.as_tensor(problem.reorder_weights_from_e3nn(
                    w.detach().cpu().numpy(), has_batch_dim=True), device=dev)
                return tp(x1.to(dev), x2.to(dev), wr).cpu()

            self._cache[key] = (d, fn)
        return self._cache[key][1]


backend = OeqOracle()
