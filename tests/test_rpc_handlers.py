"""Every RPC method of a real node, given parameters of the wrong type or out of range, answers
with an error naming the problem: never "internal error", and the node keeps serving.

The node runs in-process (``Node.run``: mesh, blob store, compute driver, RPC registry), alone.
Each call gets a valid base for the method with one parameter replaced by a hostile value.
``blob.get`` and ``blob.fetch`` ask for a blob the node holds: one it lacks, they look for on
the network, which a lone node waits on (1 s a call, at most, here).
"""

from __future__ import annotations

import base64
import itertools
import json

import pytest
import trio

from icn_node.node import Node

MODULE = base64.b64encode(b"\0asm\1\0\0\0").decode()
BLOB = "ab" * 32
HELD = "the blob the test puts first"
ME = "the node's DID"

# What each method needs to get past its first check, so the hostile value is what it meets.
BASES: dict[str, dict[str, object]] = {
    "compute.submit": {"module": MODULE, "fuel": 1000},
    "compute.status": {"task": "ab"},
    "compute.result": {"task": "ab"},
    "compute.cancel": {"task": "ab"},
    "compute.watch": {"timeout_s": 0},
    "compute.verify": {"task": "ab"},
    "blob.put": {"data": "aGk="},
    "blob.get": {"blob": HELD},
    "blob.rm": {"blob": BLOB},
    "blob.fetch": {"blob": HELD},
    "netmap.estimate": {"a": ME, "b": ME},
    "mesh.publish": {"topic": "t"},
    "mesh.subscribe": {"topic": "t"},
    "mesh.received": {"topic": "t"},
}
NAMES = sorted(
    {name for base in BASES.values() for name in base}
    | {"exec", "args", "inputs", "profile", "hints", "max_cost", "module_blob", "limit"}
    | {"state", "after", "fd", "progress", "text", "count", "interval_s", "payload"}
    | {"all", "replicas", "dids"}
)
HOSTILE: list[object] = [
    None,
    True,
    -1,
    0,
    2**53,
    -(2**53),
    10**39,
    1.5,
    -1e308,
    1e308,
    "",
    "x",
    BLOB,
    [],
    [1],
    [{}],
    {},
    {"cpu_cores": "x"},
]


@pytest.fixture
def node(lone_node):
    return lone_node


async def call(node: Node, method: str, params: object) -> dict:
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    out = await node.rpc.handle_line(line.encode())
    assert out is not None and out.endswith(b"\n") and out.count(b"\n") == 1
    return json.loads(out)


async def test_no_parameter_of_any_method_reaches_a_handler_unchecked(node):
    bugs = []
    held = (await call(node, "blob.put", {"data": "aGk="}))["result"]["blob"]
    given = {HELD: held, ME: node.did}
    for method in node.rpc.names:
        base = {k: given.get(v, v) for k, v in BASES.get(method, {}).items()}
        for name, value in itertools.product(NAMES, HOSTILE):
            # compute.watch may legitimately wait its timeout: that is not what is tested here
            with trio.move_on_after(1.0):
                out = await call(node, method, {**base, name: value})
                error = out.get("error")
                if error is not None and error["code"] == -32603:
                    bugs.append((method, name, value, error["message"]))
    assert not bugs, "\n".join(map(repr, bugs))
    assert (await call(node, "node.status", {}))["result"]["did"] == node.did


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("node.status", [], "params: expected an object (by-name), got an array"),
        ("mesh.publish", {"topic": 7}, "topic: expected a string, got int"),
        ("mesh.publish", {}, "topic: missing"),
        ("mesh.publish", {"topic": "", "text": "x"}, "topic: a topic is 1-128 printable"),
        ("mesh.publish", {"topic": "t", "text": 5}, "text: expected a string, got int"),
        ("mesh.publish", {"topic": "t", "count": "many"}, "count: expected an integer, got str"),
        ("mesh.publish", {"topic": "t", "count": 10**39}, "count: expected a number from 1 to"),
        ("mesh.publish", {"topic": "t", "interval_s": 1e308}, "interval_s: expected a number"),
        ("mesh.received", {"topic": "t", "limit": -1}, "limit: expected a number from 0 to"),
        ("mesh.received", {"topic": "t", "payload": "no"}, "payload: expected a bool, got str"),
        ("mesh.subscribe", {"topic": ["t"]}, "topic: expected a string, got list"),
    ],
)
async def test_mesh_and_node_methods_name_the_parameter(node, method, params, message):
    error = (await call(node, method, params))["error"]
    assert error["code"] == -32602
    assert error["message"].startswith(message), error["message"]
