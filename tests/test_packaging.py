"""The wheel must carry every package, and the pure cores must not import trio."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {"icn_cli"}
    for top in ("icn_node", "icn_dev", "icn_sim"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_no_bare_cli_package_is_installed():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "cli" not in listed


def test_pure_cores_do_not_import_trio():
    code = (
        "import sys, importlib\n"
        "for m in ['icn_node.scheduler', 'icn_node.config', 'icn_node.identity',\n"
        "          'icn_node.blobs', 'icn_node.blobs.core', 'icn_sim.engine']:\n"
        "    importlib.import_module(m)\n"
        "assert 'trio' not in sys.modules, 'a pure core imported trio'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
