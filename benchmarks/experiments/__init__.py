"""``python -m benchmarks experiment ...``: experiments of the paper beyond timing
(:mod:`benchmarks.experiments.tetris`: chirality on the tetris shapes)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """The ``experiment`` command and its subcommands."""
    from ..cli import add_command
    from .tetris import add_parser as add_tetris

    e = add_command(sub, "experiment", "experiments of the paper beyond timing (tetris: "
                    "chirality)")
    names = e.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT",
                             help="tetris: can each product tell a mirror-image pair apart")
    add_tetris(names)
