"""Partitions (issue 10): the fault-injecting switchboard, then real icnd processes split in two.

The switchboard tests use plain sockets in this process (it dials, so :class:`PortOwners` names
it ``x``); the cluster test runs the chaos driver's partition phase on four nodes with a
2-second liveness timeout, once blackholed and once reset: each time the mesh is whole again
within twice that after the heal, and no task submitted before or during the cut is lost,
completed twice or left unfinished.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from icn_dev.chaos import Plan, details, run, table
from tests.integration.delay_proxy import PortOwners, Switchboard


class Echo:
    """An echo server on 127.0.0.1 (upper-cases what it gets, so echoes are told apart)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def board():
    echo = Echo()
    sb = Switchboard(identify=PortOwners(lambda: {os.getpid(): "x"}))
    yield sb, sb.add_front("y", echo.port)
    sb.close()
    echo.close()


def dial(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def echoed(s: socket.socket, data: bytes, wait: float = 5.0) -> bytes | None:
    """The echo of ``data``, or None when nothing came back within ``wait`` seconds."""
    s.settimeout(wait)
    s.sendall(data)
    try:
        return s.recv(4096)
    except TimeoutError:
        return None
    finally:
        s.settimeout(5.0)


def test_the_switchboard_names_the_dialling_process(board):
    board, front = board
    with dial(front) as s:
        assert echoed(s, b"hi") == b"HI"
        assert board.links() == [("x", "y")]
    assert board.unidentified == 0


def test_a_blackhole_holds_bytes_until_the_heal_and_spares_a_group(board):
    board, front = board
    with dial(front) as old:
        assert echoed(old, b"a") == b"A"
        board.partition([{"x"}, {"y"}])
        assert echoed(old, b"b", wait=0.5) is None  # held, as a partition makes TCP retransmit
        with dial(front) as new:  # a new link is accepted, and gets nothing through
            assert echoed(new, b"c", wait=0.5) is None
            board.heal()
            assert old.recv(4096) == b"B"
            assert new.recv(4096) == b"C"
        board.partition([{"x", "y"}])  # one group: nothing is cut
        assert echoed(old, b"d") == b"D"


def test_a_reset_closes_links_across_the_cut(board):
    board, front = board
    with dial(front) as old:
        assert echoed(old, b"a") == b"A"
        board.partition([{"x"}, {"y"}], mode="reset")
        assert old.recv(4096) == b""
        with dial(front) as new:
            assert new.recv(4096) == b""
        board.heal()
        with dial(front) as again:
            assert echoed(again, b"e") == b"E"


@pytest.mark.integration
def test_four_nodes_split_twice_heal_in_time_and_lose_nothing(short_tmp):
    """Two 8-second cuts (blackhole, then reset) of four nodes with a 2-second liveness
    timeout, 16 tasks submitted around each."""
    plan = Plan(
        seed=3,
        nodes=4,
        submitters=2,
        tasks=0,
        partition_s=8.0,
        partition_mode="both",
        partition_tasks=16,
        liveness_s=2.0,
        store_iterations=0,
        settle_s=30.0,
    )
    t0 = time.monotonic()
    outcome = run(plan, short_tmp, log=lambda s: None)
    report = outcome.report
    assert outcome.ok, f"{table(outcome)}\n{details(outcome)}"
    assert report.tasks == 32 and not report.lost and not report.stuck
    assert [c.mode for c in outcome.figures.partitions] == ["blackhole", "reset"]
    for cut in outcome.figures.partitions:
        # The cut was noticed (links died of the liveness timeout, or at once when reset) and
        # undone in time after the heal.
        assert cut.gone_s is not None and cut.gone_s < plan.partition_s, table(outcome)
        assert cut.heal_s <= 2 * plan.liveness_s, table(outcome)
    assert time.monotonic() - t0 < 75
