"""The blob core alone: locations, announcement scheduling and fetch bookkeeping, no I/O."""

from __future__ import annotations

import hashlib
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node.blobs.core import (
    ANNOUNCE_BATCH,
    ANNOUNCE_DELAY_S,
    FETCH_TIMEOUT_S,
    LOCATION_TTL_S,
    REANNOUNCE_S,
    REQUEST_RESEND_S,
    WINDOW,
    BlobCore,
    BlobLocations,
    Commit,
    Discard,
    Failed,
    ListStore,
    Open,
    Publish,
    Request,
    SizeConflict,
    Write,
)
from icn_node.wire import MAX_BLOB_CHUNK, BlobAnnounceMsg, BlobChunkMsg, BlobRequestMsg

ME, A, B, C = "did:me", "did:a", "did:b", "did:c"


def h(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(4, "big")).digest()


def published(acts) -> list[tuple[bytes, int]]:
    out = []
    for act in acts:
        if isinstance(act, Publish):
            out.extend(act.msg.blobs)
    return out


# --- locations ----------------------------------------------------------------------------


def test_locations_record_holders_and_refuse_a_conflicting_size():
    loc = BlobLocations()
    assert loc.add(h(1), B, 10, 0.0) and loc.add(h(1), A, 10, 1.0)
    assert loc.holders(h(1)) == [A, B]
    assert loc.add(h(1), C, 11, 2.0) is False
    assert loc.holders(h(1)) == [A, B]
    assert loc.holders(h(2)) == []
    snap = loc.snapshot()
    assert snap.holders(h(1)) == {A, B} and snap.size(h(1)) == 10
    assert loc.snapshot() is snap  # unchanged: the same immutable snapshot
    loc.add(h(1), A, 10, 3.0)  # a refresh of a known holder is no change either
    assert loc.snapshot() is snap


def test_locations_expire_after_their_ttl():
    loc = BlobLocations(ttl_s=10.0)
    loc.add(h(1), A, 5, 0.0)
    loc.add(h(1), B, 5, 5.0)
    snap = loc.snapshot()
    loc.expire(10.0)
    assert loc.holders(h(1)) == [A, B]
    loc.expire(10.5)
    assert loc.holders(h(1)) == [B]
    assert loc.snapshot() is not snap
    loc.expire(15.5)
    assert loc.holders(h(1)) == []
    assert loc.add(h(1), C, 6, 16.0)  # forgotten entirely: a new size is no conflict


# --- announcements ------------------------------------------------------------------------


def started(now: float = 0.0, items=()) -> BlobCore:
    core = BlobCore(ME)
    core.start(now)
    assert core.next_deadline() == now
    assert core.on_timer(now) == [ListStore()]
    core.on_store_listed(list(items), now)
    return core


def test_nothing_is_due_before_start():
    core = BlobCore(ME)
    assert core.next_deadline() == math.inf
    assert core.on_timer(1e9) == []


def test_everything_held_is_announced_at_start_and_every_reannounce_period():
    items = [(h(i), i) for i in range(3)]
    core = BlobCore(ME)
    core.start(100.0)
    assert core.on_timer(100.0) == [ListStore()]
    assert published(core.on_store_listed(items, 100.0)) == items
    assert core.locations.holders(h(1)) == [ME]
    assert core.next_deadline() == 100.0 + REANNOUNCE_S
    assert core.on_timer(100.0 + REANNOUNCE_S - 0.001) == []
    assert core.on_timer(100.0 + REANNOUNCE_S) == [ListStore()]
    assert core.next_deadline() == 100.0 + 2 * REANNOUNCE_S


def test_full_announcements_come_in_batches():
    items = [(h(i), i) for i in range(2 * ANNOUNCE_BATCH + 50)]
    acts = started().on_store_listed(items, 1.0)
    assert [len(a.msg.blobs) for a in acts] == [ANNOUNCE_BATCH, ANNOUNCE_BATCH, 50]
    assert published(acts) == items
    assert started().on_store_listed([], 1.0) == []  # nothing held: nothing sent


def test_new_blobs_are_batched_within_the_announce_delay():
    core = started()
    assert core.added(h(1), 10, 5.0) == []
    assert core.next_deadline() == 5.0 + ANNOUNCE_DELAY_S
    assert core.locations.holders(h(1)) == [ME]  # known here at once
    assert core.on_timer(5.1) == []
    core.added(h(2), 20, 5.1)  # rides the same batch: the deadline does not move
    assert core.next_deadline() == 5.0 + ANNOUNCE_DELAY_S
    assert published(core.on_timer(5.0 + ANNOUNCE_DELAY_S)) == [(h(1), 10), (h(2), 20)]
    assert core.next_deadline() == REANNOUNCE_S
    assert core.on_timer(6.0) == []


