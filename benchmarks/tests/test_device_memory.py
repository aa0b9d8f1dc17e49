"""The GPU memory statistics of the timing engines, against fake device APIs (no GPU here):
torch's peak counter is read and reset on the engine's own device after its queued work, and
JAX's never-reset peak is reported for a pass only when that pass raised it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks.timing import JaxEngine, TorchEngine


class _FakeCuda:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.peak = 0

    def synchronize(self, device=None) -> None:  # noqa: ANN001
        self.calls.append(("synchronize", device))

    def reset_peak_memory_stats(self, device=None) -> None:  # noqa: ANN001
        self.calls.append(("reset", device))
        self.peak = 0

    def max_memory_allocated(self, device=None) -> int:  # noqa: ANN001
        self.calls.append(("max", device))
        return self.peak


def test_torch_engine_reads_the_peak_of_its_own_cuda_device() -> None:
    pytest.importorskip("torch")
    eng = TorchEngine("cpu")
    cuda = _FakeCuda()
    eng.torch = SimpleNamespace(cuda=cuda)
    eng.device, eng.cuda = "cuda:1", True
    eng.reset_memory()
    cuda.peak = 12345
    assert eng.peak_memory() == {"peak_bytes": 12345, "source": "torch.cuda.max_memory_allocated"}
    assert cuda.calls == [("synchronize", "cuda:1"), ("reset", "cuda:1"),
                          ("synchronize", "cuda:1"), ("max", "cuda:1")]


def test_torch_engine_on_cpu_reports_no_device_memory() -> None:
    pytest.importorskip("torch")
    eng = TorchEngine("cpu")
    eng.reset_memory()
    assert eng.peak_memory() == {}


class _FakeJaxDevice:
    def __init__(self, peaks: list[int | None]) -> None:
        self.peaks = peaks

    def memory_stats(self) -> dict[str, int] | None:
        peak = self.peaks.pop(0)
        return None if peak is None else {"peak_bytes_in_use": peak, "bytes_in_use": 1}


def _jax_engine(peaks: list[int | None]) -> JaxEngine:
    pytest.importorskip("jax")
    eng = JaxEngine("cpu")
    eng.dev = _FakeJaxDevice(peaks)
    return eng


def test_jax_engine_reports_a_peak_the_pass_raised() -> None:
    eng = _jax_engine([100, 250])
    eng.reset_memory()
    got = eng.peak_memory()
    assert (got["peak_bytes"], got["process_peak_bytes"]) == (250, 250)


def test_jax_engine_reports_no_peak_below_an_earlier_pass() -> None:
    eng = _jax_engine([250, 250])
    eng.reset_memory()
    got = eng.peak_memory()
    assert (got["peak_bytes"], got["process_peak_bytes"]) == (None, 250)


def test_jax_engine_without_statistics_reports_nothing() -> None:
    eng = _jax_engine([None, None])
    eng.reset_memory()
    assert eng.peak_memory() == {}
