"""What an ``icnctl`` call loads before it sends a byte, and how it finds the socket.

Each call is a new process, so every module it imports is paid again on every call in a
script's loop. The modules below cost icnctl ~0.5 s before (docs/PERFORMANCE.md, "CLI
start-up"); none of them is needed to send a request and print the answer. The wall-time
target itself lives in ``bench/bench_cli.py`` (``make bench-cli``), not here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from icn_cli.common import socket_from_config
from icn_cli.main import app
from typer.testing import CliRunner

from icn_node.config import load_config

# The module, and why it must stay out of an icnctl call.
HEAVY = {
    "structlog": "the daemon's logging (~100 ms with structlog.dev and rich)",
    "rich": "only for --help and usage errors, which Typer formats with it",
    "pydantic": "typer 0.29 validates options through it (pyproject pins typer below 0.29)",
    "trio": "the daemon's event loop; the client is blocking sockets",
    "wasmtime": "the sandbox",
    "prometheus_client": "the daemon's metrics",
    "icn_node.scheduler": "compute submit's profile and hints only",
    "icn_node.config": "the whole config schema: only with --config",
    "icn_node.logs": "server-side logging",
    "icn_node.rpc.protocol": "the server side of the RPC",
}


def loaded_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; which HEAVY modules it left in sys.modules."""
    probe = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules)))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {m: HEAVY[m] for m in json.loads(r.stdout.splitlines()[-1])}


def test_importing_icnctl_loads_none_of_the_heavy_modules():
    assert loaded_after("import icn_cli.main") == {}


@pytest.mark.parametrize("group", ["node", "compute", "blob", "mesh", "topology"])
def test_each_command_group_module_is_light(group):
    assert loaded_after(f"import icn_cli.main, icn_cli.{group}") == {}


@pytest.mark.parametrize("via", ["--socket", "--config"])
def test_a_whole_node_status_call_loads_none_of_the_heavy_modules(tmp_path, via):
    """Through Typer's parsing and the RPC client to the error it prints: no daemon here."""
    sock = str(tmp_path / "none.sock")
    cfg = tmp_path / "icnd.toml"
    cfg.write_text(f"[rpc]\nsocket = {sock!r}\n")
    where = sock if via == "--socket" else str(cfg)
    code = (
        "import os\n"
        "os.environ.pop('ICN_SOCKET', None)\n"
        "from icn_cli.main import app\n"
        "try:\n"
        f"    app([{via!r}, {where!r}, 'node', 'status'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 1, e.code\n"
    )
    assert loaded_after(code) == {}


