"""The Unix-socket transport for the local JSON-RPC control plane.

Each connection gets its own task, reads newline-terminated requests, and answers them in
order. A request line longer than ``max_request_bytes`` gets an error and the connection is
closed; a client that takes longer than ``idle_timeout_s`` to complete a request (idle, or
trickling it), or that does not read its responses for :data:`SEND_TIMEOUT_S`, is
disconnected.

Per-client limits keep any number of such clients from delaying anyone else:

* who may connect is checked on accept with the peer's credentials (:mod:`.access`); a refused
  client gets one error line;
* at most ``max_connections`` are served at once (:mod:`.clients`): when all are taken, a new
  connection closes the one that has waited longest for its client (to send a request or read
  a reply), telling it "busy" first when it was waiting for a request (its client, if it was
  about to send one, tries again); a connection whose handler is running is never closed for
  another, and when all are running the newcomer gets the "busy" line;
* a handler is never interrupted by any of this: only a connection's waits are.

A request may carry open file descriptors (SCM_RIGHTS) in the same ``sendmsg`` as its line, so
that a streaming method reads or writes what the client itself could open. The kernel hands
them over with the bytes of the message they came with, and a receive returns at most one
message's descriptors, ending with that message's bytes: so the descriptors of a receive belong
to the request line holding the last byte received. They are taken close-on-exec (task
processes never inherit them), at most :data:`MAX_FDS` per receive (more: the kernel closes the
rest and the request is refused), and the server closes every one of them after its request was
answered, or when the connection ends.
"""

from __future__ import annotations

import array
import errno
import os
import socket as stdlib_socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ..errors import IcnError
from ..logs import get_logger
from .access import Access, peer_credentials
from .clients import ConnectionTable
from .protocol import (
    BUSY,
    INVALID_REQUEST,
    PERMISSION_DENIED,
    Call,
    RpcRegistry,
    _Repeats,
    encode,
    error_line,
)

log = get_logger("icn.rpc")

MAX_CONNECTIONS = 128
SEND_TIMEOUT_S = 10.0
REFUSAL_SEND_TIMEOUT_S = 1.0  # a refused client gets this long to take its error line
EVICTED = (
    "icnd closed this connection for a newer one (all connections were taken and this one "
    "had waited longest for a request); try again"
)
RECEIVE_BYTES = 65536
MAX_FDS = 4  # file descriptors one request may carry
_FD_BYTES = array.array("i").itemsize
_ANCILLARY_BYTES = stdlib_socket.CMSG_SPACE(MAX_FDS * _FD_BYTES)


class _TooLarge(Exception):
    pass


