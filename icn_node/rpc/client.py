"""A small blocking JSON-RPC client for icnctl and tests (no event loop needed)."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

from ..errors import IcnError, RpcError


class DaemonUnavailable(IcnError):
    """No daemon answers on the socket."""


class RpcClient:
    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buf = b""

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

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        sock = self._connect()
        req = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or {}}
        try:
            sock.sendall(json.dumps(req).encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise DaemonUnavailable(f"icnd closed the connection on {self.path}")
                self._buf += chunk
        except TimeoutError:
            self.close()
            raise DaemonUnavailable(
                f"icnd on {self.path} did not answer {method} within {self.timeout:g} s"
            ) from None
        except OSError as e:
            self.close()
            raise DaemonUnavailable(f"connection to icnd on {self.path} failed: {e}") from None
        line, _, self._buf = self._buf.partition(b"\n")
        resp = json.loads(line)
        if "error" in resp:
            err = resp["error"]
            raise RpcError(err.get("code", -32603), err.get("message", "error"), err.get("data"))
        return resp.get("result")
