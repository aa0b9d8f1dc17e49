"""No import cycle inside tp_spec, tp_torch or tp_jax, counting imports inside functions too.

The graph is read from the source (``ast``), so it also sees the lazy imports that a runtime
check of ``sys.modules`` would miss, and needs neither torch nor jax.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "tp_spec": ROOT / "spec" / "src" / "tp_spec",
    "tp_torch": ROOT / "packages" / "tp-torch" / "src" / "tp_torch",
    "tp_jax": ROOT / "packages" / "tp-jax" / "src" / "tp_jax",
}


def _module_name(pkg: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([pkg, *parts])


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never executed)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def import_graph(pkg: str, root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (anywhere in its source, except
    under ``if TYPE_CHECKING:``). An import of a package counts as an import of its
    ``__init__``, an import of a submodule also as one of every package above it (Python runs
    their ``__init__`` first); ``from p import name`` counts as an import of ``p.name`` where
    that is a module, else of ``p``."""
    files = {_module_name(pkg, root, p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        edges: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    src = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in files else src
                           for a in node.names]
            for t in targets:
                parts = t.split(".")
                # importing a.b.c runs a/__init__ and a/b/__init__ first
                for k in range(2, len(parts) + 1):
                    target = ".".join(parts[:k])
                    if (parts[0] == pkg and target in files and target != mod
                            and not mod.startswith(target + ".")):
                        edges.add(target)
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_counts_lazy_imports_and_parent_packages(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from .. import a\n")
    (root / "sub" / "leaf.py").write_text("")
    (root / "a.py").write_text("def f():\n    from .sub.leaf import g\n")
    g = import_graph("pkg", root)
    assert g["pkg.a"] == {"pkg.sub", "pkg.sub.leaf"}
    assert find_cycle(g) == ["pkg.a", "pkg.sub", "pkg.a"]


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_no_import_cycle(pkg):
    root = PACKAGES[pkg]
    if not root.is_dir():
        pytest.skip(f"{root} not in this checkout")
    cycle = find_cycle(import_graph(pkg, root))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_modules_under_600_lines(pkg):
    root = PACKAGES[pkg]
    if not root.is_dir():
        pytest.skip(f"{root} not in this checkout")
    long = {str(p.relative_to(ROOT)): n for p in root.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"
