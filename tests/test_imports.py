"""The package's import graph: no cycles, and the config knows no scheme.

Every ``import`` and ``from ... import`` of every module under src/tinylarge is
read with :mod:`ast`, at any nesting level (an import inside a function is
still a dependency, and a cycle dodged by importing late is still a cycle),
except under ``if TYPE_CHECKING:``, which never runs. ``from pkg import name``
is an edge to the submodule ``pkg.name`` when there is one, else to ``pkg``;
a package's ``__init__`` is the node of the package itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tinylarge"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from imports_of(ast.Module(body=[child], type_ignores=[]))
        else:
            yield from imports_of(node)


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def dependencies(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules ``module`` imports."""
    out: set[str] = set()
    for node in imports_of(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _base(module, path, node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        out.update(t for t in targets if t in known and t != module)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: dependencies(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_a_cycle(graph, set(c)) for c in components]


def _a_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_walker_sees_nested_relative_and_type_checking_imports(tmp_path: Path) -> None:
    code = (
        "from typing import TYPE_CHECKING\n"
        "import tinylarge.a\n"
        "if TYPE_CHECKING:\n    import tinylarge.b\nelse:\n    import tinylarge.c\n"
        "def f():\n    from . import d\n    from .d import thing\n"
    )
    found = set()
    for node in imports_of(ast.parse(code)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        else:
            fake = tmp_path / "mod.py"
            found.update(f"{_base('tinylarge.pkg.mod', fake, node)}:{a.name}" for a in node.names)
    assert found == {
        "tinylarge.a",
        "tinylarge.c",
        "tinylarge.pkg:d",
        "tinylarge.pkg.d:thing",
        "typing:TYPE_CHECKING",
    }
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    message = "\n".join(" -> ".join(c) for c in found)
    assert not found, f"{len(found)} import cycle(s):\n{message}"


def test_config_imports_no_scheme_module() -> None:
    graph = import_graph()
    schemes = sorted(
        m for m in reachable(graph, "tinylarge.config") if m.startswith("tinylarge.schemes")
    )
    assert not schemes, f"tinylarge.config reaches {schemes}"
