"""A small blocking JSON-RPC client for icnctl and tests (no event loop needed).

:meth:`RpcClient.call` can send open file descriptors with a request (SCM_RIGHTS, in the same
``sendmsg`` as the start of the request line, as the server expects) and hands notifications
that arrive before the response to ``on_notify``. The socket timeout applies to each wait, so a
long call stays alive as long as the daemon keeps sending progress notifications.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import IcnError, RpcError

RECEIVE_BYTES = 1 << 20


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

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
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
        sock = self._connect()
        req = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or {}}
        data = json.dumps(req).encode() + b"\n"
        try:
            if fds:
                sent = socket.send_fds(sock, [data], list(fds))
                sock.sendall(data[sent:])
            else:
                sock.sendall(data)
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
