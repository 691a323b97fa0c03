"""The connection table decides whom to close for a newcomer (icn_node.rpc.clients)."""

from __future__ import annotations

import pytest

from icn_node.rpc.clients import Admission, ConnectionTable


def test_below_the_limit_everyone_is_admitted():
    table: ConnectionTable[str] = ConnectionTable(3)
    assert [table.admit(k, t) for t, k in enumerate("abc")] == [Admission(True)] * 3
    assert len(table) == 3


def test_a_newcomer_closes_the_connection_waiting_longest():
    table: ConnectionTable[str] = ConnectionTable(3)
    table.admit("idle", 0.0)  # connected and never sent anything
    table.admit("regular", 1.0)
    table.admit("trickler", 2.0)
    table.busy("regular")
    table.waiting("regular", 5.0)  # answered at 5: waits for its next request from then
    assert table.admit("new", 6.0) == Admission(True, evict="idle")
    assert "idle" not in table and "new" in table and len(table) == 3
    # Next: the trickler, waiting for its (never complete) request since 2.0.
    assert table.admit("newer", 7.0) == Admission(True, evict="trickler")


def test_busy_connections_are_never_closed_for_a_newcomer():
    table: ConnectionTable[str] = ConnectionTable(2)
    table.admit("a", 0.0)
    table.admit("b", 1.0)
    table.busy("a")
    assert table.admit("c", 2.0) == Admission(True, evict="b")
    table.busy("c")
    assert table.admit("d", 3.0) == Admission(False)  # all busy: the newcomer is refused
    assert "d" not in table and len(table) == 2 and table.busy_count == 2
    table.remove("a")  # a handler finished and its client left
    assert table.admit("d", 4.0) == Admission(True)


def test_a_client_not_reading_its_reply_waits_like_an_idle_one():
    table: ConnectionTable[str] = ConnectionTable(2)
    table.admit("slow-reader", 0.0)
    table.admit("fresh", 1.0)
    table.busy("slow-reader")
    table.waiting("slow-reader", 2.0)  # the reply is being written from 2.0
    assert table.admit("new", 3.0) == Admission(True, evict="fresh")
    assert table.admit("newer", 4.0) == Admission(True, evict="slow-reader")


def test_a_closed_connection_is_not_brought_back():
    table: ConnectionTable[str] = ConnectionTable(1)
    table.admit("a", 0.0)
    assert table.admit("b", 1.0).evict == "a"
    table.waiting("a", 2.0)  # the evicted connection's task reports in late
    table.busy("a")
    assert "a" not in table and len(table) == 1


def test_a_table_holds_at_least_one():
    with pytest.raises(ValueError):
        ConnectionTable(0)
