"""A real icnd under hostile local clients: lines that used to kill it."""

from __future__ import annotations

import json
import socket

import pytest

from icn_dev.cluster import LocalCluster
from icn_node.errors import RpcError

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
