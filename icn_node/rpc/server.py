"""The Unix-socket transport for the local JSON-RPC control plane.

Each connection gets its own task, reads newline-terminated requests, and answers them in
order. A request line longer than ``max_request_bytes`` gets an error and the connection is
closed; a client that takes longer than ``idle_timeout_s`` to complete a request, or that does
not read its responses, is disconnected. None of this affects other clients.
"""

from __future__ import annotations

import errno
import os
import socket as stdlib_socket
import stat
from pathlib import Path

import trio

from ..errors import IcnError
from ..logs import get_logger
from .protocol import INVALID_REQUEST, RpcRegistry, _error, encode

log = get_logger("icn.rpc")

MAX_CONNECTIONS = 128
SEND_TIMEOUT_S = 10.0


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead daemon; refuse if a live daemon answers on it."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise IcnError(f"{path} exists and is not a socket; refusing to replace it")
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            path.unlink(missing_ok=True)
            return
        raise
    else:
        raise IcnError(f"another daemon is already listening on {path}")
    finally:
        probe.close()


async def _serve_connection(
    stream: trio.SocketStream,
    registry: RpcRegistry,
    max_request_bytes: int,
    idle_timeout_s: float,
) -> None:
    buf = bytearray()
    try:
        while True:
            # A whole request must arrive within idle_timeout_s.
            with trio.move_on_after(idle_timeout_s) as scope:
                while b"\n" not in buf:
                    if len(buf) > max_request_bytes:
                        break
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buf += chunk
            if scope.cancelled_caught:
                return
            nl = buf.find(b"\n")
            if nl < 0 or nl > max_request_bytes:
                with trio.move_on_after(SEND_TIMEOUT_S):
                    await stream.send_all(
                        encode(
                            _error(
                                None,
                                INVALID_REQUEST,
                                f"request larger than {max_request_bytes} bytes",
                            )
                        )
                    )
                log.warning("rpc_request_too_large", limit=max_request_bytes)
                return
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if not line.strip():
                continue
            response = await registry.handle_line(line)
            if response is not None:
                with trio.move_on_after(SEND_TIMEOUT_S) as send_scope:
                    await stream.send_all(response)
                if send_scope.cancelled_caught:
                    log.warning("rpc_client_not_reading")
                    return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_rpc(
    registry: RpcRegistry,
    path: Path,
    *,
    max_request_bytes: int = 1 << 20,
    idle_timeout_s: float = 30.0,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the Unix socket ``path`` (mode 0660) until cancelled; unlink it on exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
    try:
        old_umask = os.umask(0o117)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        sock.listen(64)
        listener = trio.SocketListener(sock)
        log.info("rpc_listening", socket=str(path))

        async def handler(stream: trio.SocketStream) -> None:
            async with limiter:
                await _serve_connection(stream, registry, max_request_bytes, idle_timeout_s)

        async with trio.open_nursery() as nursery:
            task_status.started(path)
            await trio.serve_listeners(handler, [listener], handler_nursery=nursery)
    finally:
        sock.close()
        try:
            path.unlink()
        except FileNotFoundError:
            pass
