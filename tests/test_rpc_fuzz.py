"""Fuzzing the JSON-RPC server (hypothesis): arbitrary bytes, token soup and JSON-ish requests,
through the registry and through the real connection handler on a socket pair.

Whatever comes in, out comes exactly one well-formed response line (none for a notification),
with the request's id when it had a usable one; nothing raises and nothing hangs.

``ICN_FUZZ_SCALE=N`` runs N times the examples (500 in all by default), for a long pass.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icn_node.rpc import RpcRegistry
from icn_node.rpc.protocol import Call, InvalidParams
from icn_node.rpc.request import MAX_SAFE_INTEGER, RequestRefused, read_request
from icn_node.rpc.server import RpcServer

HANG_S = 10.0  # far beyond any answer; only a hang reaches it
SCALE = int(os.environ.get("ICN_FUZZ_SCALE", "1"))


@dataclass(frozen=True, slots=True)
class SumParams:
    a: int
    b: float = 0.0
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.tags) > 3:
            raise InvalidParams("tags: at most 3")


def registry() -> RpcRegistry:
    reg = RpcRegistry()

    @reg.method("echo")
    async def echo(params):
        return params

    @reg.method("sum", SumParams)
    async def sum_(p: SumParams):
        return p.a + p.b

    @reg.method("bug")
    async def bug(params):
        return params["missing"]  # KeyError: an internal error, never a crash

    async def stream(params, call: Call):
        await call.notify("progress", {"done": 0})
        return {"fd": call.fd(params.get("fd"))}

    reg.register_streaming("stream", stream)
    return reg


METHODS = ["echo", "sum", "bug", "stream", "unknown.method", ""]
REGISTRY = registry()

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: ids and numbers far past any limit
    | st.floats()  # NaN and infinities: json.dumps writes them, the server must refuse them
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=25,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | json_values,
        "id": st.integers(-(2**60), 2**60) | st.text(max_size=300) | json_values,
        "method": st.sampled_from(METHODS) | json_values,
        "params": st.dictionaries(st.sampled_from(["a", "b", "tags", "fd"]), json_values)
        | json_values,
    },
)
request_lines = requests.map(lambda r: json.dumps(r).encode())
TOKENS = [b"[", b"]", b"{", b"}", b'"', b"\\", b":", b",", b"1", b"9" * 45, b"-", b"e"]
TOKENS += [b"null", b" ", b"\\ud800", b'"jsonrpc"', b'"2.0"', b'"id"', b'"method"', b'"echo"']
soup = st.lists(st.sampled_from(TOKENS), max_size=2000).map(b"".join)
deep = st.integers(0, 3000).map(
    lambda d: b'{"jsonrpc":"2.0","id":1,"method":"echo","params":' + b"[" * d
)
lines = st.binary(max_size=300) | soup | request_lines | deep


def strict_json(raw: bytes) -> object:
    def no_constants(name: str) -> object:
        raise AssertionError(f"{name} in a response")

    return json.loads(raw, parse_constant=no_constants)


def check_response(line: bytes, out: bytes | None) -> None:
    """``out`` is what the server answered ``line`` with."""
    try:
        req = read_request(line)
    except RequestRefused:
        req = None
    if req is not None and req.notification:
        assert out is None
        return
    assert out is not None and out.endswith(b"\n") and out.count(b"\n") == 1, out
    resp = strict_json(out)
    assert isinstance(resp, dict) and resp["jsonrpc"] == "2.0"
    assert set(resp) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), resp
    id_ = resp["id"]
    assert id_ is None or isinstance(id_, str) or abs(id_) <= MAX_SAFE_INTEGER
    if req is not None:
        assert id_ == req.id
    if "error" in resp:
        err = resp["error"]
        assert isinstance(err["code"], int) and isinstance(err["message"], str)
        assert err["message"]


fuzz = settings(
    max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@fuzz
@given(lines)
def test_any_line_through_the_registry(line):
    async def go():
        with trio.fail_after(HANG_S):
            return await REGISTRY.handle_line(line.replace(b"\n", b" "))

    check_response(line.replace(b"\n", b" "), trio.run(go))


@fuzz
@given(requests)
def test_json_ish_requests_through_the_registry(request):
    line = json.dumps(request).encode()

    async def go():
        with trio.fail_after(HANG_S):
            return await REGISTRY.handle_line(line)

    check_response(line, trio.run(go))


async def over_a_socket(payload: bytes, cut: int) -> bytes:
    """``payload`` sent in two pieces to the real connection handler on a Unix socket pair,
    then the client's side shut for writing; everything that came back."""
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server = RpcServer(REGISTRY)
    out = bytearray()
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_stream, trio.SocketStream(b))
            async with trio.SocketStream(a) as client:
                await client.send_all(payload[:cut])
                await trio.lowlevel.checkpoint()
                await client.send_all(payload[cut:])
                await client.send_eof()
                while chunk := await client.receive_some():
                    out += chunk
    assert len(server.table) == 0
    return bytes(out)


@settings(max_examples=100 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, min_size=1, max_size=4), st.integers(0, 10_000))
def test_pipelined_lines_over_a_real_socket(batch, cut):
    batch = [line.replace(b"\n", b" ") for line in batch]
    payload = b"\n".join(batch) + b"\n"
    got = trio.run(over_a_socket, payload, cut % (len(payload) + 1))
    replies = got.splitlines(keepends=True)
    # Notifications from the streaming method come first; then one reply per answered line.
    replies = [r for r in replies if b'"method":"progress"' not in r or b'"id"' in r]
    expected = [line for line in batch if line.strip()]
    answered = iter(replies)
    for line in expected:
        try:
            req = read_request(line)
        except RequestRefused:
            req = None
        if req is not None and req.notification:
            continue
        check_response(line, next(answered, None))
    assert next(answered, None) is None  # nothing more than one line per request


@pytest.mark.parametrize(
    "depth, message",
    [
        (40, "parse error: nested deeper than 32 levels"),
        (1500, "parse error: nested deeper than 32 levels"),
        (100_000, "parse error: more than 10000 values in one request"),
    ],
)
async def test_deep_lines_over_a_real_socket(depth, message):
    got = await over_a_socket(b"[" * depth + b"\n", 0)
    assert json.loads(got)["error"] == {"code": -32700, "message": message}
