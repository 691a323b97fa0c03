"""Loopback TCP forwarders that give real ``icnd`` processes a network to break: delay and
partition.

:class:`Switchboard` listens on one *front* port per node and forwards each connection to that
node's real port. When every node advertises its front (``mesh.advertise``) and bootstraps from
the fronts, every mesh link between them crosses the switchboard, which can then delay bytes,
cut the links between groups of nodes (:meth:`Switchboard.partition`) and :meth:`heal` them.
To know which node *dialled*, it asks ``identify(peer_port, front_port)``; :class:`PortOwners`
answers from ``/proc`` (the process that owns the connecting socket), so on one machine, with
one loopback address, a node's outgoing links are told apart from everyone else's.

A cut either *blackholes* (bytes are held, as a network that drops packets makes TCP retransmit;
they flow again after the heal, and a new connection is accepted but gets nothing through) or
*resets* (affected connections are closed, new ones closed at once). Blackhole is what a real
partition looks like to the mesh: links go silent and die of the liveness timeout.

:class:`DelayProxy` is a one-front switchboard that only delays. Threads, no trio: it runs
beside the daemons in the test or driver process. Only 127.0.0.1 is used; ``close()`` stops
everything it started.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_HELD_BYTES = 32 * 1024 * 1024  # a blackholed direction holding more than this is reset
IDENTIFY_TRIES = 10

Identify = Callable[[int, int], str | None]


@dataclass(eq=False)
class _Conn:
    src: str | None  # the node that dialled (None: not identified)
    dst: str  # the node behind the front
    client: socket.socket
    server: socket.socket | None = None
    closed: bool = False
    held: int = 0  # bytes read but not yet written, both directions
    ended: int = 0  # directions whose end of stream was passed on
    sockets: list[socket.socket] = field(default_factory=list)


class Switchboard:
    """Fronts for named upstream ports on 127.0.0.1, with delay and partitions (see module)."""

    def __init__(self, delay_s: float = 0.0, identify: Identify | None = None) -> None:
        self.delay_s = delay_s
        self.identify = identify
        self._cond = threading.Condition()
        self._conns: list[_Conn] = []
        self._listeners: list[socket.socket] = []
        self._closed = False
        self._groups: dict[str, int] | None = None
        self._mode = "blackhole"
        self.unidentified = 0  # connections whose dialler could not be named
        self.cuts = 0  # partitions started

    # --- fronts ----------------------------------------------------------------------------

    def add_front(self, name: str, upstream_port: int) -> int:
        """Listen on a new port for connections to ``name`` (at ``upstream_port``); the port."""
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)
        with self._cond:
            self._listeners.append(listener)
        port: int = listener.getsockname()[1]
        threading.Thread(
            target=self._accept, args=(listener, name, upstream_port), daemon=True
        ).start()
        return port

    def _accept(self, listener: socket.socket, name: str, upstream_port: int) -> None:
        front_port = listener.getsockname()[1]
        while not self._closed:
            try:
                client, (_, peer_port) = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(
                target=self._serve,
                args=(client, peer_port, front_port, name, upstream_port),
                daemon=True,
            ).start()

    def _who(self, peer_port: int, front_port: int) -> str | None:
        if self.identify is None:
            return None
        for _ in range(IDENTIFY_TRIES):
            src = self.identify(peer_port, front_port)
            if src is not None:
                return src
            time.sleep(0.02)
        return None

    def _serve(
        self, client: socket.socket, peer_port: int, front_port: int, dst: str, upstream_port: int
    ) -> None:
        client.settimeout(None)
        src = self._who(peer_port, front_port)
        conn = _Conn(src, dst, client, sockets=[client])
        with self._cond:
            if src is None and self.identify is not None:
                self.unidentified += 1
            if self._closed:
                client.close()
                return
            self._conns.append(conn)
            if self._blocked(conn) and self._mode == "reset":
                self._close(conn)
                return
        up: queue.Queue[tuple[float, bytes]] = queue.Queue()
        threading.Thread(target=self._read, args=(conn, client, up), daemon=True).start()
        # Connect upstream only once the link may carry bytes (a blackholed dial hangs).
        if not self._wait_open(conn):
            return
        try:
            server = socket.create_connection(("127.0.0.1", upstream_port), timeout=5)
        except OSError:
            with self._cond:
                self._close(conn)
            return
        server.settimeout(None)
        with self._cond:
            conn.server = server
            conn.sockets.append(server)
            if conn.closed:
                server.close()
                return
        down: queue.Queue[tuple[float, bytes]] = queue.Queue()
        threading.Thread(target=self._read, args=(conn, server, down), daemon=True).start()
        threading.Thread(target=self._write, args=(conn, client, down), daemon=True).start()
        self._write(conn, server, up)

    # --- moving bytes --------------------------------------------------------------------

    def _read(self, conn: _Conn, src: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                conn.held += len(data)
                if conn.held > MAX_HELD_BYTES or (not data and conn.server is None):
                    self._close(conn)  # held too much, or the dialler gave up while cut off
                    data = b""
            q.put((time.monotonic() + self.delay_s, data))
            if not data:
                return

    def _write(self, conn: _Conn, dst: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not self._wait_open(conn):
                return
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                with self._cond:
                    conn.ended += 1
                    if conn.ended == 2:
                        self._close(conn)
                return
            try:
                dst.sendall(data)
            except OSError:
                with self._cond:
                    self._close(conn)
                return
            with self._cond:
                conn.held -= len(data)

    def _wait_open(self, conn: _Conn) -> bool:
        """Block while ``conn`` is cut; False once it is closed."""
        with self._cond:
            while not conn.closed and self._blocked(conn):
                self._cond.wait(0.5)
            return not conn.closed

    # --- faults --------------------------------------------------------------------------

    def _blocked(self, conn: _Conn) -> bool:
        groups = self._groups
        if groups is None or conn.src is None:
            return False
        return groups.get(conn.src, id(conn.src)) != groups.get(conn.dst, id(conn.dst))

    def partition(self, groups: Iterable[Iterable[str]], mode: str = "blackhole") -> None:
        """Cut every link between nodes of different ``groups`` (a node in none is alone)."""
        if mode not in ("blackhole", "reset"):
            raise ValueError(f"mode: expected blackhole or reset, got {mode!r}")
        with self._cond:
            self._groups = {name: k for k, group in enumerate(groups) for name in group}
            self._mode = mode
            self.cuts += 1
            if mode == "reset":
                for conn in list(self._conns):
                    if self._blocked(conn):
                        self._close(conn)
            self._cond.notify_all()

    def heal(self) -> None:
        with self._cond:
            self._groups = None
            self._cond.notify_all()

    @property
    def partitioned(self) -> bool:
        return self._groups is not None

    def links(self) -> list[tuple[str | None, str]]:
        """(dialler, node) of every open connection."""
        with self._cond:
            return [(c.src, c.dst) for c in self._conns if not c.closed]

    # --- closing -------------------------------------------------------------------------

    def _close(self, conn: _Conn) -> None:
        """With the lock held."""
        if conn.closed:
            return
        conn.closed = True
        for s in conn.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._conns.remove(conn)
        self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for listener in self._listeners:
                listener.close()
            for conn in list(self._conns):
                self._close(conn)


class DelayProxy:
    """One front to ``upstream_port`` that delays every byte by ``delay_s`` each way: links
    between real ``icnd`` processes get real, different round-trip times (2 × ``delay_s``)."""

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self._board = Switchboard(delay_s=delay_s)
        self.port = self._board.add_front("upstream", upstream_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._board.close()


class PortOwners:
    """``identify`` for a :class:`Switchboard`: the name of the process (among ``pids()``, pid →
    name) that owns the local TCP socket ``127.0.0.1:peer_port`` connected to ``front_port``,
    read from ``/proc/net/tcp`` and ``/proc/<pid>/fd``. Linux only; processes of this user."""

    def __init__(self, pids: Callable[[], Mapping[int, str]]) -> None:
        self.pids = pids

    def __call__(self, peer_port: int, front_port: int) -> str | None:
        inode = _socket_inode(peer_port, front_port)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for pid, name in self.pids().items():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return name
                except OSError:
                    continue
        return None


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, remote, inode = parts[1], parts[2], int(parts[9])
            lport = int(local.rpartition(":")[2], 16)
            rport = int(remote.rpartition(":")[2], 16)
            if lport == local_port and rport == remote_port and inode:
                return inode
    return None


__all__ = ["DelayProxy", "PortOwners", "Switchboard"]