def test_a_command_loads_only_its_own_group():
    code = (
        "from icn_cli.main import app\n"
        "try:\n"
        "    app(['--socket', '/nonexistent/icnd.sock', 'node', 'status'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "others = [m for m in ('icn_cli.compute', 'icn_cli.blob', 'icn_cli.mesh',\n"
        "                      'icn_cli.topology') if m in sys.modules]\n"
        "assert not others, others\n"
    )
    loaded_after(code)


# --- finding the socket: --socket, $ICN_SOCKET, --config / $ICN_CONFIG, the default -----------


def socket_used(args: list[str], env: dict[str, str | None]) -> str:
    """The socket ``icnctl ARGS node status`` tried, read off its error (no daemon runs)."""
    clean: dict[str, str | None] = {"ICN_SOCKET": None, "ICN_CONFIG": None, **env}
    r = CliRunner().invoke(app, [*args, "node", "status"], env=clean)
    assert r.exit_code == 1, r.output
    return r.output


def test_socket_option_wins_over_the_environment_and_the_config(tmp_path):
    cfg = tmp_path / "icnd.toml"
    cfg.write_text('[rpc]\nsocket = "/from/config.sock"\n')
    out = socket_used(
        ["--socket", "/from/option.sock", "--config", str(cfg)], {"ICN_SOCKET": "/from/env.sock"}
    )
    assert "/from/option.sock" in out


def test_icn_socket_wins_over_the_config(tmp_path):
    cfg = tmp_path / "icnd.toml"
    cfg.write_text('[rpc]\nsocket = "/from/config.sock"\n')
    assert "/from/env.sock" in socket_used(["--config", str(cfg)], {"ICN_SOCKET": "/from/env.sock"})


def test_the_config_names_the_socket_or_its_data_dir(tmp_path):
    cfg = tmp_path / "icnd.toml"
    cfg.write_text('[rpc]\nsocket = "/from/config.sock"\n')
    assert "/from/config.sock" in socket_used(["--config", str(cfg)], {})
    assert "/from/config.sock" in socket_used([], {"ICN_CONFIG": str(cfg)})
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path}/data"\n')
    assert f"{tmp_path}/data/icnd.sock" in socket_used(["--config", str(cfg)], {})
    # The config's own environment overrides apply, as they do for icnd.
    out = socket_used(["--config", str(cfg)], {"ICN_RPC_SOCKET": "/from/icn_rpc_socket.sock"})
    assert "/from/icn_rpc_socket.sock" in out


def test_without_any_the_default_socket(tmp_path):
    assert "/var/lib/icn/icnd.sock" in socket_used([], {})


@pytest.mark.parametrize(
    "text, env",
    [
        ("", {}),
        ('[rpc]\nsocket = "/run/icn//icnd.sock"\n', {}),
        ('[node]\ndata_dir = "relative/dir/"\n', {}),
        ('[node]\ndata_dir = "/srv/icn"\n[rpc]\nsocket = ""\n', {}),
        ('[node]\ndata_dir = "/srv/icn"\n', {"ICN_NODE_DATA_DIR": "/env/icn"}),
        ('[rpc]\nsocket = "/file.sock"\n', {"ICN_RPC_SOCKET": "/env.sock"}),
        ('[rpc]\nsocket = "/file.sock"\n', {"ICN_RPC_SOCKET": ""}),
        ("[mesh]\ndegree = 8\n[rpc]\nsocket = 'x.sock'\n", {"ICN_SOCKET": "/not/a/key"}),
    ],
)
def test_the_two_keys_give_what_icnd_loads(tmp_path, text, env):
    """icnctl reads rpc.socket and node.data_dir alone; icnd's load_config is the reference."""
    cfg = tmp_path / "icnd.toml"
    cfg.write_text(text)
    assert socket_from_config(cfg, env) == str(load_config(cfg, env=env).rpc_socket)


@pytest.mark.parametrize(
    "text, env, error",
    [
        (None, {}, "no such file"),
        ("[rpc\n", {}, "not a TOML file"),
        ("[rpc]\nsocket = 5\n", {}, "rpc.socket: must be a string, got 5"),
        ('node = "x"\n', {}, "must be a table"),
        ('[node]\ndata_dir = ""\n', {}, "node.data_dir: must not be empty"),
        ("", {"ICN_NODE_DATA_DIR": ""}, "node.data_dir: must not be empty"),
    ],
)
def test_a_config_icnd_would_refuse_for_the_socket_is_refused_alike(tmp_path, text, env, error):
    cfg = tmp_path / "icnd.toml"
    if text is not None:
        cfg.write_text(text)
    r = CliRunner().invoke(
        app, ["--config", str(cfg), "node", "status"], env={"ICN_SOCKET": None, **env}
    )
    assert r.exit_code == 1, r.output
    assert r.output.startswith(f"Error: {cfg}") or r.output.startswith("Error: environment")
    assert error in r.output, r.output


def test_keys_icnctl_does_not_read_are_left_to_icnd(tmp_path):
    """A bad key elsewhere does not stop icnctl reaching a running icnd (`icnd check-config`
    names it); before, every call loaded and checked the whole file."""
    cfg = tmp_path / "icnd.toml"
    cfg.write_text("[mesh]\ndegree = 'many'\n[rpc]\nsocket = '/from/config.sock'\n")
    assert "/from/config.sock" in socket_used(["--config", str(cfg)], {})
