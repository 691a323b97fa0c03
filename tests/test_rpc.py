import json
import os
import socket
import stat
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from icn_node.errors import IcnError, RpcError
from icn_node.rpc import RpcRegistry
from icn_node.rpc.client import DaemonUnavailable, RpcClient
from icn_node.rpc.protocol import InvalidParams
from icn_node.rpc.server import RpcServer, ServerLimits, serve_rpc


def make_registry():
    reg = RpcRegistry()

    @reg.method("echo")
    async def echo(params):
        return params

    @reg.method("boom")
    async def boom(params):
        raise ZeroDivisionError("bug")

    @reg.method("refuse")
    async def refuse(params):
        raise InvalidParams("n must be positive")

    @reg.method("domain")
    async def domain(params):
        raise IcnError("task not found")

    return reg


async def handle(reg, obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    out = await reg.handle_line(raw)
    return None if out is None else json.loads(out)


async def test_success_and_errors():
    reg = make_registry()
    ok = await handle(reg, {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"a": 1}})
    assert ok == {"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}
    assert (await handle(reg, b"{not json"))["error"]["code"] == -32700
    assert (await handle(reg, [1, 2]))["error"]["code"] == -32600
    assert (await handle(reg, "str"))["error"]["code"] == -32600
    assert (await handle(reg, {"id": 2, "method": "echo"}))["error"]["code"] == -32600
    unknown = await handle(reg, {"jsonrpc": "2.0", "id": 3, "method": "nope"})
    assert unknown["error"]["code"] == -32601 and "nope" in unknown["error"]["message"]
    bad = await handle(reg, {"jsonrpc": "2.0", "id": 4, "method": "echo", "params": [1]})
    assert bad["error"]["code"] == -32602
    refused = await handle(reg, {"jsonrpc": "2.0", "id": 5, "method": "refuse"})
    assert refused["error"] == {"code": -32602, "message": "n must be positive"}
    domain = await handle(reg, {"jsonrpc": "2.0", "id": 6, "method": "domain"})
    assert domain["error"]["code"] == -32000 and "task not found" in domain["error"]["message"]


async def test_handler_bug_is_an_internal_error_not_a_crash():
    reg = make_registry()
    out = await handle(reg, {"jsonrpc": "2.0", "id": 7, "method": "boom"})
    assert out["error"]["code"] == -32603 and "ZeroDivisionError" in out["error"]["message"]
    again = await handle(reg, {"jsonrpc": "2.0", "id": 8, "method": "echo", "params": {}})
    assert again["result"] == {}


async def test_notification_gets_no_response():
    reg = make_registry()
    assert await handle(reg, {"jsonrpc": "2.0", "method": "echo", "params": {}}) is None


def test_duplicate_method_is_refused():
    reg = make_registry()
    with pytest.raises(ValueError):
        reg.register("echo", lambda p: None)


# --- one connection, on memory streams with a mock clock -------------------------------------


async def read_lines(stream, n):
    buf = b""
    while buf.count(b"\n") < n:
        chunk = await stream.receive_some()
        if not chunk:
            break
        buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


async def test_pipelined_requests_answered_in_order(autojump_clock):
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(RpcServer(make_registry(), ServerLimits(1024, 30.0)).handle_stream, server)
        reqs = b"".join(
            json.dumps({"jsonrpc": "2.0", "id": i, "method": "echo", "params": {"i": i}}).encode()
            + b"\n"
            for i in range(3)
        )
        await client.send_all(reqs)
        out = await read_lines(client, 3)
        assert [r["result"]["i"] for r in out] == [0, 1, 2]
        await client.aclose()


async def test_oversized_request_gets_error_then_close(autojump_clock):
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(RpcServer(make_registry(), ServerLimits(1024, 30.0)).handle_stream, server)
        await client.send_all(b"x" * 5000)
        out = await read_lines(client, 1)
        assert out[0]["error"]["code"] == -32600 and "1024" in out[0]["error"]["message"]
        assert await client.receive_some() == b""  # closed


async def test_slow_client_is_disconnected_after_idle_timeout(autojump_clock):
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(RpcServer(make_registry(), ServerLimits(1024, 30.0)).handle_stream, server)
        start = trio.current_time()
        await client.send_all(b'{"jsonrpc": "2.0", ')
        assert await client.receive_some() == b""
        assert trio.current_time() - start == pytest.approx(30.0)


# --- the real Unix socket ---------------------------------------------------------------------


async def test_socket_mode_answers_and_unlinks_on_exit(short_tmp):
    path = short_tmp / "s.sock"
    async with trio.open_nursery() as n:
        await n.start(serve_rpc, make_registry(), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        result = await trio.to_thread.run_sync(lambda: RpcClient(path).call("echo", {"x": "y"}))
        assert result == {"x": "y"}
        with pytest.raises(RpcError) as err:
            await trio.to_thread.run_sync(lambda: RpcClient(path).call("nope"))
        assert err.value.code == -32601
        n.cancel_scope.cancel()
    assert not path.exists()


async def test_stale_socket_is_replaced_live_one_is_not(short_tmp):
    path = short_tmp / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a killed daemon leaves
    async with trio.open_nursery() as n:
        await n.start(serve_rpc, make_registry(), path)
        with pytest.raises(IcnError, match="already listening"):
            await serve_rpc(make_registry(), path)
        n.cancel_scope.cancel()


async def test_refuses_to_replace_a_regular_file(short_tmp):
    path = short_tmp / "s.sock"
    path.write_text("precious")
    with pytest.raises(IcnError, match="not a socket"):
        await serve_rpc(make_registry(), path)
    assert path.read_text() == "precious"


def test_client_without_daemon_says_so(short_tmp):
    with pytest.raises(DaemonUnavailable, match="no icnd is listening"):
        RpcClient(short_tmp / "absent.sock").call("node.status")


# --- file descriptors sent with a request (SCM_RIGHTS) ------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_registry(seen: list[bytes]) -> RpcRegistry:
    reg = make_registry()

    async def read(params, call):
        # The handler gets a readable descriptor: read it as a file object, through a dup
        # (the server owns the descriptor it received and closes it after the reply).
        fd = call.fd(params.get("fd"))
        assert not os.get_inheritable(fd)  # received close-on-exec: task processes never get it
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
        seen.append(data)
        await call.notify("progress", {"done": len(data)})
        return {"data": data.decode()}

    reg.register_streaming("read", read)
    return reg


def source(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return open(path, "rb")


@asynccontextmanager
async def fd_server(tmp):
    """A server on a real Unix socket with the ``read`` method; yields (socket path, what the
    handler read)."""
    path = tmp / "s.sock"
    seen: list[bytes] = []
    async with trio.open_nursery() as n:
        await n.start(serve_rpc, fd_registry(seen), path)
        yield path, seen
        n.cancel_scope.cancel()


async def test_a_client_passes_an_open_file_and_the_handler_reads_it(short_tmp):
    notes: list[tuple[str, dict]] = []
    async with fd_server(short_tmp) as (path, seen):
        with source(short_tmp, "in.txt", "hello through SCM_RIGHTS") as f:

            def go():
                with RpcClient(path) as c:
                    return c.call(
                        "read",
                        {"fd": 0},
                        fds=[f.fileno()],
                        on_notify=lambda m, p: notes.append((m, p)),
                    )

            out = await trio.to_thread.run_sync(go)
        assert out == {"data": "hello through SCM_RIGHTS"}
        assert seen == [b"hello through SCM_RIGHTS"]
        # The notification came before the reply and names the request it is about.
        assert notes == [("progress", {"request": 1, "done": 24})]


async def test_malformed_fd_requests_get_clear_errors_and_leak_nothing(short_tmp):
    async with fd_server(short_tmp) as (path, seen):
        files = [source(short_tmp, f"f{i}", str(i)) for i in range(6)]
        fds = [f.fileno() for f in files]

        def call(method, params, sent):
            # One request, then half-close and read to the end: when the server's side closes,
            # it has closed its connection and every descriptor it received.
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
                socket.send_fds(s, [json.dumps(req).encode() + b"\n"], sent)
                s.shutdown(socket.SHUT_WR)
                buf = b""
                while chunk := s.recv(65536):
                    buf += chunk
            out = json.loads(buf.splitlines()[-1])
            return (
                (out["error"]["code"], out["error"]["message"]) if "error" in out else out["result"]
            )

        async def run(method, params, sent):
            return await trio.to_thread.run_sync(call, method, params, sent)

        await run("read", {"fd": 0}, fds[:1])  # warm up: worker threads, lazy imports
        before = open_fds()
        assert await run("read", {"fd": 0}, []) == (
            -32602,
            "fd: no file descriptor came with this request (send it with SCM_RIGHTS in the "
            "same message as the request line)",
        )
        assert await run("read", {"fd": 1}, fds[:1]) == (
            -32602,
            "fd: index 1 out of range (1 file descriptor came with the request)",
        )
        assert await run("read", {"fd": "0"}, fds[:1]) == (
            -32602,
            "fd: expected the index of a file descriptor sent with the request, got '0'",
        )
        assert await run("read", {"fd": 0}, fds[:2]) == (
            -32600,
            "read takes at most 1 file descriptor (2 came with the request)",
        )
        assert await run("echo", {}, fds[:1]) == (
            -32600,
            "echo takes no file descriptors (1 came with the request)",
        )
        code, message = await run("read", {"fd": 0}, fds)  # 6: more than the server takes
        assert code == -32600
        assert message.startswith("too many file descriptors came with the request")
        # Every descriptor the server received was closed after its reply.
        assert open_fds() == before
        assert seen == [b"0"]  # only the warm-up reached the handler
        # The node keeps serving.
        assert await run("read", {"fd": 0}, fds[3:4]) == {"data": "3"}
        for f in files:
            f.close()


async def test_pipelined_requests_each_get_their_own_descriptor(short_tmp):
    async with fd_server(short_tmp) as (path, seen):
        a, b = source(short_tmp, "a", "first"), source(short_tmp, "b", "second")

        def raw():
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                for i, f in enumerate((a, b)):
                    req = {"jsonrpc": "2.0", "id": i, "method": "read", "params": {"fd": 0}}
                    socket.send_fds(s, [json.dumps(req).encode() + b"\n"], [f.fileno()])
                # A blank line with a descriptor, then a request cut off by the close: both
                # descriptors must be closed by the server, not leaked.
                socket.send_fds(s, [b"\n"], [a.fileno()])
                socket.send_fds(s, [b'{"jsonrpc": "2.0", "id": 9, '], [b.fileno()])
                s.shutdown(socket.SHUT_WR)
                buf = b""
                while chunk := s.recv(65536):  # until the server has closed its side
                    buf += chunk
                return [json.loads(line) for line in buf.splitlines()]

        before = open_fds()
        lines = await trio.to_thread.run_sync(raw)
        replies = {m["id"]: m["result"]["data"] for m in lines if "id" in m}
        assert replies == {0: "first", 1: "second"}
        assert len(lines) == 4  # and a notification before each reply
        # The server closed with one descriptor pending on an unfinished line: closed too.
        assert open_fds() == before
        a.close()
        b.close()


# --- declared parameters, and bugs -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountParams:
    n: int
    label: str = ""

    def __post_init__(self) -> None:
        if self.n < 0:
            raise InvalidParams("n: expected a count (integer >= 0)")


async def test_a_handler_with_declared_params_never_sees_bad_ones():
    reg = RpcRegistry()
    seen: list[CountParams] = []

    @reg.method("count", CountParams)
    async def count(p: CountParams):
        seen.append(p)
        return p.n + 1

    ok = await handle(reg, {"jsonrpc": "2.0", "id": 1, "method": "count", "params": {"n": 2}})
    assert ok["result"] == 3 and seen == [CountParams(2)]
    for params, message in [
        ({}, "n: missing"),
        ({"n": "2"}, "n: expected an integer, got str"),
        ({"n": 2.5}, "n: expected an integer, got 2.5"),
        ({"n": -1}, "n: expected a count (integer >= 0)"),
        ({"n": 1, "label": 5}, "label: expected a string, got int"),
    ]:
        out = await handle(reg, {"jsonrpc": "2.0", "id": 2, "method": "count", "params": params})
        assert out["error"] == {"code": -32602, "message": message}, params
    assert seen == [CountParams(2)]


async def test_a_bug_is_an_internal_error_logged_in_full_once_then_counted():
    reg = make_registry()
    with capture_logs() as logs:
        for i in range(9):
            out = await handle(reg, {"jsonrpc": "2.0", "id": i, "method": "boom"})
            assert out["error"]["code"] == -32603
            assert out["error"]["message"] == "internal error in boom: ZeroDivisionError('bug')"
    failures = [e for e in logs if e["event"] == "rpc_handler_failed"]
    assert [e.get("times") for e in failures] == [None, 2, 4, 8]
    assert failures[0]["method"] == "boom" and "exc_info" in failures[0]
    assert all("exc_info" not in e for e in failures[1:])


async def test_a_result_without_a_json_form_is_an_internal_error():
    reg = RpcRegistry()

    @reg.method("bad")
    async def bad(params):
        return {"x": float("nan"), "y": object()}

    out = await handle(reg, {"jsonrpc": "2.0", "id": 1, "method": "bad"})
    assert out == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32603, "message": "internal error in bad"},
    }


async def test_hostile_lines_get_one_error_line_each():
    reg = make_registry()
    for line, code in [
        (b"[" * 1500, -32700),
        (b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"echo"}', -32700),
        (b'{"jsonrpc":"2.0","id":{},"method":"echo"}', -32600),
    ]:
        out = await reg.handle_line(line)
        assert out is not None and out.endswith(b"\n") and out.count(b"\n") == 1
        assert json.loads(out)["error"]["code"] == code


# --- per-client limits, on memory streams with a mock clock ----------------------------------


REQUEST = b'{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"ok": true}}\n'


def connect(nursery, server: RpcServer):
    client, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(server.handle_stream, server_side)
    return client


async def closed(stream) -> bool:
    """Whether the server closed the connection (nothing more comes)."""
    return await stream.receive_some() == b""


async def test_an_idle_connection_is_closed_after_the_idle_timeout(autojump_clock):
    server = RpcServer(make_registry(), ServerLimits(idle_timeout_s=5.0))
    async with trio.open_nursery() as n:
        start = trio.current_time()
        silent = connect(n, server)
        assert await closed(silent)
        assert trio.current_time() - start == pytest.approx(5.0)
        # Between requests too: idle for 5 s after its last reply.
        regular = connect(n, server)
        await regular.send_all(REQUEST)
        assert (await read_lines(regular, 1))[0]["result"] == {"ok": True}
        answered = trio.current_time()
        assert await closed(regular)
        assert trio.current_time() - answered == pytest.approx(5.0)
    assert len(server.table) == 0


async def test_a_client_that_does_not_read_its_reply_is_closed(autojump_clock):
    server = RpcServer(make_registry(), ServerLimits(idle_timeout_s=60.0, send_timeout_s=10.0))
    client, server_side = trio.testing.lockstep_stream_pair()  # a send waits for a receive
    done = []

    async def serve():
        await server.handle_stream(server_side)
        done.append(trio.current_time())

    async with trio.open_nursery() as n:
        n.start_soon(serve)
        start = trio.current_time()
        await client.send_all(REQUEST)  # ...and never reads the reply
    assert done == [pytest.approx(start + 10.0)]


async def test_idle_and_trickling_clients_do_not_delay_a_new_one(autojump_clock):
    server = RpcServer(make_registry(), ServerLimits(idle_timeout_s=30.0, max_connections=8))

    async def trickle(stream):
        try:
            for byte in b'{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"x": "':
                await stream.send_all(bytes([byte]))
                await trio.sleep(1.0)
        except trio.BrokenResourceError:  # closed for a newcomer
            pass

    async with trio.open_nursery() as n:
        idle = [connect(n, server) for _ in range(50)]
        await trio.sleep(1.0)
        for _ in range(50):
            n.start_soon(trickle, connect(n, server))
        await trio.sleep(3.0)
        assert len(server.table) == 8  # the slots are full of clients that send no request
        start = trio.current_time()
        fresh = connect(n, server)
        await fresh.send_all(REQUEST)
        assert (await read_lines(fresh, 1))[0]["result"] == {"ok": True}
        assert trio.current_time() == start  # answered without waiting for anyone
        # Each idle one was closed for a newer connection, told so, in case it was about to
        # send a request (its client then tries again).
        assert all([await read_to_end(c) == [EVICTED_LINE] for c in idle])
        assert trio.current_time() == start  # none of them was left to time out
        n.cancel_scope.cancel()


EVICTED_LINE = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {
        "code": -32002,
        "message": "icnd closed this connection for a newer one (all connections were taken "
        "and this one had waited longest for a request); try again",
    },
}


