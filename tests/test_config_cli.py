"""The real ``icnd check-config`` (and ``icnd run``) on bad configs: exit 2, one line naming the
file or variable and the key, never a traceback."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

# A name under .invalid never resolves (RFC 6761); the options bound the resolver's wait where
# no DNS server answers at all.
NO_SUCH_HOST = "nothing.invalid"
RESOLVER = {"RES_OPTIONS": "timeout:1 attempts:1"}


def icnd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ICN_")}
    return subprocess.run(
        [sys.executable, "-m", "icn_node.daemon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **RESOLVER, **(env or {})},
    )


def refused(r: subprocess.CompletedProcess[str], *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error: "), r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    return r.stderr


@pytest.mark.parametrize(
    "data, words",
    [
        (random.Random(10).randbytes(300) + b"\xff", ["not a TOML file (not UTF-8"]),
        (b"[mesh\n", ["not a TOML file (Expected ']'"]),
        (b"a = " + b"[" * 3000, ["not a TOML file (arrays or tables nested too deeply)"]),
        (b'[mesh]\nlisten = "not a host:7946"\n', ["mesh.listen: 'not a host' is neither"]),
        (b'[mesh]\nbootstrap = ["10.0.0.1:7946", 5]\n', ["mesh.bootstrap: must be a list"]),
        (
            b'[mesh]\nlisten = "' + NO_SUCH_HOST.encode() + b':7946"\n',
            ["mesh.listen: cannot resolve"],
        ),
        (
            b'[mesh]\nbootstrap = ["localhost:7946", "peer.invalid:7946"]\n',
            ["mesh.bootstrap: entry 2: cannot resolve host 'peer.invalid'"],
        ),
        (b"[compute]\nmax_attempts = 1.5\n", ["compute.max_attempts: must be an integer, got 1.5"]),
    ],
    ids=[
        "binary",
        "syntax",
        "deep",
        "bad-host",
        "list-type",
        "unresolved",
        "unresolved-entry",
        "type",
    ],
)
def test_check_config_names_file_and_key(tmp_path, data, words):
    path = tmp_path / "icnd.toml"
    path.write_bytes(data)
    err = refused(icnd("check-config", "--config", str(path)), *words)
    assert err.startswith(f"Error: {path}: "), err


def test_check_config_on_a_directory_and_a_missing_file(tmp_path):
    refused(icnd("check-config", "--config", str(tmp_path)), f"{tmp_path}: is a directory")
    refused(
        icnd("check-config", "-c", str(tmp_path / "no.toml")), f"{tmp_path / 'no.toml'}: no such"
    )


def test_check_config_names_the_environment_variable(tmp_path):
    r = icnd("check-config", env={"ICN_MESH_LISTEN": "not a host:7946"})
    refused(r, "Error: environment ICN_MESH_LISTEN: mesh.listen: 'not a host' is neither")
    r = icnd("check-config", env={"ICN_COMPUTE_MAX_ATTEMPTS": "many"})
    refused(r, "Error: environment ICN_COMPUTE_MAX_ATTEMPTS: compute.max_attempts: must be an")


def test_check_config_resolves_names_and_accepts_a_good_file(tmp_path):
    path = tmp_path / "icnd.toml"
    path.write_text('[mesh]\nlisten = "localhost:0"\nbootstrap = ["127.0.0.1:7946"]\n')
    r = icnd("check-config", "--config", str(path))
    assert r.returncode == 0 and r.stdout == f"{path}: ok\n", (r.stdout, r.stderr)


def test_check_config_no_resolve_checks_syntax_only(tmp_path):
    path = tmp_path / "icnd.toml"
    path.write_text('[mesh]\nbootstrap = ["peer.invalid:7946"]\n')
    r = icnd("check-config", "--no-resolve", "--config", str(path))
    assert r.returncode == 0 and r.stdout == f"{path}: ok\n", (r.stdout, r.stderr)
    path.write_text('[mesh]\nbootstrap = ["peer invalid:7946"]\n')
    refused(icnd("check-config", "--no-resolve", "-c", str(path)), "mesh.bootstrap: entry 1:")


def test_run_refuses_a_listen_name_that_does_not_resolve(tmp_path):
    path = tmp_path / "icnd.toml"
    path.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[mesh]\nlisten = "{NO_SUCH_HOST}:0"\n')
    refused(icnd("run", "--config", str(path)), f"Error: {path}: mesh.listen: cannot resolve")