def test_a_full_announcement_takes_the_place_of_a_pending_batch():
    core = started()
    core.added(h(1), 10, REANNOUNCE_S - 0.1)
    assert core.on_timer(REANNOUNCE_S) == [ListStore()]
    assert core.next_deadline() == 2 * REANNOUNCE_S  # the batch is not sent again


def test_the_full_announcement_expires_old_locations_and_refreshes_our_own():
    core = started(items=[(h(1), 10)])
    core.on_announce(A, BlobAnnounceMsg(((h(2), 5),)), 1.0)
    assert core.locations.holders(h(2)) == [A]
    later = 1.0 + LOCATION_TTL_S + 1.0
    core.on_store_listed([(h(1), 10)], later)
    assert core.locations.holders(h(2)) == []
    assert core.locations.holders(h(1)) == [ME]


def test_size_conflicts_are_reported_not_recorded():
    core = started()
    assert core.on_announce(A, BlobAnnounceMsg(((h(1), 5), (h(2), 7))), 1.0) == []
    acts = core.on_announce(B, BlobAnnounceMsg(((h(1), 6), (h(2), 7))), 2.0)
    assert acts == [SizeConflict(h(1), B, 6)]
    assert core.locations.holders(h(1)) == [A] and core.locations.holders(h(2)) == [A, B]
    # our own blob contradicting an announcement: reported, and still announced
    assert core.added(h(1), 9, 3.0) == [SizeConflict(h(1), ME, 9)]
    assert published(core.on_timer(3.0 + ANNOUNCE_DELAY_S)) == [(h(1), 9)]
    acts = core.on_store_listed([(h(1), 9)], 4.0)
    assert SizeConflict(h(1), ME, 9) in acts and published(acts) == [(h(1), 9)]


# --- fetches: a fake network ---------------------------------------------------------------


