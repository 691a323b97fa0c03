"""Clients that hold icnd's RPC socket without using it, for the abuse tests and the benchmark.

:class:`RpcLoad` opens, from one background thread:

* ``idle`` connections that never send a byte;
* ``trickle`` connections that send a request one byte every ``trickle_interval_s`` and never
  finish it (slow loris);
* ``unread`` connections that send ``unread_request`` (a line whose reply is larger than the
  socket's buffers, such as ``blob.get`` of a large blob) and never read the reply, so the
  daemon's send waits on them; without it, ``node.status`` requests as fast as the socket
  takes them, until the replies fill it (a request flood as well).

With ``refill_interval_s`` it reopens, that often, every connection the daemon closed, as a
client that comes back would, so the daemon's slots stay full of them. It counts what the
daemon closed. It only ever touches the sockets it opened.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

STATUS = b'{"jsonrpc": "2.0", "id": 1, "method": "node.status", "params": {}}\n'
PARTIAL = b'{"jsonrpc": "2.0", "id": 1, "method": "node.status", "params": {"padding": "'


@dataclass
class _Conn:
    kind: str
    sock: socket.socket | None = None
    sent: int = 0


@dataclass
class LoadStats:
    opened: int = 0
    closed_by_daemon: int = 0  # closed without a word (to make room, or timed out)
    told_busy: int = 0  # refused with a "busy" line when it connected
    refused: int = 0  # connect() failed (the listen backlog stayed full, or the file mode)
    open_now: dict[str, int] = field(default_factory=dict)


class RpcLoad:
    def __init__(
        self,
        path: str | Path,
        *,
        idle: int = 0,
        trickle: int = 0,
        unread: int = 0,
        unread_request: bytes | None = None,
        trickle_interval_s: float = 0.5,
        refill_interval_s: float | None = None,
    ) -> None:
        self.path = str(path)
        self.unread_request = unread_request
        self.trickle_interval_s = trickle_interval_s
        self.refill_interval_s = refill_interval_s
        # Opened interleaved in proportion, so that whichever connections icnd keeps (the
        # first to arrive hold its slots) are of every kind.
        kinds = {"idle": idle, "trickle": trickle, "unread": unread}
        order = sorted(((i + 0.5) / n, kind) for kind, n in kinds.items() for i in range(n))
        self._conns = [_Conn(kind) for _, kind in order]
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RpcLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for c in self._conns:
            self._open(c)
        self._thread = threading.Thread(target=self._run, name="rpc-load", daemon=True)
        self._thread.start()

    def stop(self) -> LoadStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            for c in self._conns:
                if c.sock is not None:
                    c.sock.close()
                    c.sock = None
            return self.snapshot()

    def snapshot(self) -> LoadStats:
        open_now: dict[str, int] = {}
        for c in self._conns:
            if c.sock is not None:
                open_now[c.kind] = open_now.get(c.kind, 0) + 1
        s = self.stats
        return LoadStats(s.opened, s.closed_by_daemon, s.told_busy, s.refused, open_now)

    # --- the thread ---------------------------------------------------------------------

    def _open(self, c: _Conn) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                sock.connect(self.path)
                break
            except BlockingIOError:  # the listen queue is full: wait for room, as a client would
                if time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
                sock.close()
                self.stats.refused += 1
                return
            except OSError:
                sock.close()
                self.stats.refused += 1
                return
        sock.setblocking(False)
        c.sock, c.sent = sock, 0
        self.stats.opened += 1
        if c.kind == "unread":
            self._flood(c)

    def _closed(self, c: _Conn, told: bytes = b"") -> None:
        if c.sock is not None:
            c.sock.close()
            c.sock = None
            if b'"code":-32002' in told:
                self.stats.told_busy += 1
            else:
                self.stats.closed_by_daemon += 1

    def _flood(self, c: _Conn) -> None:
        """The request whose reply will not fit, or requests until the socket takes no more:
        the daemon's replies then wait on us."""
        assert c.sock is not None
        if self.unread_request is not None:
            with contextlib.suppress(BlockingIOError):
                c.sock.send(self.unread_request)
            return
        with contextlib.suppress(BlockingIOError):
            for _ in range(10_000):
                c.sock.send(STATUS)

    def _run(self) -> None:
        next_trickle = time.monotonic() + self.trickle_interval_s
        next_refill = time.monotonic() + (self.refill_interval_s or 0.0)
        while not self._stop.is_set():
            with self._lock:
                self._watch_closes()
                now = time.monotonic()
                if now >= next_trickle:
                    next_trickle = now + self.trickle_interval_s
                    for c in self._conns:
                        if c.kind == "trickle" and c.sock is not None:
                            self._trickle(c)
                if self.refill_interval_s is not None and now >= next_refill:
                    next_refill = now + self.refill_interval_s
                    for c in self._conns:
                        if c.sock is None:
                            self._open(c)
            self._stop.wait(0.02)

    def _watch_closes(self) -> None:
        """Notice connections the daemon closed: an idle or trickling one reads the end, or
        the one line the daemon writes before closing; an unread one (its replies still
        unread) fails a one-space send."""
        for c in self._conns:
            if c.sock is None or c.kind == "unread":
                continue
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                self._closed(c)
                continue
            self._closed(c, data)  # the end, or a refusal line before it
        for c in self._conns:
            if c.kind == "unread" and c.sock is not None:
                try:
                    c.sock.send(b" ")  # fails once the daemon closed it
                except BlockingIOError:
                    pass
                except OSError as e:
                    if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                        self._closed(c)

    def _trickle(self, c: _Conn) -> None:
        assert c.sock is not None
        byte = PARTIAL[c.sent % len(PARTIAL) : c.sent % len(PARTIAL) + 1]
        if c.sent >= len(PARTIAL):
            byte = b"x"  # the padding string goes on; the request never ends
        try:
            c.sock.send(byte)
            c.sent += 1
        except BlockingIOError:
            pass
        except OSError:
            self._closed(c)


__all__ = ["LoadStats", "RpcLoad"]
