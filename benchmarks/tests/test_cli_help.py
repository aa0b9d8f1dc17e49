"""Every option of every command line of the harness has a help text, and every subcommand a
description: the parsers are built by the modules' own ``build_parser`` functions and walked."""

from __future__ import annotations

import argparse
import importlib

import pytest

#: module -> the import it needs beyond the harness (modes times torch; flax_mace trains a Flax
#: model with e3nn-jax)
PARSERS = {
    "benchmarks.cli": None,
    "benchmarks.first_use": None,
    "benchmarks.modes": "torch",
    "benchmarks.symmetric_contraction": None,
    "benchmarks.training.flax_mace": "e3nn_jax",
}


def _walk(parser: argparse.ArgumentParser, path: str):
    """(command path, parser) for ``parser`` and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if not (action.help or "").strip():
            missing.append("/".join(action.option_strings) or action.dest)
    return missing


def _parser(module: str) -> argparse.ArgumentParser:
    need = PARSERS[module]
    if need is not None:
        pytest.importorskip(need)
    return importlib.import_module(module).build_parser()


@pytest.mark.parametrize("module", sorted(PARSERS))
def test_every_option_has_help(module):
    missing = {path: m for path, p in _walk(_parser(module), module) if (m := _undocumented(p))}
    assert not missing, f"options without help: {missing}"


@pytest.mark.parametrize("module", sorted(PARSERS))
def test_every_command_has_description(module):
    bare = [path for path, p in _walk(_parser(module), module) if not (p.description or "").strip()]
    assert not bare, f"commands without description: {bare}"


def test_all_subcommands_walked():
    """The walk reaches the nested ``experiment tetris`` and the ``train`` command that other
    modules add, so the two tests above check them too."""
    paths = {path for path, _ in _walk(_parser("benchmarks.cli"), "tp-bench")}
    for cmd in ("run", "compare", "report", "merge", "docs-page", "train", "experiment",
                "experiment tetris", "validate"):
        assert f"tp-bench {cmd}" in paths


def test_help_renders(capsys):
    """``--help`` of every subcommand formats (a stray ``%`` in a help text breaks it)."""
    for path, p in _walk(_parser("benchmarks.cli"), "tp-bench"):
        p.print_help()
        assert p.format_usage().startswith("usage:"), path
    assert "COMMAND" in capsys.readouterr().out


def test_checker_flags_missing_help():
    p = argparse.ArgumentParser()
    p.add_argument("--documented", help="has one")
    p.add_argument("--bare")
    p.add_argument("--hidden", help=argparse.SUPPRESS)
    p.add_argument("path")
    assert _undocumented(p) == ["--bare", "path"]
