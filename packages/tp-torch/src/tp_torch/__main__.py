"""``python -m tp_torch precompile ...``: see :mod:`tp_torch.precompile`."""

from __future__ import annotations

import sys

COMMANDS = ("precompile",)


def _main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m tp_torch {{{','.join(COMMANDS)}}} [--help]", file=sys.stderr)
        return 2
    from .precompile import main

    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
