"""A real icnd under hostile local clients: lines that used to kill it, clients that hold its
socket without using it, and users it does not serve."""

from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import socket
import time

import pytest
from icn_cli.main import app as icnctl_app

from icn_dev.cluster import LocalCluster
from icn_dev.rpc_load import RpcLoad
from icn_node.errors import RpcError
from icn_node.rpc.client import RpcClient
from tests.test_rpc import NOBODY, as_user, needs_root

pytestmark = pytest.mark.integration


@pytest.fixture
def node(short_tmp):
    with LocalCluster(short_tmp, 1, topology="none") as cluster:
        cluster.start_all()
        yield cluster


def exchange(path, payload: bytes) -> dict:
    """One line to the socket, one line back."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(payload + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf.splitlines()[0])


def test_lines_that_killed_icnd_get_an_error_and_it_keeps_serving(node):
    n = node.nodes[0]
    hostile = [
        # Until issue 10: RecursionError, then the int conversion limit; icnd exited 1.
        (b"[" * 1500, -32700, "parse error: nested deeper than 32 levels"),
        (
            b'{"jsonrpc": "2.0", "id": ' + b"1" * 5000 + b', "method": "node.status"}',
            -32700,
            "parse error: a number longer than 40 characters",
        ),
        (b'{"a": ' * 2000 + b"1" + b"}" * 2000, -32700, "parse error: nested deeper than 32"),
        (b'{"jsonrpc": "2.0", "id": 1e999, "method": "x"}', -32700, "parse error: number out of"),
        (b'{"jsonrpc": "2.0", "id": [], "method": "x"}', -32600, "id: expected a string"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "\\ud800"}', -32700, "parse error: a string"),
    ]
    for payload, code, message in hostile:
        reply = exchange(n.socket, payload)
        assert reply["error"]["code"] == code, reply
        assert reply["error"]["message"].startswith(message), reply
        assert n.running and n.socket.exists()
    assert node.rpc(0, "node.status")["did"] == n.did

    # A parameter of the wrong type is refused by name, not an internal error.
    with pytest.raises(RpcError) as e:
        node.rpc(0, "mesh.publish", {"topic": "t", "count": "many"})
    assert (e.value.code, str(e.value)) == (-32602, "count: expected an integer, got str")
    with pytest.raises(RpcError) as e:
        node.rpc(0, "compute.list", {"limit": 10**30})
    assert e.value.code == -32602 and str(e.value).startswith("limit: expected 1-")
    assert node.rpc(0, "node.status")["did"] == n.did


def test_idle_and_slow_clients_do_not_stall_icnctl(node):
    n = node.nodes[0]
    # More than icnd's 128 slots: until issue 10 every icnctl call then waited ~30 s for one.
    with RpcLoad(n.socket, idle=200, trickle=40, unread=10) as load:
        time.sleep(1.0)
        r = node.icnctl(0, "--timeout", "5", "node", "status")
        assert r.returncode == 0, r.stderr
        assert n.did in r.stdout
        for _ in range(20):
            with RpcClient(n.socket, timeout=5) as client:
                assert client.call("node.status")["did"] == n.did
        stats = load.snapshot()
    # Every connect() got through; beyond the 128 slots icnd closed the clients that had
    # waited longest, or told those arriving in a burst (0.5 s of grace each) it was busy.
    assert stats.refused == 0
    assert stats.closed_by_daemon + stats.told_busy >= 250 - 128
    assert n.running


def icnctl_here(*args: str) -> bytes:
    """icnctl run in this process (a forked child, as another user): its exit code and
    output, as JSON."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            icnctl_app(list(args), prog_name="icnctl")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}).encode()


@needs_root
def test_icnctl_run_by_a_user_icnd_does_not_serve_says_why(short_tmp):
    group = grp.getgrgid(NOBODY).gr_name  # "nogroup" on Debian, "nobody" elsewhere
    with LocalCluster(
        short_tmp, 1, topology="none", node_config=lambda i, dids: {"rpc": {"allowed_group": group}}
    ) as cluster:
        cluster.start_all()
        n = cluster.nodes[0]
        for d in (short_tmp, n.data_dir):
            os.chmod(d, 0o755)  # let other users reach the socket; its own mode is 0660
        assert n.socket.stat().st_gid == NOBODY and (n.socket.stat().st_mode & 0o777) == 0o660
        sock = str(n.socket)

        def run_as(uid: int, gid: int) -> dict:
            code, out = as_user(
                uid, gid, [], lambda: icnctl_here("--socket", sock, "node", "status")
            )
            assert code == 0, out
            return json.loads(out)

        assert json.loads(icnctl_here("--socket", sock, "node", "status"))["code"] == 0  # root
        member = run_as(NOBODY, NOBODY)
        assert member["code"] == 0 and n.did in member["stdout"], member
        # Someone else, let past the file mode by hand: the credential check still refuses.
        os.chmod(n.socket, 0o666)
        stranger = run_as(12345, 12345)
        assert stranger["code"] == 1
        assert stranger["stderr"] == (
            "Error: permission denied: uid 12345 is not icnd's user (uid 0) nor in group "
            f"{group} (rpc.allowed_group)\n"
        )
        assert n.running
        assert cluster.rpc(0, "node.status")["did"] == n.did
