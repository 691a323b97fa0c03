"""Fetches through the blob core alone: hash lists, several holders, deaths, liars, blame.

A fake network (:class:`Net`) plays the holders and the driver: it answers requests as each
holder's behaviour says, keeps the file the driver would write, and verifies it at Commit.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node.blobs.core import (
    BYTES,
    QUERIES_SENT,
    BlobCore,
    Commit,
    Count,
    Discard,
    Failed,
    Open,
    Publish,
    Request,
    Write,
)
from icn_node.blobs.transfer import (
    AHEAD,
    FETCH_TIMEOUT_S,
    HASHES_TIMEOUT_S,
    MAX_SOURCES,
    QUERY_WAIT_S,
    REQUEST_RESEND_S,
    WINDOW,
    estimated_seconds,
)
from icn_node.wire import (
    MAX_BLOB_CHUNK,
    MAX_HASHES,
    BlobChunkMsg,
    BlobFetchMsg,
    BlobHashesMsg,
    BlobHashesRequestMsg,
    BlobHaveMsg,
    BlobQueryMsg,
)

ME, A, B, C, D, E = "did:me", "did:a", "did:b", "did:c", "did:d", "did:e"
CHUNK = MAX_BLOB_CHUNK


def blob_data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def piece_hashes(data: bytes) -> bytes:
    return b"".join(
        hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK)
    )


@dataclass
class Holder:
    """How one holder behaves. ``data`` None: "not found"."""

    data: bytes | None
    silent_after: int | None = None  # answers this many requests, then never again
    bad_piece: int | None = None  # sends wrong bytes for this piece
    bad_list: bool = False  # its hash list (and its pieces, to match) are for other bytes
    slow: float = 0.0  # seconds before each answer
    answered: int = 0

    def honest(self) -> bool:
        return (
            self.data is not None
            and self.silent_after is None
            and self.bad_piece is None
            and not self.bad_list
        )

    def content(self) -> bytes | None:
        if self.data is None or not self.bad_list:
            return self.data
        return bytes(b ^ 0xFF for b in self.data)  # same size, other bytes, consistent list

    def answer(self, req):
        if self.silent_after is not None and self.answered >= self.silent_after:
            return None
        self.answered += 1
        data = self.content()
        if isinstance(req, BlobHashesRequestMsg):
            if data is None:
                return BlobHashesMsg(req.request_id, req.blob, 0, req.first, b"", "not found")
            hs = piece_hashes(data)[req.first * 32 : (req.first + MAX_HASHES) * 32]
            return BlobHashesMsg(req.request_id, req.blob, len(data), req.first, hs)
        if data is None:
            return BlobChunkMsg(req.request_id, req.blob, req.offset, 0, b"", error="not found")
        piece = data[req.offset : req.offset + req.length]
        if self.bad_piece is not None and req.offset == self.bad_piece * CHUNK:
            piece = bytes(len(piece)) if piece != bytes(len(piece)) else b"\x01" * len(piece)
        return BlobChunkMsg(req.request_id, req.blob, req.offset, len(data), piece)


class Net:
    def __init__(self, holders: dict[str, Holder], blob: bytes, seed: int = 0) -> None:
        self.core = BlobCore(ME)
        self.core.start(0.0)
        self.core.on_timer(0.0)  # the first full announcement is due: not our concern here
        self.holders = holders
        self.blob = blob
        self.rng = random.Random(seed)
        self.now = 0.0
        self.inflight: list[tuple[float, str, object]] = []  # (deliver at, holder, request)
        self.file: bytearray | None = None
        self.outcome: Commit | Failed | None = None
        self.requests: list[tuple[str, object]] = []
        self.counts: Counter[tuple] = Counter()
        self.published: list = []
        self.discards = 0
        self.writes: list[int] = []
        self.fid = 0

    def start(self, given=(), size_hint=None, estimates=None, announced=()):
        for did in announced:
            self.core.locations.add(self.blob, did, size_hint, self.now)
        self.fid, acts = self.core.fetch(
            self.blob, list(given), self.now, cause="task_input", estimates=estimates or {}
        )
        self.apply(acts)
        return self

    def apply(self, acts) -> None:
        for act in acts:
            match act:
                case Request(holder, msg):
                    self.requests.append((holder, msg))
                    h = self.holders.get(holder)
                    delay = (h.slow if h else 0.0) + self.rng.random() * 0.01
                    self.inflight.append((self.now + delay, holder, msg))
                case Open(_, _, size):
                    self.file, self.size = bytearray(), size
                case Write(_, offset, data):
                    assert self.file is not None and offset == len(self.file)
                    self.file += data
                    self.writes.append(offset)
                case Discard():
                    self.discards += 1
                    self.file = None
                    self.writes = []
                case Commit():
                    assert self.outcome is None
                    assert self.file is not None and len(self.file) == act.size
                    if hashlib.sha256(self.file).digest() == self.blob:
                        self.outcome = act
                        self.core.committed(act.fetch)
                    else:
                        self.file = None
                        self.apply(
                            self.core.attempt_failed(act.fetch, "failed verification", self.now)
                        )
                case Failed():
                    assert self.outcome is None
                    self.outcome = act
                case Count(metric, labels, n):
                    self.counts[(metric, *labels)] += n
                case Publish(msg):
                    self.published.append(msg)
                case _:
                    raise AssertionError(act)

    def step(self) -> bool:
        """Deliver one answer (random among those due) or fire the timer; False when idle."""
        due = [i for i, (t, _, _) in enumerate(self.inflight) if t <= self.core.next_deadline()]
        if due:
            i = self.rng.choice(due)
            t, holder, req = self.inflight.pop(i)
            self.now = max(self.now, t)
            h = self.holders.get(holder)
            reply = h.answer(req) if h is not None else None
            if reply is not None:
                self.apply(self.core.on_message(holder, reply, self.now))
            return True
        deadline = self.core.next_deadline()
        if deadline == math.inf:
            return False
        self.now = max(self.now, deadline)
        self.apply(self.core.on_timer(self.now))
        return True

    def run(self, limit: int = 5_000) -> Net:
        for _ in range(limit):
            if self.outcome is not None or not self.step():
                break
            self.check()
        assert self.outcome is not None, "the fetch neither finished nor failed"
        return self

    def check(self) -> None:
        f = self.core._fetches.get(self.fid)
        if f is None:
            return
        per = Counter(p.holder for p in f.pending.values() if p.piece >= 0)
        assert all(n <= WINDOW for n in per.values()), per
        assert len(f.have) <= AHEAD
        assert len([s for s in f.sources.values() if not s.stalled]) <= MAX_SOURCES

    def pieces_from(self) -> Counter[str]:
        return Counter(h for h, m in self.requests if isinstance(m, BlobFetchMsg))


def make(data: bytes, **behaviours: Holder) -> tuple[dict[str, Holder], bytes]:
    return dict(behaviours), hashlib.sha256(data).digest()


# --- the whole ----------------------------------------------------------------------------


behaviour = st.one_of(
    st.just({}),
    st.builds(dict, silent_after=st.integers(0, 12)),
    st.builds(dict, bad_piece=st.integers(0, 12)),
    st.builds(dict, bad_list=st.just(True)),
    st.builds(dict, missing=st.just(True)),
    st.builds(dict, slow=st.floats(0.5, 5.0)),
)


@settings(max_examples=50, deadline=None)
@given(
    size=st.one_of(
        st.integers(0, 3 * CHUNK),
        st.sampled_from([k * CHUNK + d for k in (1, 2, 5, 9) for d in (-1, 0, 1)]),
    ),
    behaviours=st.lists(behaviour, min_size=1, max_size=5),
    announced=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_blob_from_any_holders_arrives_whole_or_fails_clearly(
    size, behaviours, announced, seed
):
    data = blob_data(size, seed)
    holders = {}
    for i, b in enumerate(behaviours):
        b = dict(b)
        missing = b.pop("missing", False)
        holders[f"did:h{i}"] = Holder(None if missing else data, **b)
    blob = hashlib.sha256(data).digest()
    net = Net(holders, blob, seed)
    if announced:
        net.start(announced=list(holders), size_hint=size)
    else:
        net.start(given=list(holders))
    net.run()
    if any(h.honest() for h in holders.values()):
        assert isinstance(net.outcome, Commit), net.outcome
    if isinstance(net.outcome, Commit):
        assert bytes(net.file) == data
        assert net.outcome.hashes == piece_hashes(data) or size <= CHUNK
        assert all(d in holders for d, _, _ in net.outcome.transfers)
    else:
        assert net.outcome.error.startswith(f"blob {blob.hex()} could not be fetched (")
        assert all(did in net.outcome.error for did in holders)  # what each one did
    assert net.core.fetching() == 0
    assert net.core.next_deadline() >= net.now  # nothing left of the fetch but the schedule


# --- the ordinary path ----------------------------------------------------------------------


def test_a_small_announced_blob_is_asked_for_at_once_without_a_list():
    data = blob_data(1000)
    holders, blob = make(data, **{A: Holder(data)})
    net = Net(holders, blob).start(announced=[A], size_hint=len(data))
    assert [type(m) for _, m in net.requests] == [BlobFetchMsg]
    assert net.requests[0][1].length == 1000 and net.requests[0][1].cause == "task_input"
    net.run()
    assert net.outcome.transfers[0][:2] == (A, 1000)
    assert net.counts[(BYTES, "in", "task_input")] == 1000


def test_an_unannounced_blob_starts_with_its_list_then_pieces_from_every_holder():
    data = blob_data(12 * CHUNK + 7)
    holders, blob = make(data, **{A: Holder(data), B: Holder(data), C: Holder(data)})
    net = Net(holders, blob).start(given=[A, B, C])
    assert [(h, type(m)) for h, m in net.requests] == [(A, BlobHashesRequestMsg)]
    net.step()  # the list: the pieces are asked of all three, a window each
    asked = net.pieces_from()
    assert asked == {A: WINDOW, B: WINDOW, C: WINDOW}
    firsts = sorted(m.offset // CHUNK for _, m in net.requests if isinstance(m, BlobFetchMsg))
    assert firsts == list(range(3 * WINDOW))  # the lowest pieces first
    net.run()
    assert bytes(net.file) == data and net.writes == [k * CHUNK for k in range(13)]
    assert {d for d, _, _ in net.outcome.transfers} == {A, B, C}
    assert sum(n for _, n, _ in net.outcome.transfers) == len(data)
    assert net.counts[(BYTES, "in", "task_input")] == len(data)


def test_the_empty_blob():
    holders, blob = make(b"", **{A: Holder(b"")})
    net = Net(holders, blob).start(given=[A]).run()
    assert isinstance(net.outcome, Commit) and net.file == bytearray()


def test_a_long_hash_list_comes_in_pages():
    blob = hashlib.sha256(b"big").digest()
    core = BlobCore(ME)
    fid, acts = core.fetch(blob, [A], 0.0)
    (req,) = [a.msg for a in acts]
    size = (MAX_HASHES + 3) * CHUNK
    page = BlobHashesMsg(req.request_id, blob, size, 0, bytes(32) * MAX_HASHES)
    (again,) = core.on_message(A, page, 0.1)
    assert isinstance(again.msg, BlobHashesRequestMsg) and again.msg.first == MAX_HASHES
    last = BlobHashesMsg(again.msg.request_id, blob, size, MAX_HASHES, bytes(32) * 3)
    acts = core.on_message(A, last, 0.2)
    assert acts[0] == Open(fid, blob, size)
    assert [a.msg.offset // CHUNK for a in acts[1:]] == list(range(WINDOW))


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (dict(size=3 * CHUNK, hashes=bytes(64)), "sent 2 hashes from piece 0 of 3"),
        (dict(size=10, hashes=bytes(32)), "its hash list contradicts the blob's name"),
        (dict(size=0, hashes=b""), "its hash list contradicts the blob's name"),
        (dict(first=1), "answered with the wrong range"),
        (dict(error="not found"), "not found"),
    ],
)
def test_a_bad_hash_list_moves_on_to_the_next_holder(reply, why):
    data = blob_data(3 * CHUNK)
    holders, blob = make(data, **{A: Holder(data), B: Holder(data)})
    net = Net(holders, blob).start(given=[A, B])
    _, _, req = net.inflight.pop()
    good = holders[A].answer(req)
    fields = {k: getattr(good, k) for k in ("request_id", "blob", "size", "first", "hashes")}
    net.core.locations.add(blob, A, len(data), 0.0)
    net.apply(net.core.on_message(A, BlobHashesMsg(**{**fields, **reply}), 0.0))
    assert net.core._fetches[net.fid].errors == [f"{A}: {why}"]
    net.run()
    assert isinstance(net.outcome, Commit)
    assert net.pieces_from() == {B: 3}
    # "not found" also drops the location; a bad answer does not (the holder may hold it)
    assert (A in net.core.locations.holders(blob)) == (why != "not found")


# --- choosing holders ----------------------------------------------------------------------


def test_holders_are_ranked_by_estimated_transfer_time():
    assert estimated_seconds(1_000_000, (10.0, 80.0)) == pytest.approx(0.01 + 0.1)
    assert estimated_seconds(0, (None, None)) == pytest.approx(0.2)
    data = blob_data(20 * CHUNK)
    holders, blob = make(data, **{d: Holder(data) for d in (A, B, C, D, E)})
    estimates = {
        A: (300.0, 10.0),  # 4.5 s for these 5 MiB: far slower than the best
        B: (5.0, 1000.0),  # the best: 0.047 s
        C: (20.0, 500.0),  # 0.104 s
        D: (None, None),  # unknown: 200 ms, 100 Mbit/s: 0.62 s
        E: (1.0, 400.0),  # 0.106 s
    }
    net = Net(holders, blob).start(given=[A, C, D, E, B], estimates=estimates)
    assert net.requests[0][0] == B  # the list from the best
    net.step()
    assert set(net.pieces_from()) == {B, E, C}  # within 3x of the best; D and A wait
    net.run()
    assert A not in net.pieces_from() and D not in net.pieces_from()


def test_the_given_holders_come_first_when_nothing_tells_them_apart():
    data = blob_data(100)
    holders, blob = make(data, **{A: Holder(data), B: Holder(data)})
    net = Net(holders, blob).start(given=[B], announced=[A], size_hint=100)
    assert [h for h, _ in net.requests] == [B]


def test_never_this_node():
    data = blob_data(100)
    holders, blob = make(data, **{ME: Holder(data), A: Holder(data)})
    net = Net(holders, blob).start(given=[ME], announced=[ME, A], size_hint=100).run()
    assert {h for h, _ in net.requests} == {A}


# --- holders that die, stall or lie ----------------------------------------------------------


def test_a_holder_that_dies_mid_transfer_hands_its_pieces_to_the_other():
    data = blob_data(24 * CHUNK)
    holders, blob = make(data, **{A: Holder(data, silent_after=6), B: Holder(data)})
    net = Net(holders, blob).start(given=[A, B]).run()
    assert isinstance(net.outcome, Commit) and bytes(net.file) == data
    assert net.discards == 0  # what came in before A died was kept
    assert net.writes == [k * CHUNK for k in range(24)]  # every piece written once
    # A, stalled, got no new pieces after its first unanswered one
    to_a = {m.offset for h, m in net.requests if h == A and isinstance(m, BlobFetchMsg)}
    assert len(to_a) <= 5 + WINDOW
    # A's report covers what it delivered while it lived: the list and five pieces
    assert [(d, n) for d, n, _ in net.outcome.transfers] == [(A, 5 * CHUNK), (B, 19 * CHUNK)]
    # A's unanswered pieces went to B after one re-send interval, long before A timed out
    assert net.now < FETCH_TIMEOUT_S


def test_a_stalled_piece_is_hedged_and_the_first_answer_wins():
    data = blob_data(16 * CHUNK)
    holders, blob = make(data, **{A: Holder(data), B: Holder(data)})
    net = Net(holders, blob).start(given=[A, B])
    net.step()  # the list from A; four pieces asked of each
    stuck = [m for h, m in net.requests if h == B and isinstance(m, BlobFetchMsg)][0]
    net.inflight = [x for x in net.inflight if x[2] is not stuck]  # B never answers that one
    net.run()
    assert isinstance(net.outcome, Commit) and bytes(net.file) == data
    to_a = [m.offset for h, m in net.requests if h == A and isinstance(m, BlobFetchMsg)]
    assert stuck.offset in to_a  # hedged to A
    assert net.now < FETCH_TIMEOUT_S  # not held up until B's request timed out
    assert net.discards == 0


def test_an_overdue_list_is_also_asked_of_the_next_holder():
    data = blob_data(3 * CHUNK)
    holders, blob = make(data, **{A: Holder(data, silent_after=0), B: Holder(data)})
    net = Net(holders, blob).start(given=[A, B])
    assert [h for h, _ in net.requests] == [A]
    net.run()
    lists = [h for h, m in net.requests if isinstance(m, BlobHashesRequestMsg)]
    assert lists == [A, A, B]  # A's re-sent at 2 s, and B asked too
    assert isinstance(net.outcome, Commit) and bytes(net.file) == data
    assert net.now < REQUEST_RESEND_S * 3


def test_a_holder_that_never_answers_is_given_up_on_after_the_timeout():
    holders, blob = make(b"x", **{A: Holder(b"x", silent_after=0)})
    net = Net(holders, blob).start(given=[A]).run()
    resends = [m for h, m in net.requests if h == A]
    assert len(resends) == HASHES_TIMEOUT_S / REQUEST_RESEND_S
    assert f"{A}: no answer within {HASHES_TIMEOUT_S:g} s" in net.outcome.error
    assert HASHES_TIMEOUT_S + QUERY_WAIT_S <= net.now < HASHES_TIMEOUT_S + QUERY_WAIT_S + 1
    data = blob_data(5 * CHUNK)
    holders, blob = make(data, **{A: Holder(data, silent_after=1)})  # the list, then nothing
    net = Net(holders, blob).start(given=[A]).run()
    assert f"{A}: no answer within {FETCH_TIMEOUT_S:g} s" in net.outcome.error


def test_a_lying_piece_is_blamed_on_its_sender_and_fetched_from_another():
    data = blob_data(10 * CHUNK)
    holders, blob = make(data, **{A: Holder(data), B: Holder(data, bad_piece=5)})
    net = Net(holders, blob, seed=3).start(given=[A, B])
    net.run()
    assert isinstance(net.outcome, Commit) and net.discards == 0
    asked_5 = [h for h, m in net.requests if isinstance(m, BlobFetchMsg) and m.offset == 5 * CHUNK]
    assert B in asked_5  # two holders, the lowest pieces first: B gets piece 5 in its window
    assert asked_5[-1] == A  # and the piece was asked again, of A
    assert [d for d, _, _ in net.outcome.transfers] == [A]  # B is out: no report


def test_the_list_source_caught_sending_a_piece_against_its_own_list_is_out():
    data = blob_data(6 * CHUNK)
    holders, blob = make(data, **{A: Holder(data, bad_piece=0), B: Holder(data)})
    net = Net(holders, blob).start(given=[A, B])
    net.run()
    assert isinstance(net.outcome, Commit) and bytes(net.file) == data
    hash_sources = [h for h, m in net.requests if isinstance(m, BlobHashesRequestMsg)]
    assert hash_sources == [A, B]  # A lied against its own list: a new list, from B
    assert net.discards == 1
    assert [d for d, _, _ in net.outcome.transfers] == [B]


def test_a_false_list_is_caught_at_the_end_and_blamed_on_its_source():
    data = blob_data(6 * CHUNK)
    holders, blob = make(data, **{A: Holder(data, bad_list=True), B: Holder(data)})
    estimates = {A: (1.0, None), B: (50.0, None)}  # A is asked for the list
    net = Net(holders, blob).start(given=[A, B], estimates=estimates).run()
    assert isinstance(net.outcome, Commit) and bytes(net.file) == data
    hash_sources = [h for h, m in net.requests if isinstance(m, BlobHashesRequestMsg)]
    assert hash_sources == [A, B]
    assert [d for d, _, _ in net.outcome.transfers] == [B]
    f = net.outcome
    assert f.hashes == piece_hashes(data)


def test_only_the_holder_asked_may_answer():
    data = blob_data(100)
    holders, blob = make(data, **{A: Holder(data)})
    net = Net(holders, blob).start(given=[A], size_hint=None)
    _, _, req = net.inflight[0]
    forged = BlobHashesMsg(req.request_id, blob, 100, 0, blob)
    assert net.core.on_message(B, forged, 0.0) == []
    assert net.core.on_message(A, BlobChunkMsg(req.request_id, blob, 0, 1, b"x"), 0.0) == []
    assert net.core.on_message(A, BlobChunkMsg(999 << 24, blob, 0, 1, b"x"), 0.0) == []
    net.run()
    assert bytes(net.file) == data


# --- nobody known ---------------------------------------------------------------------------


def test_with_no_holder_known_the_cooperative_is_asked_and_an_answer_resumes_the_fetch():
    data = blob_data(3 * CHUNK)
    holders, blob = make(data, **{C: Holder(data)})
    net = Net(holders, blob).start()
    assert net.requests == []
    net.now = net.core.next_deadline()
    net.apply(net.core.on_timer(net.now))
    assert net.published == [BlobQueryMsg((blob,))]
    assert net.counts[(QUERIES_SENT, "query")] == 1
    net.apply(net.core.on_message(C, BlobHaveMsg(((blob, len(data)),), 600.0), net.now + 0.1))
    net.run()
    assert isinstance(net.outcome, Commit) and net.core.locations.holders(blob) == [C]


def test_with_no_holder_and_no_answer_the_fetch_fails_naming_what_happened():
    holders, blob = make(b"x", **{A: Holder(None)})
    net = Net(holders, blob).start(given=[A]).run()
    assert net.outcome.error == (
        f"blob {blob.hex()} could not be fetched ({A}: not found; "
        f"asked the cooperative, no other holder within {QUERY_WAIT_S:g} s)"
    )
    assert QUERY_WAIT_S <= net.now <= QUERY_WAIT_S + 1
    net = Net({}, blob).start().run()
    assert net.outcome.error.endswith(
        "(no holder; asked the cooperative, no other holder within 3 s)"
    )


def test_a_cancelled_fetch_is_forgotten():
    data = blob_data(10)
    holders, blob = make(data, **{A: Holder(data)})
    net = Net(holders, blob).start(given=[A])
    net.core.cancel(net.fid)
    _, _, req = net.inflight[0]
    assert net.core.on_message(A, holders[A].answer(req), 0.0) == []
    assert net.core.fetching() == 0 and net.core.attempt_failed(net.fid, "x", 0.0) == []
