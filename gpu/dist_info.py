"""Make source trees importable as installed distributions, without building them.

``python gpu/dist_info.py SITE PROJECT_DIR [PROJECT_DIR ...]`` writes, for each project, a
``SITE/<name>-<version>.dist-info`` folder (``METADATA``, ``entry_points.txt``) read from its
``pyproject.toml``, and prints the folder that holds its import packages (the setuptools
``packages.find`` ``where``, else the project folder), one per line, for ``PYTHONPATH``.

The GPU machine has no registry and may lack the build backends' versions, so the repository's
own packages (and the OpenEquivariance source distribution) are used in place: the dist-info
folders let :func:`importlib.metadata.entry_points` find the ``tp_spec.backends`` entry points
and :func:`importlib.metadata.version` find the versions. Needs Python >= 3.11 (``tomllib``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def write_dist_info(site: Path, project: Path) -> Path:
    """Write ``project``'s dist-info folder into ``site``; return its import folder."""
    meta_path = project / "pyproject.toml"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {project} is not a Python project")
    meta = tomllib.loads(meta_path.read_text())
    proj = meta.get("project", {})
    name, version = proj.get("name"), proj.get("version")
    if not name or not version:
        raise ValueError(f"{meta_path}: [project] needs a static name and version, got "
                         f"name={name!r} version={version!r}")
    info = site / f"{_normalized(name)}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = proj.get("entry-points", {})
    lines = []
    for group, entries in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    (info / "INSTALLER").write_text("gpu/dist_info.py\n")
    find = meta.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    where = find.get("where", ["."])
    return (project / where[0]).resolve()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    site = Path(argv[0])
    for project in argv[1:]:
        print(write_dist_info(site, Path(project)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
