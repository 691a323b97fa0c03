"""The pure cores are sans-IO: no trio, no clock, no global randomness, no I/O modules.

One rule set for every pure module (scheduler, the compute protocol cores, the blob and mesh
cores and the wire codec); the drivers beside them (``compute/service.py``, ``blobs/driver.py``,
``mesh/driver.py``) may do I/O.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "icn_node"
PURE = sorted(
    [
        *(ROOT / "scheduler").glob("*.py"),
        *(
            ROOT / "compute" / n
            for n in (
                "__init__.py",
                "actions.py",
                "executor.py",
                "registry.py",
                "submitter.py",
                "tasks.py",
            )
        ),
        ROOT / "blobs" / "core.py",
        ROOT / "mesh" / "core.py",
        ROOT / "mesh" / "states.py",
        ROOT / "wire.py",
    ]
)
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
# The codec reads CBOR from an in-memory buffer: io.BytesIO is not I/O.
ALLOWED = {"wire.py": {"io"}}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_sans_io(path):
    forbidden = FORBIDDEN - ALLOWED.get(path.name, set())
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]] if node.level == 0 else []
            if names == ["random"]:
                pytest.fail(f"{path.name}: 'from random import …' (inject a random.Random)")
        else:
            names = []
        bad = forbidden.intersection(names)
        assert not bad, f"{path.name} imports {bad}"
        # random only for random.Random (an injected source), never a module-level draw
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random":
                assert node.attr == "Random", f"{path.name}: random.{node.attr}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input"}, f"{path.name}: {node.func.id}"


def test_the_list_covers_the_compute_cores():
    names = {p.name for p in PURE if p.parent.name == "compute"}
    on_disk = {p.name for p in (ROOT / "compute").glob("*.py")} - {"service.py"}
    assert names == on_disk, "a new compute module: add it to PURE or document why it is a driver"
