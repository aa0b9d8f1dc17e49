"""Backend selection, parametrization and the summary table of the conformance suite.

Select backends with ``--backend NAME`` (repeatable; ``all`` = every registered one) or the
environment variable ``TP_CONFORMANCE_BACKENDS`` (comma-separated); the default is ``numpy``.
Backends are discovered through the ``tp_spec.backends`` entry points, so the suite never imports
a framework itself and a new backend needs no edit here. A selected backend that is not
installed or fails to import is reported as skipped with the reason; tests of a backend that
does import run and fail normally.

Select the device with ``--device NAME`` or the environment variable ``TP_CONFORMANCE_DEVICE``:
``cpu`` (the default), ``cuda``, or ``all`` (every device each backend's ``devices()`` lists).
A backend that cannot run on the selected device is reported as skipped, with its reason.

Each test function marked ``conformance(...)`` receives a ``target`` parameter (backend,
device, method, case) for every case of the catalogue and every method that the backend's
``methods(descriptor, device)`` lists (skipped with the backend's reason where it cannot run).
``conformance(conv=True)`` marks the convolution's tests: the cases tagged ``conv`` only,
reported under the op ``conv-<family>``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from tp_conformance.cases import Case, cases
from tp_conformance.summary import op_label
from tp_spec.backend import load_backends, registered_backend_names

# Filled in pytest_configure with the selected backends only (testing tp_jax does not import
# torch, and the other way round).
_LOAD_ERRORS: dict[str, str] = {}
_BACKENDS: dict = {}
_RECORDS: dict[str, dict[str, str]] = {}
_KEYS: dict[str, tuple[str, str, str]] = {}


@dataclass(frozen=True)
class Target:
    backend_name: str
    device: str
    method: str
    case: Case | None

    @property
    def backend(self):
        return _BACKENDS[self.backend_name]

    @property
    def d(self):
        assert self.case is not None
        return self.case.descriptor

    def __str__(self) -> str:
        case = self.case.name if self.case else "-"
        dev = "" if self.device == "cpu" else f"@{self.device}"
        return f"{self.backend_name}{dev}|{self.method}|{case}"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption("--backend", action="append", default=[],
                    help="backend(s) under test (entry-point names; 'all' for every one)")
    group.addoption("--device", default=os.environ.get("TP_CONFORMANCE_DEVICE", "cpu"),
                    help="device the backends run on: 'cpu' (default), 'cuda', or 'all' (every "
                         "device each backend lists); env TP_CONFORMANCE_DEVICE")
    group.addoption("--case-tag", default=os.environ.get("TP_CONFORMANCE_CASE_TAG"),
                    help="run only the catalogue cases with this tag (e.g. 'quick': one or two "
                         "cases per family that together cover every mode and parity class)")
    group.addoption("--summary-json", default=os.environ.get("TP_CONFORMANCE_SUMMARY"),
                    help="write one JSON record per test here (merged by "
                         "python -m tp_conformance.summary)")


def pytest_configure(config: pytest.Config) -> None:
    selected_device(config)  # a bad --device stops the run before anything is imported
    _BACKENDS.update(load_backends(_LOAD_ERRORS, names=selected_backends(config)))
    config.addinivalue_line(
        "markers",
        "conformance(families=None, small=False, oracle=False, weighted=False, tag=None, "
        "conv=False): parametrize over (backend, method, case); small=True: cheap cases only; "
        "conv=True: the convolution's cases (tag 'conv'), reported as op 'conv-<family>'; "
        "oracle=True: oracle adapters too (oracle='small': on cheap cases only); "
        "weighted=True: cases with weights only; tag: cases with that tag only")


#: What ``--device`` accepts.
DEVICE_CHOICES = ("cpu", "cuda", "all")


def selected_device(config: pytest.Config) -> str:
    """The ``--device`` option (or ``TP_CONFORMANCE_DEVICE``), checked against
    :data:`DEVICE_CHOICES`."""
    device = str(config.getoption("--device")).strip()
    if device not in DEVICE_CHOICES:
        raise pytest.UsageError(f"--device / TP_CONFORMANCE_DEVICE must be one of "
                                f"{DEVICE_CHOICES}, got {device!r}")
    return device


def target_devices(backend, device: str) -> list[str]:  # noqa: ANN001 - a tp_spec Backend
    """The devices to test ``backend`` on: every one it lists for ``all``, else ``device``."""
    return list(backend.devices()) if device == "all" else [device]


def method_reasons(backend, descriptor, device: str) -> dict[str, str | None]:  # noqa: ANN001
    """``backend.methods(descriptor, device)``, with every method skipped (naming the devices
    the backend lists) where ``device`` is not one of them."""
    methods = backend.methods(descriptor, device)
    listed = list(backend.devices())
    if device in listed:
        return methods
    why = f"backend {backend.name!r} does not run on {device!r} (devices: {listed})"
    return {m: reason or why for m, reason in methods.items()}


def selected_backends(config: pytest.Config) -> list[str]:
    names = list(config.getoption("--backend"))
    if not names:
        env = os.environ.get("TP_CONFORMANCE_BACKENDS", "numpy")
        names = [n.strip() for n in env.split(",") if n.strip()]
    if "all" in names:
        names = registered_backend_names()
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("conformance")
    opts = dict(marker.kwargs) if marker else {}
    families = opts.get("families")
    small_only = opts.get("small", False)
    oracle_ok = opts.get("oracle", False)
    weighted_only = opts.get("weighted", False)
    tag = opts.get("tag")
    if opts.get("conv", False):
        tag = "conv"
    case_tag = metafunc.config.getoption("--case-tag")
    device_opt = selected_device(metafunc.config)
    params = []
    for name in selected_backends(metafunc.config):
        if name not in _BACKENDS:
            why = (f"backend {name!r} failed to import: {_LOAD_ERRORS[name]}"
                   if name in _LOAD_ERRORS else
                   f"backend {name!r} is not installed (no 'tp_spec.backends' entry point; "
                   f"registered: {registered_backend_names()})")
            params.append(pytest.param(Target(name, "-", "-", None),
                                       marks=pytest.mark.skip(reason=why), id=f"{name}|-|-"))
            continue
        backend = _BACKENDS[name]
        if backend.is_oracle and not oracle_ok:
            continue  # oracles are compared on forward and gradients only
        for device in target_devices(backend, device_opt):
            for case in cases():
                if families and case.family not in families:
                    continue
                if (small_only or (backend.is_oracle and oracle_ok == "small")) and not case.small:
                    continue
                if weighted_only and case.descriptor.weight_numel == 0:
                    continue
                if tag and tag not in case.tags:
                    continue
                if case_tag and case_tag not in case.tags:
                    continue
                methods = method_reasons(backend, case.descriptor, device)
                for method, reason in methods.items():
                    t = Target(name, device, method, case)
                    # Under pytest-xdist (--dist loadgroup) every test of one (backend, device,
                    # method, case) runs in one worker, which reuses what the backend cached
                    # for it (JAX executables, torch modules).
                    marks = [pytest.mark.xdist_group(str(t).replace("@", ":"))]
                    if reason:
                        marks.append(pytest.mark.skip(reason=reason))
                    params.append(pytest.param(t, marks=marks, id=str(t)))
    metafunc.parametrize("target", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test with no (backend, case, method) for the selected backends is not a test: drop it
    # instead of reporting pytest's "got empty parameter set" skip.
    empty = [i for i in items if "target" in getattr(i, "fixturenames", ())
             and not isinstance(getattr(getattr(i, "callspec", None), "params", {}).get(
                 "target"), Target)]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [i for i in items if i not in empty]
    _group_conv_tests(items)
    for item in items:
        callspec = getattr(item, "callspec", None)
        t = callspec.params.get("target") if callspec else None
        if isinstance(t, Target):
            marker = item.get_closest_marker("conformance")
            conv = bool(marker and marker.kwargs.get("conv", False))
            op = op_label(t.case.family, conv) if t.case else "-"
            _KEYS[item.nodeid] = (t.backend_name, op, t.method)
        else:
            _KEYS[item.nodeid] = ("(suite)", "-", item.module.__name__.split(".")[-1])
        # The key travels with the test reports: under pytest-xdist the controller, which
        # writes the summary, does not collect the items itself.
        item.user_properties.append(("conformance_key", _KEYS[item.nodeid]))


def _is_conv(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("conformance")
    return bool(marker and marker.kwargs.get("conv", False))


def _group_conv_tests(items: list[pytest.Item]) -> None:
    """Run the convolution's tests of one (backend, device, method, case) one after another, in
    the slots the conv tests already hold: a backend that keeps only a few (descriptor, method)
    pairs compiled (tp_jax) then compiles each pair's programs once, not once per test."""
    slots = [i for i, item in enumerate(items) if _is_conv(item)]

    def key(i: int) -> str:
        callspec = getattr(items[i], "callspec", None)
        return str(callspec.params.get("target")) if callspec else ""

    ordered = [items[i] for i in sorted(slots, key=key)]
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


