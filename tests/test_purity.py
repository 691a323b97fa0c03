"""The pure cores are sans-IO: no trio, no clock, no global randomness, no I/O modules.

Which modules are pure is read off the tree, not kept by hand, so a new module is checked the day
it appears. Under ``icn_node/`` a module is pure unless

- its file name is a driver or storage room (:data:`DRIVER_ROOMS`: ``driver.py``, ``store.py``, …),
- it sits in a package that is all I/O (:data:`IO_PACKAGES`: ``rpc/``, ``runner/``), or
- it is a top-level module other than the wire layer and the rate limiter
  (:data:`PURE_TOP_LEVEL`).

``core.py`` and ``states.py`` are pure wherever they sit.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "icn_node"
DRIVER_ROOMS = {"driver.py", "rpc.py", "runs.py", "service.py", "store.py", "tls.py"}
IO_PACKAGES = {"rpc", "runner"}
PURE_TOP_LEVEL = {"wire.py", "codec.py", "limits.py"}
ALWAYS_PURE = {"core.py", "states.py"}


def is_pure(path: pathlib.Path) -> bool:
    rel = path.relative_to(ROOT)
    if rel.name in ALWAYS_PURE:
        return True
    if len(rel.parts) == 1:
        return rel.name in PURE_TOP_LEVEL
    return rel.parts[0] not in IO_PACKAGES and rel.name not in DRIVER_ROOMS


PURE = sorted(p for p in ROOT.rglob("*.py") if is_pure(p))
FORBIDDEN = {
    "trio",
    "anyio",
    "asyncio",
    "time",
    "datetime",
    "socket",
    "os",
    "io",
    "subprocess",
    "threading",
    "secrets",
    "pathlib",
    "logging",
    "structlog",
    "sqlite3",
}
# The wire codec reads CBOR from an in-memory buffer: io.BytesIO is not I/O.
ALLOWED = {"wire.py": {"io"}}


def _rel(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", PURE, ids=_rel)
def test_module_is_sans_io(path):
    forbidden = FORBIDDEN - ALLOWED.get(_rel(path), set())
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]] if node.level == 0 else []
            if names == ["random"]:
                pytest.fail(f"{_rel(path)}: 'from random import …' (inject a random.Random)")
        else:
            names = []
        bad = forbidden.intersection(names)
        assert not bad, f"{_rel(path)} imports {bad}"
        # random only for random.Random (an injected source), never a module-level draw
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random":
                assert node.attr == "Random", f"{_rel(path)}: random.{node.attr}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input"}, f"{_rel(path)}: {node.func.id}"


def test_the_derivation_finds_the_cores_and_leaves_the_drivers():
    """The rule above cannot silently match nothing, or everything."""
    pure = {_rel(p) for p in PURE}
    for core in (
        "wire.py",
        "codec.py",
        "mesh/core.py",
        "mesh/states.py",
        "compute/submitter.py",
        "compute/executor.py",
        "compute/core.py",
        "compute/effects.py",
        "compute/records.py",
        "blobs/core.py",
        "scheduler/tasks.py",
        "scheduler/policy.py",
        "scheduler/resources.py",
    ):
        assert core in pure, f"{core} is a pure core but the derivation left it out"
    for driver in (
        "mesh/driver.py",
        "mesh/rpc.py",
        "mesh/tls.py",
        "compute/driver.py",
        "compute/runs.py",
        "compute/rpc.py",
        "blobs/driver.py",
        "blobs/store.py",
        "rpc/server.py",
        "runner/wasm.py",
        "node.py",
        "daemon.py",
        "store.py",
    ):
        assert driver not in pure, f"{driver} does I/O but the derivation calls it pure"
