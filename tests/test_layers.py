"""The import graph of icn_node, the CLI and icn_dev: no cycles, and the layers point down.

Every module is parsed with ``ast``; every import counts, also one inside a function (a lazy
import hides a dependency from the import-time order, not from the design). Relative imports
are resolved against the importing module's package, and ``cli/`` is the package ``icn_cli`` it
installs as. An import of ``a.b.c`` is an edge to ``a.b.c`` and to the packages ``a.b`` and
``a`` whose ``__init__`` it runs, except packages the importer sits in (they are already being
imported), so that a package re-exporting its own submodules is not a cycle.
"""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"icn_node": "icn_node", "icn_cli": "cli", "icn_dev": "icn_dev", "icn_sim": "icn_sim"}


def _module_files() -> dict[str, pathlib.Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _module_files()


@dataclass(frozen=True)
class Edge:
    target: str
    path: pathlib.Path
    line: int

    def __str__(self) -> str:
        return f"{self.target} ({self.path.relative_to(ROOT)}:{self.line})"


def _known(name: str) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (``a.b.Name`` -> ``a.b``)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or None


def _imported_names(module: str, path: pathlib.Path):
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in MODULES else base


def direct_imports(module: str) -> list[Edge]:
    """The modules of ours that ``module`` names in an import statement."""
    path = MODULES[module]
    edges = []
    for line, name in _imported_names(module, path):
        target = _known(name)
        if target is not None and target != module:
            edges.append(Edge(target, path, line))
    return edges


def _runtime_edges(module: str) -> list[Edge]:
    """Direct imports plus the enclosing packages they initialise (see the module docstring)."""
    edges = []
    for edge in direct_imports(module):
        edges.append(edge)
        parts = edge.target.split(".")[:-1]
        while parts:
            parent = ".".join(parts)
            if not (module == parent or module.startswith(parent + ".")):
                edges.append(Edge(parent, edge.path, edge.line))
            parts.pop()
    return edges


def strongly_connected(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for edge in graph[node]:
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def one_cycle(graph: dict[str, list[Edge]], component: list[str]) -> list[Edge]:
    """A shortest cycle through the component's first module, as the imports that make it."""
    start = component[0]
    came_from: dict[str, tuple[str, Edge]] = {}
    frontier = [start]
    while frontier:
        step = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target == start:
                    path = [edge]
                    while node != start:
                        node, back = came_from[node]
                        path.append(back)
                    return path[::-1]
                if edge.target in component and edge.target not in came_from:
                    came_from[edge.target] = (node, edge)
                    step.append(edge.target)
        frontier = step
    raise AssertionError(f"{start} is on no cycle")


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


GRAPH = {module: _runtime_edges(module) for module in MODULES}
# The wire layer and the scheduler sit below the compute protocol and every driver.
LOWER = sorted(
    m
    for m in MODULES
    if m in ("icn_node.wire", "icn_node.codec") or _is_under(m, "icn_node.scheduler")
)
ABOVE = (
    "icn_node.compute",
    "icn_node.mesh.driver",
    "icn_node.mesh.rpc",
    "icn_node.rpc",
    "icn_node.runner",
    "icn_node.node",
    "icn_node.daemon",
)


def test_the_graph_sees_every_package_and_resolves_relative_imports():
    """A parser that found nothing would pass every test below."""
    for module in ("icn_node.node", "icn_cli.main", "icn_cli.compute", "icn_dev.demo"):
        assert module in GRAPH
    assert "icn_cli.common" in {e.target for e in GRAPH["icn_cli.compute"]}  # from .common
    assert "icn_node.wire" in {e.target for e in GRAPH["icn_node.mesh.core"]}  # from ..wire
    assert "icn_dev.cluster" in {e.target for e in GRAPH["icn_dev.demo"]}
    assert "icn_node.compute" in {e.target for e in GRAPH["icn_sim.engine"]}


def test_the_simulator_hosts_cores_not_drivers():
    """The simulator drives the sans-IO cores itself: it must not reach for a driver, the
    service container or the daemon (that would be a second host inside the first)."""
    drivers = ("icn_node.node", "icn_node.daemon", "icn_node.runner", "icn_node.rpc")
    bad = [
        f"{module} -> {edge}"
        for module in MODULES
        if _is_under(module, "icn_sim")
        for edge in direct_imports(module)
        if edge.target.endswith(".driver") or any(_is_under(edge.target, d) for d in drivers)
    ]
    assert not bad, "\n".join(bad)


def test_there_is_no_import_cycle():
    cycles = []
    for component in strongly_connected(GRAPH):
        steps = " -> ".join(str(e) for e in one_cycle(GRAPH, component))
        cycles.append(f"{component[0]} -> {steps}\n  (all of {', '.join(component)})")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_daemon_imports_neither_the_cli_nor_the_dev_tools_nor_the_simulator():
    bad = [
        f"{module} -> {edge}"
        for module in MODULES
        if _is_under(module, "icn_node")
        for edge in direct_imports(module)
        if any(_is_under(edge.target, p) for p in ("icn_cli", "icn_dev", "icn_sim"))
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", LOWER)
def test_wire_and_scheduler_import_nothing_above_them(module):
    bad = [str(e) for e in direct_imports(module) if any(_is_under(e.target, a) for a in ABOVE)]
    assert not bad, f"{module} imports a layer above it: " + ", ".join(bad)