def _check_groups(config: pytest.Config, nodeids: list[str]) -> None:
    """Under ``--dist loadgroup`` every test of one (backend, device, method, case) must run in
    one worker (which reuses what the backend compiled for it). pytest-xdist marks a group by a
    node-id suffix that pytest >= 9.2 silently drops (pytest-xdist issue #1386): the tests are
    then scattered and every worker recompiles. Stop with a clear message instead."""
    if config.getvalue("dist") != "loadgroup" or not nodeids:
        return
    if not any("@" in i.rsplit("]", 1)[-1] for i in nodeids):
        pytest.exit(f"pytest-xdist --dist loadgroup is not grouping (pytest {pytest.__version__} "
                    "drops xdist's group suffix, pytest-xdist issue #1386): install pytest<9.2, "
                    "as noxfile.py does, or run without --dist loadgroup", returncode=4)


if importlib.util.find_spec("xdist") is not None:

    def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:  # noqa: ANN001
        _check_groups(node.config, ids)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    key = _KEYS.get(report.nodeid) or dict(report.user_properties).get("conformance_key")
    if key is None:
        return
    key = tuple(key)
    rec = _RECORDS.get(report.nodeid)
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(
            report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        _RECORDS[report.nodeid] = dict(backend=key[0], op=key[1], method=key[2],
                                       outcome="skipped", reason=reason, test=report.nodeid)
    elif report.failed:
        _RECORDS[report.nodeid] = dict(backend=key[0], op=key[1], method=key[2],
                                       outcome="failed", reason="", test=report.nodeid)
    elif report.when == "call" and (rec is None or rec["outcome"] != "failed"):
        _RECORDS[report.nodeid] = dict(backend=key[0], op=key[1], method=key[2],
                                       outcome="passed", reason="", test=report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    from tp_conformance.summary import format_table

    if hasattr(config, "workerinput"):  # an xdist worker: the controller writes the summary
        return
    records = list(_RECORDS.values())
    if not records:
        return
    terminalreporter.section("conformance summary")
    terminalreporter.write_line(format_table(records))
    path = config.getoption("--summary-json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(records, indent=0))
