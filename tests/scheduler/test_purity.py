"""The scheduler core is sans-IO: no trio, no clock, no global randomness, no I/O modules."""

from __future__ import annotations

import ast
import pathlib

import pytest

import icn_node.scheduler

PKG = pathlib.Path(icn_node.scheduler.__file__).parent
FORBIDDEN_MODULES = {"trio", "anyio", "asyncio", "time", "datetime", "socket", "os", "io",
                     "subprocess", "threading", "secrets", "pathlib", "logging", "structlog"}


@pytest.mark.parametrize("path", sorted(PKG.glob("*.py")), ids=lambda p: p.name)
def test_module_is_pure(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
            if names == ["random"]:
                pytest.fail(f"{path.name}: 'from random import ...' (use an injected source)")
        else:
            names = []
        bad = FORBIDDEN_MODULES.intersection(names)
        assert not bad, f"{path.name} imports {bad}"
        # random is imported only for isinstance(random.Random); no module-level draws.
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random":
                assert node.attr == "Random", f"{path.name}: random.{node.attr}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input"}, f"{path.name}: {node.func.id}"
