"""tp_spec logs its one-time builds and its fallback to exact tables under "tp_spec.<module>",
and prints nothing unless the application configures logging."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys

import tp_spec as spec
from tp_spec.plan import registry

# the modules (the package's attributes of the same names are the functions)
cg_mod = importlib.import_module("tp_spec.clebsch_gordan")
gaunt_mod = importlib.import_module("tp_spec.gaunt")


def _messages(caplog, logger: str, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def test_package_logger_has_a_null_handler():
    handlers = logging.getLogger("tp_spec").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_plan_build_is_logged_once(caplog):
    caplog.set_level(logging.DEBUG, logger="tp_spec")
    d = spec.cgtp("3x0e + 2x1o", "0e + 1o", "0e + 1o", mode="uvw")
    registry._plan.cache_clear()
    registry.plan(d, "dense")
    registry.plan(d, "dense")  # cached: not logged again
    msgs = _messages(caplog, "tp_spec.plan.registry")
    assert len(msgs) == 1
    assert "planned cgtp" in msgs[0] and "'dense'" in msgs[0]


def test_exact_tables_beyond_the_shipped_degrees_are_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="tp_spec")
    l1 = cg_mod.SHIPPED_LMAX + 1
    for mod, triple in ((cg_mod, (l1, 1, l1)), (gaunt_mod, (l1, 1, l1 - 1))):
        for dt in ("<f8", "<f4"):
            mod._float_cache.pop((*triple, dt), None)
    spec.clebsch_gordan(l1, 1, l1)
    spec.gaunt(l1, 1, l1 - 1)
    spec.clebsch_gordan(1, 1, 2)  # shipped: no exact computation
    [cg_msg] = _messages(caplog, "tp_spec.clebsch_gordan")[-1:]
    [gaunt_msg] = _messages(caplog, "tp_spec.gaunt")
    assert cg_msg.startswith(f"Clebsch-Gordan table {(l1, 1, l1)}") and "exactly" in cg_msg
    assert gaunt_msg.startswith(f"Gaunt table {(l1, 1, l1 - 1)}") and "exactly" in gaunt_msg
    assert not any("(1, 1, 2)" in m for m in _messages(caplog, "tp_spec.clebsch_gordan"))


def test_unreadable_shipped_tables_warn(monkeypatch, caplog):
    monkeypatch.setattr(cg_mod, "_shipped_state", [])
    monkeypatch.setattr(cg_mod, "_TABLE_FILE", "no_such_tables.npz")
    with caplog.at_level(logging.DEBUG, logger="tp_spec"):
        assert cg_mod._shipped_tables() is None
    [msg] = _messages(caplog, "tp_spec.clebsch_gordan", logging.WARNING)
    assert "unreadable" in msg and "computed exactly" in msg


def test_silent_without_logging_configuration():
    """The fallback's warning, the table and plan builds: nothing on stderr in a process that
    never configures logging (the package's NullHandler keeps logging's last-resort handler
    away)."""
    code = (
        "import tp_spec as spec\n"
        "import importlib\n"
        "cg = importlib.import_module('tp_spec.clebsch_gordan')\n"
        "cg._TABLE_FILE = 'no_such_tables.npz'\n"
        "spec.clebsch_gordan(1, 1, 2)\n"
        "from tp_spec import plan\n"
        "plan.plan(spec.cgtp('2x0e + 1x1o', '0e + 1o', '1o', mode='uvw'), 'dense')\n"
        "print(cg._shipped_tables() is None)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, timeout=120)
    assert r.stdout.strip() == "True"
    assert r.stderr == ""
