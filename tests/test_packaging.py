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


def test_every_data_file_the_daemon_reads_is_in_the_wheel():
    """Files beside the modules (the dashboard page) reach the wheel only through package-data;
    an editable install would read them from the tree and hide the gap."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = setuptools.get("package-data", {}).get("icn_node", [])
    found = {
        p.relative_to(ROOT / "icn_node").as_posix()
        for p in (ROOT / "icn_node").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert "dashboard.html" in found
    missing = sorted(f for f in found if not any(Path(f).match(pat) for pat in declared))
    assert not missing, f"add to [tool.setuptools] package-data icn_node: {missing}"
