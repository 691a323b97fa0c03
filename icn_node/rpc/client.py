"""A small blocking JSON-RPC client for icnctl and tests (no event loop needed).

:meth:`RpcClient.call` can send open file descriptors with a request (SCM_RIGHTS, in the same
``sendmsg`` as the start of the request line, as the server expects) and hands notifications
that arrive before the response to ``on_notify``. The socket timeout applies to each wait, so a
long call stays alive as long as the daemon keeps sending progress notifications.

A daemon that refuses a connection (permission denied, busy) writes one error line and closes:
the client reads that line even when the close broke its own send, and raises it as an
:class:`~icn_node.errors.RpcError`; "busy" it first retries, with a growing pause, until the
timeout (the request was never read, so trying again is safe). A connection kept open between
calls may have been closed by the daemon meanwhile (idle too long, or closed to make room for
a newer one); a call that finds it so, before any of its request was taken, reconnects once.
"""

from __future__ import annotations

import errno
import itertools
import json
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import IcnError, RpcError
from .codes import BUSY  # not .protocol: that is the server side, logging included

RECEIVE_BYTES = 1 << 20
_CLOSED_BY_PEER = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


class DaemonUnavailable(IcnError):
    """No daemon answers on the socket."""


class RpcClient:
    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buf = bytearray()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                self._connect_waiting(sock)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                raise DaemonUnavailable(
                    f"no icnd is listening on {self.path} (is it running? start it with "
                    "`icnd run --config FILE`, or point --socket / ICN_SOCKET at its socket)"
                ) from None
            except PermissionError:
                sock.close()
                raise DaemonUnavailable(
                    f"permission denied on {self.path} (join the daemon's group)"
                ) from None
            self._sock = sock
        return self._sock

    def _connect_waiting(self, sock: socket.socket) -> None:
        """Connect; while the daemon's listen queue is full (EAGAIN: a Unix socket with a
        timeout does not wait for room), try again until the timeout."""
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while True:
            try:
                sock.connect(self.path)
                return
            except BlockingIOError:
                if time.monotonic() + pause > deadline:
                    raise TimeoutError("icnd's listen queue stayed full") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        fds: Sequence[int] = (),
        on_notify: Callable[[str, Any], None] | None = None,
    ) -> Any:
        """Call ``method``; ``fds`` travel with the request (the request names them by index,
        ``{"fd": 0}``); notifications before the response go to ``on_notify(method, params)``."""
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            try:
                return self._call_once(method, params, fds, on_notify)
            except RpcError as e:
                if e.code != BUSY or time.monotonic() + pause > deadline:
                    raise
            self.close()
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _call_once(
        self,
        method: str,
        params: dict[str, Any] | None,
        fds: Sequence[int],
        on_notify: Callable[[str, Any], None] | None,
    ) -> Any:
        req = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or {}}
        data = json.dumps(req).encode() + b"\n"
        reused = self._sock is not None
        try:
            sock = self._connect()
            try:
                self._send(sock, data, fds)
            except OSError as e:
                if e.errno not in _CLOSED_BY_PEER:
                    raise
                self._raise_refusal(sock)  # a daemon that refused us said why first
                if not reused:
                    raise
                self.close()  # closed while idle between calls: the request never arrived
                sock = self._connect()
                self._send(sock, data, fds)
            while True:
                resp = json.loads(self._read_line(sock))
                if isinstance(resp, dict) and "id" not in resp and "method" in resp:
                    if on_notify is not None:
                        on_notify(resp["method"], resp.get("params"))
                    continue
                break
        except TimeoutError:
            self.close()
            raise DaemonUnavailable(
                f"icnd on {self.path} did not answer {method} within {self.timeout:g} s"
            ) from None
        except OSError as e:
            self.close()
            raise DaemonUnavailable(f"connection to icnd on {self.path} failed: {e}") from None
        if "error" in resp:
            err = resp["error"]
            raise RpcError(err.get("code", -32603), err.get("message", "error"), err.get("data"))
        return resp.get("result")

    @staticmethod
    def _send(sock: socket.socket, data: bytes, fds: Sequence[int]) -> None:
        if fds:
            sent = socket.send_fds(sock, [data], list(fds))
            sock.sendall(data[sent:])
        else:
            sock.sendall(data)

    def _raise_refusal(self, sock: socket.socket) -> None:
        """The error line a daemon wrote before closing on us, raised; nothing if none came."""
        try:
            sock.setblocking(False)
            line = self._read_line(sock)
            resp = json.loads(line)
            err = resp["error"]
            error = RpcError(err["code"], err["message"], err.get("data"))
        except (OSError, DaemonUnavailable, ValueError, TypeError, KeyError):
            return
        finally:
            sock.settimeout(self.timeout)
        self.close()
        raise error

    def _read_line(self, sock: socket.socket) -> bytes:
        scanned = 0
        while (nl := self._buf.find(b"\n", scanned)) < 0:
            scanned = len(self._buf)
            chunk = sock.recv(RECEIVE_BYTES)
            if not chunk:
                raise DaemonUnavailable(f"icnd closed the connection on {self.path}")
            self._buf += chunk
        line = bytes(self._buf[:nl])
        del self._buf[: nl + 1]
        return line