async def read_to_end(stream) -> list[dict]:
    buf = b""
    while chunk := await stream.receive_some():
        buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


async def test_running_handlers_keep_their_connections_and_a_newcomer_hears_busy(autojump_clock):
    reg = make_registry()
    release = trio.Event()

    @reg.method("wait")
    async def wait(params):
        await release.wait()
        return "done"

    server = RpcServer(reg, ServerLimits(max_connections=2))
    async with trio.open_nursery() as n:
        waiting = [connect(n, server) for _ in range(2)]
        for i, c in enumerate(waiting):
            await c.send_all(b'{"jsonrpc": "2.0", "id": %d, "method": "wait"}\n' % i)
        await trio.sleep(1.0)
        late = connect(n, server)
        (busy,) = await read_lines(late, 1)
        assert busy["error"] == {
            "code": -32002,
            "message": "icnd is busy: all 2 RPC connections are running requests; try again",
        }
        assert await closed(late)
        release.set()
        assert [(await read_lines(c, 1))[0]["result"] for c in waiting] == ["done", "done"]
        n.cancel_scope.cancel()


# --- who may connect: SO_PEERCRED on the real socket -----------------------------------------

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="runs a client as another user (setuid), which needs root"
)


def as_user(uid: int, gid: int, groups: list[int], fn) -> tuple[int, bytes]:
    """Run ``fn() -> bytes`` in a forked child that became ``uid``/``gid`` first; its exit
    code and what it returned."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here
        code = 0
        try:
            os.close(r)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            out = fn()
        except BaseException as e:  # reported to the parent, whatever it is
            out, code = repr(e).encode(), 1
        os.write(w, out)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def status_request(path) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        try:
            s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"me": 1}}\n')
        except BrokenPipeError:  # refused and closed: the error line is still there to read
            pass
        return s.recv(65536)


@needs_root
async def test_another_user_is_refused_with_a_reason(short_tmp):
    os.chmod(short_tmp, 0o755)  # let the other user reach the socket; its own mode is 0660
    path = short_tmp / "s.sock"
    async with trio.open_nursery() as n:
        await n.start(serve_rpc, make_registry(), path)
        # In root's group, so the file mode lets it connect: only the credential check stops it.
        code, out = await trio.to_thread.run_sync(
            as_user, NOBODY, 0, [], lambda: status_request(path)
        )
        assert code == 0, out
        reply = json.loads(out)
        assert reply["error"] == {
            "code": -32001,
            "message": "permission denied: uid 65534 (nobody) is not icnd's user (uid 0), and "
            "rpc.allowed_group is not set",
        }
        # root itself (and icnd's user, the same here) is served
        ok = await trio.to_thread.run_sync(status_request, path)
        assert json.loads(ok)["result"] == {"me": 1}
        n.cancel_scope.cancel()


@needs_root
async def test_members_of_the_allowed_group_are_served(short_tmp):
    import grp

    os.chmod(short_tmp, 0o755)
    path = short_tmp / "s.sock"
    group = grp.getgrgid(NOBODY).gr_name  # "nogroup" on Debian, "nobody" elsewhere
    async with trio.open_nursery() as n:
        await n.start(partial(serve_rpc, make_registry(), path, allowed_group=group))
        assert path.stat().st_gid == NOBODY and stat.S_IMODE(path.stat().st_mode) == 0o660
        # By primary group, and by a supplementary group (SO_PEERGROUPS)
        for gid, groups in [(NOBODY, []), (0, [NOBODY])]:
            code, out = await trio.to_thread.run_sync(
                as_user, NOBODY, gid, groups, lambda: status_request(path)
            )
            assert code == 0 and json.loads(out)["result"] == {"me": 1}, (gid, groups, out)
        # Not in it (and let in by the file mode only through root's group): refused.
        os.chown(path, -1, 0)
        code, out = await trio.to_thread.run_sync(
            as_user, NOBODY, 0, [], lambda: status_request(path)
        )
        assert json.loads(out)["error"]["message"] == (
            f"permission denied: uid 65534 (nobody) is not icnd's user (uid 0) nor in group "
            f"{group} (rpc.allowed_group)"
        )
        n.cancel_scope.cancel()


async def test_an_unknown_allowed_group_is_a_clear_error(short_tmp):
    with pytest.raises(IcnError, match="rpc.allowed_group: no group 'no-such-group-here'"):
        await serve_rpc(make_registry(), short_tmp / "s.sock", allowed_group="no-such-group-here")


# --- the client against a scripted daemon ----------------------------------------------------


def scripted_daemon(path, replies: list[bytes | None]):
    """A Unix socket that answers each connection, in turn, with one scripted line: an error
    line written before reading anything (a refusal), or None: read the request, answer it."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)
    seen: list[bytes] = []

    def run():
        with listener:
            for reply in replies:
                conn, _ = listener.accept()
                with conn:
                    if reply is not None:
                        conn.sendall(reply)
                        continue
                    request = json.loads(conn.makefile("rb").readline())
                    seen.append(request["method"].encode())
                    answer = {"jsonrpc": "2.0", "id": request["id"], "result": "served"}
                    conn.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, seen


def refusal(code: int, message: str) -> bytes:
    line = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return json.dumps(line).encode() + b"\n"


def test_the_client_tries_again_while_icnd_is_busy(short_tmp):
    busy = refusal(-32002, "icnd is busy: all 128 RPC connections are running requests; try again")
    thread, seen = scripted_daemon(short_tmp / "s.sock", [busy, busy, None])
    assert RpcClient(short_tmp / "s.sock", timeout=5).call("node.status") == "served"
    thread.join(5)
    assert seen == [b"node.status"]  # the request reached the daemon once


def test_the_client_raises_a_refusal_it_cannot_cure(short_tmp):
    denied = refusal(-32001, "permission denied: uid 7 is not icnd's user (uid 0)")
    thread, seen = scripted_daemon(short_tmp / "s.sock", [denied])
    with pytest.raises(RpcError) as e:
        RpcClient(short_tmp / "s.sock", timeout=5).call("node.status")
    assert (e.value.code, str(e.value)) == (
        -32001,
        "permission denied: uid 7 is not icnd's user (uid 0)",
    )
    thread.join(5)
    assert seen == []