def blob_data(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


class Net:
    """Routes a fetch's requests to holders (did -> bytes, or None: 'not found') and keeps the
    file the driver would write; checks the core's promises as it goes."""

    def __init__(self, core: BlobCore, holders: dict[str, bytes | None]) -> None:
        self.core = core
        self.holders = holders
        self.inflight: list[tuple[str, BlobRequestMsg]] = []
        self.file: bytearray | None = None
        self.size: int | None = None
        self.outcome: Commit | Failed | None = None
        self.requests = 0

    def apply(self, acts) -> None:
        for act in acts:
            assert self.outcome is None or isinstance(self.outcome, Commit), act
            match act:
                case Request(holder, msg):
                    self.requests += 1
                    if all(m.request_id != msg.request_id for _, m in self.inflight):
                        self.inflight.append((holder, msg))
                case Open(_, _, size):
                    assert self.file is None
                    self.file, self.size = bytearray(), size
                case Write(_, offset, data):
                    assert self.file is not None and offset == len(self.file)
                    self.file += data
                    assert len(self.file) <= self.size
                case Discard():
                    assert self.file is not None
                    self.file = None
                case Commit() | Failed():
                    self.outcome = act
                case _:
                    raise AssertionError(act)
        # never more than a window of requests in flight
        assert len(self.inflight) <= WINDOW

    def answer(self, holder: str, req: BlobRequestMsg, **change) -> BlobChunkMsg:
        data = self.holders.get(holder)
        if data is None:
            return BlobChunkMsg(req.request_id, req.blob, req.offset, 0, b"", error="not found")
        piece = data[req.offset : req.offset + req.length]
        fields = {"data": piece, "size": len(data), **change}
        return BlobChunkMsg(req.request_id, req.blob, req.offset, fields["size"], fields["data"])

    def deliver(self, i: int = 0, now: float = 0.0, dup: bool = False, **change) -> None:
        holder, req = self.inflight[i] if dup else self.inflight.pop(i)
        self.apply(self.core.on_chunk(holder, self.answer(holder, req, **change), now))

    def run(self, rng: random.Random | None = None, dup: bool = False) -> None:
        while self.inflight and (self.outcome is None):
            i = rng.randrange(len(self.inflight)) if rng else 0
            if dup and rng and rng.random() < 0.3:
                # a re-sent request answered twice: the second answer is ignored
                holder, req = self.inflight[i]
                reply = self.answer(holder, req)
                self.deliver(i)
                assert self.core.on_chunk(holder, reply, 0.0) == []
            else:
                self.deliver(i)


def start_fetch(holders: dict[str, bytes | None], order=None, announced=(), now=0.0):
    core = BlobCore(ME)
    data = next((d for d in holders.values() if d is not None), b"")
    blob = hashlib.sha256(data).digest()
    for did in announced:
        core.locations.add(blob, did, len(data), now)
    net = Net(core, holders)
    fid, acts = core.fetch(blob, list(order if order is not None else holders), now)
    net.fid, net.blob, net.data = fid, blob, data
    net.apply(acts)
    return core, net


@settings(max_examples=60, deadline=None)
@given(
    size=st.one_of(
        st.integers(0, 3 * MAX_BLOB_CHUNK),
        st.sampled_from([k * MAX_BLOB_CHUNK + d for k in range(1, 11) for d in (-1, 0, 1)]),
    ),
    seed=st.integers(0, 2**32 - 1),
    dup=st.booleans(),
)
def test_any_blob_arrives_whole_in_any_reply_order(size, seed, dup):
    data = blob_data(size)
    core, net = start_fetch({A: data})
    net.run(random.Random(seed), dup)
    assert net.outcome == Commit(net.fid, net.blob, A, size)
    assert bytes(net.file) == data
    assert net.requests == max(1, math.ceil(size / MAX_BLOB_CHUNK))
    assert core.next_deadline() == math.inf  # nothing in flight while the driver commits
    core.committed(net.fid)
    assert core.fetching() == 0


def test_the_first_piece_is_asked_for_alone_then_a_window_at_a_time():
    data = blob_data(10 * MAX_BLOB_CHUNK)
    core, net = start_fetch({A: data})
    assert [m.offset for _, m in net.inflight] == [0]
    net.deliver()
    assert [m.offset for _, m in net.inflight] == [k * MAX_BLOB_CHUNK for k in range(1, 5)]
    net.deliver(3)
    net.deliver(1)
    net.deliver(0)  # still one missing: nothing more asked for, nothing written past piece 0
    assert len(net.inflight) == 1 and len(net.file) == MAX_BLOB_CHUNK
    net.deliver()
    assert [m.offset for _, m in net.inflight] == [k * MAX_BLOB_CHUNK for k in range(5, 9)]
    assert len(net.file) == 5 * MAX_BLOB_CHUNK


def test_holders_are_tried_in_order_given_then_announced_never_ourselves():
    data = blob_data(100)
    holders = {ME: data, C: None, A: None, B: data}
    core, net = start_fetch(holders, order=[ME, C], announced=[B, A, ME, C])
    assert [d for d, _ in net.inflight] == [C]
    net.run()
    assert isinstance(net.outcome, Commit) and net.outcome.holder == B
    assert bytes(net.file) == data


def test_when_every_holder_fails_the_error_names_each():
    core, net = start_fetch({A: None, B: None})
    net.run()
    assert net.outcome == Failed(
        net.fid,
        f"blob {net.blob.hex()} could not be fetched (did:a: not found; did:b: not found)",
    )
    assert core.fetching() == 0 and core.next_deadline() == math.inf


def test_no_holder_at_all_fails_at_once():
    core = BlobCore(ME)
    fid, acts = core.fetch(h(1), [ME], 0.0)
    assert acts == [Failed(fid, f"blob {h(1).hex()} could not be fetched (no holder)")]
    assert core.fetching() == 0


def test_an_unanswered_request_is_resent_then_the_holder_is_given_up_on():
    data = blob_data(10)
    core, net = start_fetch({A: data, B: data})
    ((holder, req),) = net.inflight
    t = 0.0
    resends = []
    while all(d == A for d, _ in net.inflight):
        t = core.next_deadline()
        acts = core.on_timer(t)
        resends += [(t, a.msg) for a in acts if isinstance(a, Request) and a.holder == A]
        net.apply(acts)
    assert resends == [(k * REQUEST_RESEND_S, req) for k in range(1, 5)]
    assert t == FETCH_TIMEOUT_S
    # the answer from A, arriving late, is ignored; B is asked now
    assert net.inflight.pop(0) == (A, req)
    assert core.on_chunk(A, net.answer(A, req), t) == []
    net.run()
    assert net.outcome.holder == B and bytes(net.file) == data
    assert core.fetching() == 1  # until the driver reports the commit


def test_a_late_window_piece_times_out_and_the_partial_file_is_discarded():
    data = blob_data(3 * MAX_BLOB_CHUNK)
    core, net = start_fetch({A: data, B: None})
    net.deliver(now=1.0)  # the first piece opens the file
    net.deliver(now=1.5)
    assert len(net.inflight) == 1
    acts = core.on_timer(1.0 + FETCH_TIMEOUT_S)
    assert acts[0] == Discard(net.fid) and acts[1].holder == B
    net.apply(acts)
    net.run()
    assert net.outcome.error.endswith("(did:a: no answer within 10 s; did:b: not found)")


def test_only_the_holder_asked_may_answer():
    data = blob_data(10)
    core, net = start_fetch({A: data})
    holder, req = net.inflight[0]
    forged = BlobChunkMsg(req.request_id, req.blob, 0, 3, b"bad")
    assert core.on_chunk(B, forged, 0.0) == []
    assert core.on_chunk(A, BlobChunkMsg(999, req.blob, 0, 3, b"bad"), 0.0) == []
    net.run()
    assert bytes(net.file) == data


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"offset": 5}, "holder answered with the wrong range"),
        ({"blob": bytes(32)}, "holder answered with the wrong range"),
        ({"size": 5, "data": b"x" * 6}, "chunks exceed the announced size 5"),
        ({"size": 5, "data": b""}, "holder sent an empty first chunk"),
        ({"error": "disk on fire"}, "disk on fire"),
    ],
)
def test_a_bad_first_piece_fails_the_attempt(change, error):
    core, net = start_fetch({A: blob_data(10)})
    _, req = net.inflight.pop()
    reply = net.answer(A, req)
    reply = BlobChunkMsg(
        reply.request_id,
        change.get("blob", reply.blob),
        change.get("offset", reply.offset),
        change.get("size", reply.size),
        change.get("data", reply.data),
        change.get("error", ""),
    )
    net.apply(core.on_chunk(A, reply, 0.0))
    assert net.outcome.error.endswith(f"(did:a: {error})")
    assert net.file is None  # nothing was opened


