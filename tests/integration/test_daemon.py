"""A real icnd process in a temp dir, driven with icnctl and a raw socket."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from icn_dev.cluster import LocalCluster

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def node(short_tmp):
    with LocalCluster(short_tmp, 1, topology="none") as cluster:
        cluster.start_all()
        yield cluster


def raw_exchange(path, payload: bytes, read=True) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not read:
            return b""
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if payload.endswith(b"\n") and buf.count(b"\n") >= payload.count(b"\n"):
                    break
        except ConnectionResetError:
            pass
        return buf


def test_status_capacity_bad_clients_and_graceful_stop(node):
    n = node.nodes[0]
    r = node.icnctl(0, "--json", "node", "status")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["did"] == n.did
    assert status["version"]
    assert status["listen"]["rpc"] == str(n.socket)
    assert status["peers"] == 0

    r = node.icnctl(0, "--json", "node", "capacity")
    assert r.returncode == 0, r.stderr
    cap = json.loads(r.stdout)
    for key in (
        "cpu_cores_available",
        "memory_mb_available",
        "storage_mb_available",
        "network_mbps",
    ):
        assert cap[key] > 0, key
    assert cap["gpu_devices"] == []  # no GPU on this machine: NVML degrades cleanly

    human = node.icnctl(0, "node", "status")
    assert human.returncode == 0 and n.did in human.stdout

    # Garbage, a non-object, and a 2 MiB line: errors or a closed connection, never a crash.
    out = raw_exchange(n.socket, b"\x00\xffgarbage\n")
    assert json.loads(out.splitlines()[0])["error"]["code"] == -32700
    out = raw_exchange(n.socket, b"[1,2,3]\n")
    assert json.loads(out.splitlines()[0])["error"]["code"] == -32600
    out = raw_exchange(n.socket, b"a" * (2 * 1024 * 1024) + b"\n")
    assert b"larger than" in out

    # Metrics endpoint exports node info.
    metrics_addr = status["listen"]["metrics"]
    body = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
    assert f'icn_node_info{{did="{n.did}"' in body
    assert "process_resident_memory_bytes" in body

    # The node announces itself as an executor with its EWMA-smoothed load.
    (me,) = node.rpc(0, "compute.executors")["executors"]
    assert me["did"] == n.did
    assert 0.0 <= me["metrics"]["cpu_load"] <= 1.0
    assert 0 < me["metrics"]["memory_used"] < me["metrics"]["memory_max"]

    # Still answering after all of it.
    assert node.rpc(0, "node.status")["did"] == n.did

    proc = n.process
    start = time.monotonic()
    assert node.stop(0) == 0
    assert time.monotonic() - start < 5.0
    assert not n.socket.exists()
    assert proc.returncode == 0


def test_icnctl_without_daemon_exits_1_with_a_clear_error(short_tmp):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "icn_cli",
            "--socket",
            str(short_tmp / "none.sock"),
            "node",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("Error: no icnd is listening")


def test_icnctl_usage_error_exits_2():
    r = subprocess.run(
        [sys.executable, "-m", "icn_cli", "node", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2


def icnd(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "icn_node.daemon", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_init_then_bad_config_and_loose_key_exit_2(short_tmp):
    data = short_tmp / "d"
    r = icnd("init", "--data-dir", str(data))
    assert r.returncode == 0 and r.stdout.startswith("did:key:z6Mk")
    again = icnd("init", "--data-dir", str(data))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr

    bad = short_tmp / "bad.toml"
    bad.write_text(f'[node]\ndata_dir = "{data}"\n[mesh]\ndegree = "six"\n')
    r = icnd("run", "--config", str(bad))
    assert r.returncode == 2
    assert str(bad) in r.stderr and "mesh.degree" in r.stderr

    good = short_tmp / "good.toml"
    good.write_text(
        f'[node]\ndata_dir = "{data}"\n[mesh]\nlisten = "127.0.0.1:0"\n[metrics]\nlisten = ""\n'
    )
    os.chmod(data / "node.key", 0o640)
    r = icnd("run", "--config", str(good))
    assert r.returncode == 2 and "too open" in r.stderr

    r = icnd("check-config", "--config", str(good))
    assert r.returncode == 0


def test_a_locality_hint_without_a_profile_is_a_usage_error():
    # refused before anything is sent (no daemon needed)
    r = subprocess.run(
        [sys.executable, "-m", "icn_cli", "--socket", "/nonexistent.sock", "compute", "submit",
         str(EXAMPLES / "sum.wat"), "--region", "eu"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 2
    assert "resource profile" in r.stderr
