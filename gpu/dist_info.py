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


def _dynamic_version(project: Path, meta: dict) -> str | None:
    """The version of ``[tool.setuptools.dynamic] version = {attr = "pkg.__version__"}``: the
    string literal assigned to it in ``pkg/__init__.py`` under the packages' folder (read, not
    imported: importing the package would need its dependencies)."""
    attr = meta.get("tool", {}).get("setuptools", {}).get("dynamic", {}).get("version", {})
    attr = attr.get("attr") if isinstance(attr, dict) else None
    if not attr or "version" not in meta.get("project", {}).get("dynamic", []):
        return None
    module, _, var = attr.rpartition(".")
    init = _where(project, meta) / Path(*module.split(".")) / "__init__.py"
    if not init.is_file():
        return None
    m = re.search(rf"^{re.escape(var)}\s*=\s*[\"']([^\"']+)[\"']", init.read_text(), re.M)
    return m.group(1) if m else None


def write_dist_info(site: Path, project: Path) -> Path:
    """Write ``project``'s dist-info folder into ``site``; return its import folder."""
    meta_path = project / "pyproject.toml"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {project} is not a Python project")
    meta = tomllib.loads(meta_path.read_text())
    proj = meta.get("project", {})
    name, version = proj.get("name"), proj.get("version") or _dynamic_version(project, meta)
    if not name or not version:
        raise ValueError(f"{meta_path}: [project] needs a name and a static version or a "
                         f"setuptools `attr` version, got name={name!r} version={version!r}")
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
    return _where(project, meta)


def _where(project: Path, meta: dict) -> Path:
    """The folder of the import packages: setuptools' ``packages.find`` ``where``."""
    find = meta.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    return (project / find.get("where", ["."])[0]).resolve()


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