@dataclass
class _Line:
    """One request line and the file descriptors that came with it."""

    data: bytes
    fds: list[int] = field(default_factory=list)
    fds_dropped: bool = False


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _LineReader:
    """Request lines from a stream; on a Unix socket, with the file descriptors sent with them.

    ``_held`` keeps each receive's descriptors with the stream offset of the last byte that
    receive returned, until the line holding that byte is taken.
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        sock = getattr(stream, "socket", None)
        self._sock = sock if sock is not None and sock.family == stdlib_socket.AF_UNIX else None
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]
        self._held: list[tuple[int, list[int], bool]] = []

    async def _receive(self) -> bytes:
        if self._sock is None:
            return bytes(await self._stream.receive_some(RECEIVE_BYTES))
        data, ancillary, flags, _ = await self._sock.recvmsg(
            RECEIVE_BYTES, _ANCILLARY_BYTES, stdlib_socket.MSG_CMSG_CLOEXEC
        )
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == stdlib_socket.SOL_SOCKET and kind == stdlib_socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % _FD_BYTES])
                fds.extend(got)
        dropped = bool(flags & stdlib_socket.MSG_CTRUNC)
        if fds or dropped:
            if data:
                self._held.append((self._offset + len(self._buf) + len(data) - 1, fds, dropped))
            else:  # never on a stream socket (descriptors travel with at least one byte)
                close_fds(fds)
        return data

    async def next_line(self, limit: int) -> _Line | None:
        """The next line without its newline; None at the end of the stream; _TooLarge when
        more than ``limit`` bytes come without a newline."""
        scanned = 0
        while (nl := self._buf.find(b"\n", scanned)) < 0:
            if len(self._buf) > limit:
                raise _TooLarge
            scanned = len(self._buf)
            chunk = await self._receive()
            if not chunk:
                return None
            self._buf += chunk
        if nl > limit:
            raise _TooLarge
        line = _Line(bytes(self._buf[:nl]))
        end = self._offset + nl
        keep = []
        for last, fds, dropped in self._held:
            if last <= end:
                line.fds.extend(fds)
                line.fds_dropped |= dropped
            else:
                keep.append((last, fds, dropped))
        self._held = keep
        del self._buf[: nl + 1]
        self._offset = end + 1
        return line

    def close(self) -> None:
        """Close the descriptors of lines never taken."""
        for _, fds, _ in self._held:
            close_fds(fds)
        self._held = []


class _Sender:
    """Writes responses and notifications; a send cut short (a client that went away or does
    not read, or cancellation mid-line) marks the stream broken: nothing may follow on it, and
    :meth:`send`/:meth:`notify` return False."""

    def __init__(self, stream: trio.abc.SendStream, timeout_s: float = SEND_TIMEOUT_S) -> None:
        self._stream = stream
        self._timeout_s = timeout_s
        self.broken = False

    async def send(self, data: bytes) -> bool:
        if self.broken:
            return False
        sent = False
        try:
            with trio.move_on_after(self._timeout_s):
                await self._stream.send_all(data)
                sent = True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if not sent:
                self.broken = True
        return sent

    async def notify(self, method: str, params: dict[str, Any]) -> bool:
        return await self.send(encode({"jsonrpc": "2.0", "method": method, "params": params}))


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


@dataclass(frozen=True)
class ServerLimits:
    max_request_bytes: int = 1 << 20
    idle_timeout_s: float = 30.0
    max_connections: int = MAX_CONNECTIONS
    send_timeout_s: float = SEND_TIMEOUT_S


class _Connection:
    """One client's connection: the cancel scope of what it waits on now, if anything, so that
    it can be closed for a newcomer without interrupting a handler."""

    def __init__(self) -> None:
        self.wait: trio.CancelScope | None = None
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True
        if self.wait is not None:
            self.wait.cancel()


class RpcServer:
    """Serves a registry's methods on stream connections, within per-client limits."""

    def __init__(
        self,
        registry: RpcRegistry,
        limits: ServerLimits | None = None,
        access: Access | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits or ServerLimits()
        self.access = access
        self.table: ConnectionTable[_Connection] = ConnectionTable(self.limits.max_connections)
        self._refusals = _Repeats()

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """An accepted connection: check the peer (on a Unix socket), take a slot, serve it."""
        try:
            refusal = self._check_peer(stream)
            if refusal is not None:
                await self._refuse(stream, PERMISSION_DENIED, refusal)
                return
            conn = _Connection()
            admission = self.table.admit(conn, trio.current_time())
            if not admission.admitted:
                busy = (
                    f"icnd is busy: all {self.limits.max_connections} RPC connections are "
                    "running requests; try again"
                )
                await self._refuse(stream, BUSY, busy)
                return
            if admission.evict is not None:
                admission.evict.evict()
                log.debug("rpc_connection_evicted", open=len(self.table))
            try:
                await self._serve(stream, conn)
            finally:
                self.table.remove(conn)
        finally:
            await trio.aclose_forcefully(stream)

    def _check_peer(self, stream: trio.abc.Stream) -> str | None:
        sock = getattr(stream, "socket", None)
        if self.access is None or sock is None or sock.family != stdlib_socket.AF_UNIX:
            return None
        try:
            peer = peer_credentials(sock)
        except OSError as e:
            return f"permission denied: icnd could not read the client's credentials ({e})"
        refusal = self.access.refusal(peer)
        if refusal is not None:
            n, loud = self._refusals.count("uid", str(peer.uid))
            if loud:
                log.warning("rpc_client_refused", uid=peer.uid, pid=peer.pid, times=n)
        return refusal

    async def _refuse(self, stream: trio.abc.Stream, code: int, message: str) -> None:
        with trio.move_on_after(REFUSAL_SEND_TIMEOUT_S):
            try:
                await stream.send_all(error_line(None, code, message))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _serve(self, stream: trio.abc.Stream, conn: _Connection) -> None:
        limits = self.limits
        reader = _LineReader(stream)
        sender = _Sender(stream, limits.send_timeout_s)
        try:
            while True:
                line = None
                if conn.evicted:  # before its task first ran (no wait to cancel then)
                    await self._refuse(stream, BUSY, EVICTED)
                    return
                self.table.waiting(conn, trio.current_time())
                try:
                    # A whole request must arrive within idle_timeout_s.
                    with trio.move_on_after(limits.idle_timeout_s) as conn.wait:
                        line = await reader.next_line(limits.max_request_bytes)
                except _TooLarge:
                    too_large = f"request larger than {limits.max_request_bytes} bytes"
                    await sender.send(error_line(None, INVALID_REQUEST, too_large))
                    log.warning("rpc_request_too_large", limit=limits.max_request_bytes)
                    return
                finally:
                    conn.wait = None
                if conn.evicted:  # closed to make room; a line read meanwhile is not answered
                    if line is not None:
                        close_fds(line.fds)
                    await self._refuse(stream, BUSY, EVICTED)
                    return
                if line is None:  # idle too long, or the client closed
                    return
                self.table.busy(conn)
                try:
                    if not line.data.strip():
                        continue
                    call = Call(
                        fds=tuple(line.fds),
                        fds_dropped=line.fds_dropped,
                        send=sender.notify,
                        io_timeout_s=limits.idle_timeout_s,
                    )
                    response = await self.registry.handle_line(line.data, call)
                finally:
                    close_fds(line.fds)
                if sender.broken:
                    log.warning("rpc_client_not_reading")
                    return
                if response is None:
                    continue
                self.table.waiting(conn, trio.current_time())
                sent = False
                with trio.CancelScope() as conn.wait:
                    sent = await sender.send(response)
                conn.wait = None
                if not sent:
                    if not conn.evicted:
                        log.warning("rpc_client_not_reading")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            reader.close()

    async def serve(
        self,
        path: Path,
        *,
        allowed_gid: int | None = None,
        task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on the Unix socket ``path`` (mode 0660, given to group ``allowed_gid`` if
        set) until cancelled; unlink it on exit."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(path)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o117)
            try:
                await sock.bind(str(path))
            finally:
                os.umask(old_umask)
            if allowed_gid is not None:
                try:
                    os.chown(path, -1, allowed_gid)
                except OSError as e:
                    raise IcnError(
                        f"rpc.allowed_group: cannot give the socket {path} to group "
                        f"{allowed_gid}: {e.strerror} (icnd's user must be in that group)"
                    ) from None
            os.chmod(path, 0o660)
            # The kernel's most: connections beyond it are refused before icnd sees them.
            sock.listen(stdlib_socket.SOMAXCONN)
            listener = trio.SocketListener(sock)
            log.info("rpc_listening", socket=str(path))
            async with trio.open_nursery() as nursery:
                task_status.started(path)
                await trio.serve_listeners(self.handle_stream, [listener], handler_nursery=nursery)
        finally:
            sock.close()
            try:
                path.unlink()
            except FileNotFoundError:
                pass


async def serve_rpc(
    registry: RpcRegistry,
    path: Path,
    *,
    max_request_bytes: int = 1 << 20,
    idle_timeout_s: float = 30.0,
    max_connections: int = MAX_CONNECTIONS,
    allowed_group: str = "",
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``registry`` on the Unix socket ``path`` to icnd's user, root and members of
    ``allowed_group`` (the socket file is given to that group) until cancelled."""
    access = Access.for_daemon(allowed_group)
    limits = ServerLimits(max_request_bytes, idle_timeout_s, max_connections)
    server = RpcServer(registry, limits, access)
    gid = access.group.gid if access.group is not None else None
    await server.serve(path, allowed_gid=gid, task_status=task_status)
