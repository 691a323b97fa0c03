"""The dashboard's JSON API (icn_node.dashboard), in-process, without a browser.

A real node runs in-process with its metrics endpoint on 127.0.0.1:0, and every request goes
over TCP as a browser would send it: each endpoint's shape against the node's own handlers,
the page itself, and the refusals (bad path, bad parameter, wrong method, foreign Host), each a
JSON error that names what is wrong. A stub ``invoke`` covers what one lone node cannot show:
limits on long lists, a service not started yet, a handler bug.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from icn_node.config import parse_hostport
from icn_node.dashboard import LIMITS, MAX_HOLDERS, MAX_OFFERS, Dashboard
from icn_node.errors import RpcError
from icn_node.metrics import serve_metrics
from icn_node.node import Node
from icn_node.rpc import RpcRegistry
from icn_node.rpc.protocol import Call

SUM = Path(__file__).resolve().parent.parent / "examples" / "sum.wat"


@pytest.fixture
def node(lone_node):
    return lone_node


async def raw(address: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = parse_hostport(address)
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


async def http(
    node: Node, target: str, method: str = "GET", host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    address = node.addresses["metrics"]
    request = f"{method} {target} HTTP/1.1\r\nHost: {host or address}\r\nAccept: */*\r\n\r\n"
    return await raw(address, request.encode())


async def until(probe: Callable[[], Awaitable[Any]]) -> Any:
    """Poll ``probe`` until it returns something truthy (fails after 20 s)."""
    with trio.fail_after(20):
        while True:
            if out := await probe():
                return out
            await trio.sleep(0.1)


async def api(node: Node, target: str, status: int = 200) -> Any:
    code, headers, body = await http(node, target)
    assert headers["content-type"] == "application/json", headers
    assert headers["cache-control"] == "no-store"
    doc = json.loads(body)
    assert code == status, doc
    return doc


# --- the page --------------------------------------------------------------------------------


async def test_the_page_is_one_self_contained_file_with_a_strict_policy(node):
    status, headers, body = await http(node, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    page = body.decode()
    assert "<script>" in page and "/api/v1/" in page
    # Nothing from elsewhere: no CDN, no external script, style or font.
    assert "http://" not in page and "https://" not in page and " src=" not in page
    # Data goes in as text only.
    assert "innerHTML" not in page


async def test_metrics_are_still_served_beside_the_dashboard(node):
    status, headers, body = await http(node, "/metrics")
    assert status == 200 and b"icn_node_info" in body


# --- each endpoint against the node's own handlers -----------------------------------------------


async def test_index_names_every_endpoint_and_its_limits(node):
    doc = await api(node, "/api/v1")
    assert "/api/v1/tasks/<task>" in doc["endpoints"]
    assert doc["limits"] == {k: most for k, (_, most) in LIMITS.items()}


async def test_node_is_the_status_with_the_capacity(node):
    doc = await api(node, "/api/v1/node")
    assert doc["did"] == node.did
    assert doc["listen"]["metrics"] == node.addresses["metrics"]
    assert doc["capacity"]["cpu_cores_total"] > 0
    assert {"version", "uptime_s", "region", "peers"} <= set(doc)


async def test_a_lone_node_has_no_peers(node):
    assert await api(node, "/api/v1/peers") == {"peers": [], "total": 0}


async def test_executors_carry_capacity_smoothed_load_and_trust(node):
    async def known() -> Any:
        doc = await api(node, "/api/v1/executors")
        return doc if doc["executors"] else None

    doc = await until(known)
    (me,) = doc["executors"]
    assert me["did"] == node.did and doc["total"] == 1
    assert me["capacity"]["cpu_cores_total"] > 0
    assert 0.0 <= me["metrics"]["cpu_load"] <= 1.0
    assert me["trust"] == 1.0 and "effective_trust" in me


async def test_tasks_list_without_output_and_one_task_with_it(node):
    module = base64.b64encode(SUM.read_bytes()).decode()
    params = {"module": module, "fuel": 100_000, "args": ["100"]}
    task = (await node.rpc.invoke("compute.submit", params))["task"]

    async def completed() -> Any:
        one = await api(node, f"/api/v1/tasks/{task}")
        return one if one["state"] == "completed" else None

    one = await until(completed)
    assert one["result"]["stdout"] == "5050\n"
    assert one["executor"] == node.did
    assert set(one["timings"]) >= {"claimed", "started", "finished"}
    assert await api(node, f"/api/v1/tasks/{task[:8]}") == one  # a unique prefix will do

    doc = await api(node, "/api/v1/tasks")
    (row,) = doc["tasks"]
    assert row["task"] == task and row["state"] == "completed"
    assert "stdout" not in row["result"] and "stderr" not in row["result"]
    assert row["result"]["exit_code"] == one["result"]["exit_code"]
    assert row["offers_total"] == len(one["offers"])
    assert doc["counts"] == {"completed": 1}
    assert (await api(node, "/api/v1/tasks?state=running&limit=5"))["tasks"] == []
    assert len((await api(node, "/api/v1/tasks?state=completed"))["tasks"]) == 1


async def test_blobs_held_here_and_their_holders(node):
    line = {"jsonrpc": "2.0", "id": 1, "method": "blob.put", "params": {"data": "aGk="}}
    blob = json.loads(await node.rpc.handle_line(json.dumps(line).encode()))["result"]["blob"]
    doc = await api(node, "/api/v1/blobs")
    assert doc["held"] == [{"blob": blob, "size": 2}] and doc["held_truncated"] is False
    assert doc["stored_bytes"] == 2 and "quota_bytes" in doc
    assert doc["cooperative"] == [{"blob": blob, "size": 2, "holders": 1, "dids": [node.did]}]
    assert doc["known"] == 1


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, status, message",
    [
        ("/api/v1/nodes", 404, "no such path '/api/v1/nodes' (try / or one of: /api/v1/node,"),
        ("/api/v1/node/", 404, "no such path '/api/v1/node/'"),
        ("/api/v2/node", 404, "no such path"),
        ("/index.html", 404, "no such path '/index.html'"),
        ("/api/v1/node?limit=3", 400, "unknown parameter 'limit' (expected: none)"),
        ("/?x=1", 400, "unknown parameter 'x' (expected: none)"),
        ("/api/v1/tasks?colour=red", 400, "unknown parameter 'colour' (expected: limit, state)"),
        ("/api/v1/tasks?limit=0", 400, "limit: expected an integer from 1 to 500, got '0'"),
        ("/api/v1/tasks?limit=501", 400, "limit: expected an integer from 1 to 500, got '501'"),
        ("/api/v1/tasks?limit=-1", 400, "limit: expected an integer from 1 to 500"),
        ("/api/v1/tasks?limit=", 400, "limit: expected an integer from 1 to 500, got ''"),
        ("/api/v1/peers?limit=1e3", 400, "limit: expected an integer from 1 to 1000"),
        ("/api/v1/tasks?limit=1&limit=2", 400, "parameter 'limit' given twice"),
        ("/api/v1/tasks?state=done", 400, "state: expected one of pending, negotiating,"),
        ("/api/v1/tasks?limit", 400, "malformed query string 'limit'"),
        ("/api/v1/tasks?a=1&&b=2", 400, "malformed query string"),
        ("/api/v1/tasks/", 400, "task: expected 4-64 lower-case hex digits, got ''"),
        ("/api/v1/tasks/xyz1", 400, "task: expected 4-64 lower-case hex digits, got 'xyz1'"),
        ("/api/v1/tasks/ABCD", 400, "task: expected 4-64 lower-case hex digits"),
        ("/api/v1/tasks/" + "a" * 65, 400, "task: expected 4-64"),
        ("/api/v1/tasks/abcd/x", 400, "task: expected 4-64"),
        ("/api/v1/tasks/abcd?full=1", 400, "unknown parameter 'full'"),
        ("/api/v1/tasks/abcd", 404, "no task abcd on this node"),
    ],
)
async def test_a_bad_path_or_parameter_is_a_json_error_naming_it(node, target, status, message):
    doc = await api(node, target, status)
    assert doc["status"] == status
    assert doc["error"].startswith(message), doc["error"]


async def test_the_api_is_read_only(node):
    status, headers, body = await http(node, "/api/v1/tasks", method="POST")
    assert status == 405 and headers["allow"] == "GET"
    assert json.loads(body)["error"] == "method 'POST' not allowed: the API is read-only"


@pytest.mark.parametrize("host", ["evil.example:9464", "evil.example", "127.0.0.1.nip.io"])
async def test_a_foreign_host_header_is_refused(node, host):
    status, _, body = await http(node, "/api/v1/node", host=host)
    assert status == 403
    assert json.loads(body)["error"] == f"Host {host!r} is not this node's address"
    status, _, _ = await http(node, "/", host=host)
    assert status == 403


@pytest.mark.parametrize("host", ["localhost:1", "127.0.0.1", "[::1]:80", "app.localhost"])
async def test_local_host_headers_are_served(node, host):
    status, _, _ = await http(node, "/api/v1/node", host=host)
    assert status == 200


@pytest.mark.parametrize(
    "request_",
    [b"GET\r\n\r\n", b"GET / HTTP/2\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"\r\n\r\n"],
)
async def test_a_malformed_request_is_a_400(node, request_):
    status, _, body = await raw(node.addresses["metrics"], request_)
    assert status == 400 and body == b"bad request\n"


# --- stubs: limits, start-up, bugs ---------------------------------------------------------------


def stub(results: dict[str, Any]):
    calls = []

    async def invoke(method: str, params: dict[str, Any]) -> Any:
        calls.append((method, params))
        result = results[method]
        if isinstance(result, BaseException):
            raise result
        return result

    return invoke, calls


async def get(app: Dashboard, target: str) -> tuple[int, Any]:
    response = await app("GET", target, {"host": "127.0.0.1:9464"})
    return response.status, json.loads(response.body)


def _offer(i: int) -> dict[str, Any]:
    return {"executor": f"did:key:z{i}", "score": 0.5, "components": {}}


async def test_long_lists_are_cut_to_their_limits_and_say_how_many_there_were():
    peers = [{"did": f"did:key:z{i}", "rtt_ms": 1.0} for i in range(1500)]
    task = {"task": "ab", "state": "running", "offers": [_offer(i) for i in range(100)]}
    holders = [f"did:key:z{i}" for i in range(40)]
    invoke, calls = stub(
        {
            "mesh.peers": {"peers": peers},
            "netmap.topology": {"nodes": [{"did": "did:key:z1", "rtt_estimated_ms": 2.0}]},
            "compute.executors": {"executors": [{"did": str(i)} for i in range(1200)]},
            "compute.list": {"tasks": [{**task, "result": None}], "counts": {"running": 1}},
            "blob.list": {
                "blobs": [{"blob": "cd", "size": 1, "holders": 40, "dids": holders}],
                "stored_bytes": 0,
                "quota_bytes": None,
                "truncated": True,
                "known": 1,
            },
        }
    )
    app = Dashboard(invoke)
    status, doc = await get(app, "/api/v1/peers")
    assert status == 200 and len(doc["peers"]) == LIMITS["peers"][0] and doc["total"] == 1500
    assert doc["peers"][1]["rtt_estimated_ms"] == 2.0 and doc["peers"][2]["bandwidth_mbps"] is None
    _, doc = await get(app, "/api/v1/peers?limit=1000")
    assert len(doc["peers"]) == 1000
    _, doc = await get(app, "/api/v1/executors?limit=7")
    assert len(doc["executors"]) == 7 and doc["total"] == 1200
    _, doc = await get(app, "/api/v1/tasks?limit=500&state=running")
    assert len(doc["tasks"][0]["offers"]) == MAX_OFFERS and doc["tasks"][0]["offers_total"] == 100
    assert ("compute.list", {"limit": 500, "state": "running"}) in calls
    _, doc = await get(app, "/api/v1/blobs?limit=3")
    assert len(doc["cooperative"][0]["dids"]) == MAX_HOLDERS
    assert ("blob.list", {"all": True, "limit": 3, "dids": True}) in calls
    assert ("blob.list", {"limit": 3}) in calls and doc["held_truncated"] is True


async def test_before_the_services_start_the_api_says_so():
    status, doc = await get(Dashboard(RpcRegistry().invoke), "/api/v1/peers")
    assert status == 503 and doc["error"] == "unknown method 'mesh.peers'"


async def test_a_handler_bug_is_a_500_and_the_next_request_is_served():
    invoke, _ = stub({"mesh.peers": KeyError("oops"), "compute.executors": {"executors": []}})
    app = Dashboard(invoke)
    status, doc = await get(app, "/api/v1/peers")
    assert status == 500 and doc["error"].startswith("internal error serving /api/v1/peers")
    assert await get(app, "/api/v1/executors") == (200, {"executors": [], "total": 0})
    invoke, _ = stub({"mesh.peers": RpcError(-32010, "domain")})
    status, doc = await get(Dashboard(invoke), "/api/v1/peers")
    assert (status, doc) == (500, {"error": "domain", "status": 500})


async def test_without_the_dashboard_the_endpoint_serves_metrics_alone(node):
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_metrics, node.metrics, "127.0.0.1", 0)
        address = f"{host}:{port}"
        for target, expected in (("/", 200), ("/metrics", 200), ("/api/v1/node", 404)):
            request = f"GET {target} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode()
            status, _, _ = await raw(address, request)
            assert status == expected, target
        nursery.cancel_scope.cancel()


# --- the registry's in-process call --------------------------------------------------------------


async def test_invoke_parses_params_and_refuses_streaming_methods(node):
    with pytest.raises(RpcError, match="limit: expected 1-10000"):
        await node.rpc.invoke("compute.list", {"limit": 0})
    with pytest.raises(RpcError, match="unknown method 'blob.put'"):
        await node.rpc.invoke("blob.put", {"data": "aGk="})
    registry = RpcRegistry()

    async def streaming(params: Any, call: Call) -> Any:
        return params

    registry.register_streaming("s", streaming)
    with pytest.raises(RpcError, match="unknown method 's'"):
        await registry.invoke("s")