def test_a_short_piece_in_the_middle_is_a_gap():
    data = blob_data(3 * MAX_BLOB_CHUNK)
    core, net = start_fetch({A: data})
    net.deliver()
    net.deliver(0, data=b"short")  # offset 1 chunk: 5 bytes instead of a whole chunk
    net.deliver(0)
    expected = f"chunk at offset {2 * MAX_BLOB_CHUNK}, expected {MAX_BLOB_CHUNK + 5}"
    assert net.outcome.error.endswith(f"(did:a: {expected})")
    assert net.file is None  # discarded


def test_a_short_last_piece_leaves_the_blob_incomplete():
    data = blob_data(MAX_BLOB_CHUNK + 10)
    core, net = start_fetch({A: data})
    net.deliver()
    net.deliver(0, data=b"12345")
    total = MAX_BLOB_CHUNK + 10
    assert net.outcome.error.endswith(f"blob incomplete: {MAX_BLOB_CHUNK + 5} of {total} bytes)")
    assert net.file is None


def test_an_overlong_window_piece_overruns():
    data = blob_data(MAX_BLOB_CHUNK + 10)
    core, net = start_fetch({A: data})
    net.deliver()
    net.deliver(0, data=b"x" * 11)
    assert net.outcome.error.endswith(f"chunks exceed the announced size {MAX_BLOB_CHUNK + 10})")


def test_bytes_that_fail_verification_move_on_to_the_next_holder():
    data = blob_data(10)
    core, net = start_fetch({A: data, B: data})
    net.run()
    assert net.outcome.holder == A
    net.outcome = None
    acts = core.attempt_failed(net.fid, "blob … failed verification", 1.0)
    assert acts[0] == Discard(net.fid)  # a no-op for the driver: the writer aborted itself
    net.apply(acts)
    net.run()
    assert net.outcome.holder == B


def test_a_cancelled_fetch_is_forgotten():
    core, net = start_fetch({A: blob_data(10)})
    core.cancel(net.fid)
    holder, req = net.inflight[0]
    assert core.on_chunk(A, net.answer(A, req), 0.0) == []
    assert core.next_deadline() == math.inf and core.on_timer(100.0) == []
    assert core.fetching() == 0
    assert core.attempt_failed(net.fid, "x", 0.0) == []


def test_concurrent_fetches_keep_their_own_requests():
    core = BlobCore(ME)
    d1, d2 = blob_data(MAX_BLOB_CHUNK + 1), blob_data(7)
    nets = []
    for data in (d1, d2):
        net = Net(core, {A: data})
        blob = hashlib.sha256(data).digest()
        fid, acts = core.fetch(blob, [A], 0.0)
        net.fid = fid
        net.apply(acts)
        nets.append(net)
    assert nets[0].fid != nets[1].fid
    nets[1].run()
    nets[0].run()
    assert bytes(nets[0].file) == d1 and bytes(nets[1].file) == d2
    assert nets[0].outcome.fetch == nets[0].fid and nets[1].outcome.fetch == nets[1].fid
