"""The blob core's locations protocol alone: announcements, withdrawals, expiry, queries and
syncs, with their rate limits. Fetches are in test_transfer.py."""

from __future__ import annotations

import hashlib
import math
import random

from icn_node.blobs.core import (
    ANNOUNCE_BATCH,
    ANNOUNCE_DELAY_S,
    ANNOUNCES_RECEIVED,
    ANSWERS_PER_WINDOW,
    ANSWERS_PER_WINDOW_ALL,
    DROPPED,
    MAX_QUERY_BACKLOG,
    MAX_QUERY_BLOBS,
    ONLINE_DELAY_S,
    QUERIES_ANSWERED,
    QUERIES_SENT,
    QUERY_BACKOFF_S,
    QUERY_GAP_S,
    SYNC_GAP_S,
    SYNC_SPREAD_S,
    SYNCS_PER_WINDOW,
    BlobCore,
    Count,
    Dropped,
    ListStore,
    Publish,
    Send,
    SizeConflict,
    cause_label,
)
from icn_node.blobs.locations import EXPIRY_SLACK_S
from icn_node.wire import (
    LEGACY_REFRESH_S,
    BlobAnnounceMsg,
    BlobHaveMsg,
    BlobQueryMsg,
    BlobSyncMsg,
    BlobWithdrawMsg,
)

ME, A, B, C = "did:me", "did:a", "did:b", "did:c"
REFRESH = 600.0


def h(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(4, "big")).digest()


def announced(acts) -> list[tuple[bytes, int]]:
    return [
        b
        for a in acts
        if isinstance(a, Publish) and isinstance(a.msg, BlobHaveMsg)
        for b in a.msg.blobs
    ]


def withdrawn(acts) -> list[bytes]:
    return [
        b
        for a in acts
        if isinstance(a, Publish) and isinstance(a.msg, BlobWithdrawMsg)
        for b in a.msg.blobs
    ]


def started(now: float = 0.0, items=(), refresh_s: float = REFRESH, seed: int = 0) -> BlobCore:
    core = BlobCore(ME, refresh_s=refresh_s, rng=random.Random(seed))
    core.start(now)
    assert core.next_deadline() == now
    assert core.on_timer(now) == [ListStore()]
    core.on_store_listed(list(items), now)
    return core


# --- announcements ------------------------------------------------------------------------


def test_nothing_is_due_before_start():
    core = BlobCore(ME)
    assert core.next_deadline() == math.inf
    assert core.on_timer(1e9) == []


def test_everything_held_is_announced_at_start_and_every_refresh():
    items = [(h(i), i) for i in range(3)]
    core = BlobCore(ME, refresh_s=REFRESH)
    core.start(100.0)
    assert core.on_timer(100.0) == [ListStore()]
    acts = core.on_store_listed(items, 100.0)
    assert acts == [Publish(BlobHaveMsg(tuple(items), REFRESH))]
    assert core.locations.holders(h(1)) == [ME] and core.holds(h(1))
    assert core.on_timer(100.0 + REFRESH - 0.001) == []
    assert core.on_timer(100.0 + REFRESH) == [ListStore()]
    assert core.on_timer(100.0 + 2 * REFRESH) == [ListStore()]


def test_full_announcements_come_in_batches():
    items = [(h(i), i) for i in range(2 * ANNOUNCE_BATCH + 50)]
    acts = started().on_store_listed(items, 1.0)
    assert [len(a.msg.blobs) for a in acts] == [ANNOUNCE_BATCH, ANNOUNCE_BATCH, 50]
    assert announced(acts) == items
    assert started().on_store_listed([], 1.0) == []  # nothing held: nothing sent


def test_new_blobs_are_batched_within_the_announce_delay():
    core = started()
    assert core.added(h(1), 10, 5.0) == []
    assert core.next_deadline() == 5.0 + ANNOUNCE_DELAY_S
    assert core.locations.holders(h(1)) == [ME]  # known here at once
    assert core.on_timer(5.1) == []
    core.added(h(2), 20, 5.1)  # rides the same batch: the deadline does not move
    assert core.next_deadline() == 5.0 + ANNOUNCE_DELAY_S
    assert announced(core.on_timer(5.0 + ANNOUNCE_DELAY_S)) == [(h(1), 10), (h(2), 20)]
    assert core.on_timer(6.0) == []


def test_a_removed_blob_is_withdrawn_in_the_next_batch():
    core = started(items=[(h(1), 10), (h(2), 20)])
    core.added(h(3), 30, 1.0)
    assert core.removed(h(3), 1.05) == [] and core.removed(h(1), 1.1) == []
    assert core.locations.holders(h(1)) == [] and not core.holds(h(1))
    acts = core.on_timer(1.0 + ANNOUNCE_DELAY_S)
    assert announced(acts) == [] and withdrawn(acts) == [h(3), h(1)]
    # added again: announced, not withdrawn
    core.removed(h(2), 2.0)
    core.added(h(2), 20, 2.1)
    acts = core.on_timer(2.0 + ANNOUNCE_DELAY_S)
    assert announced(acts) == [(h(2), 20)] and withdrawn(acts) == []


def test_a_full_listing_withdraws_what_left_the_store_unannounced():
    core = started(items=[(h(1), 10), (h(2), 20)])
    acts = core.on_store_listed([(h(2), 20)], 600.0)
    assert announced(acts) == [(h(2), 20)] and withdrawn(acts) == [h(1)]
    assert core.locations.holders(h(1)) == []


def test_the_full_announcement_expires_old_locations_and_keeps_our_own():
    core = started(items=[(h(1), 10)])
    core.on_message(A, BlobHaveMsg(((h(2), 5),), REFRESH), 1.0)
    assert core.locations.holders(h(2)) == [A]
    later = 1.0 + 3 * REFRESH + EXPIRY_SLACK_S + 1.0
    core.on_store_listed([(h(1), 10)], later)
    assert core.locations.holders(h(2)) == [] and len(core.locations) == 1
    assert core.locations.holders(h(1)) == [ME]


def test_size_conflicts_are_reported_and_ours_wins():
    core = started()
    have = BlobHaveMsg(((h(1), 5), (h(2), 7)), REFRESH)
    assert core.on_message(A, have, 1.0) == [Count(ANNOUNCES_RECEIVED, ("have",))]
    acts = core.on_message(B, BlobHaveMsg(((h(1), 6), (h(2), 7)), REFRESH), 2.0)
    assert SizeConflict(h(1), B, 6) in acts
    assert core.locations.holders(h(1)) == [A] and core.locations.holders(h(2)) == [A, B]
    # our own (verified) size contradicting an announcement: reported, and ours stands
    assert core.added(h(1), 9, 3.0) == [SizeConflict(h(1), ME, 9)]
    assert core.locations.holders(h(1)) == [ME] and core.locations.size(h(1)) == 9
    assert announced(core.on_timer(3.0 + ANNOUNCE_DELAY_S)) == [(h(1), 9)]


# --- what peers announce ------------------------------------------------------------------


def test_a_peers_locations_expire_after_three_of_its_refreshes():
    core = started()
    core.on_message(A, BlobHaveMsg(((h(1), 5),), 10.0), 100.0)  # A refreshes every 10 s
    core.on_message(B, BlobAnnounceMsg(((h(1), 5),)), 100.0)  # an older build: every 300 s
    core.on_timer(100.0 + 30.0 + EXPIRY_SLACK_S)
    assert core.locations.holders(h(1)) == [A, B]
    core.on_timer(101.0 + 30.0 + EXPIRY_SLACK_S)
    assert core.locations.holders(h(1)) == [B]
    core.on_timer(101.0 + 3 * LEGACY_REFRESH_S + EXPIRY_SLACK_S)
    assert core.locations.holders(h(1)) == []


def test_a_refresh_keeps_a_location_alive():
    core = started()
    for t in range(0, 200, 10):
        core.on_message(A, BlobHaveMsg(((h(1), 5),), 10.0), float(t))
    core.on_timer(225.0)
    assert core.locations.holders(h(1)) == [A]


def test_a_withdrawal_forgets_the_origins_location_only():
    core = started()
    core.on_message(A, BlobHaveMsg(((h(1), 5),), REFRESH), 1.0)
    core.on_message(B, BlobHaveMsg(((h(1), 5),), REFRESH), 1.0)
    acts = core.on_message(A, BlobWithdrawMsg((h(1), h(2))), 2.0)
    assert acts == [Count(ANNOUNCES_RECEIVED, ("withdraw",))]
    assert core.locations.holders(h(1)) == [B]


def test_our_own_messages_are_dropped():
    core = started()
    assert core.on_message(ME, BlobHaveMsg(((h(1), 5),), REFRESH), 1.0) == [Dropped(ME, "own")]


# --- coming online ------------------------------------------------------------------------


def test_coming_online_announces_everything_and_asks_for_holdings():
    core = started(items=[(h(1), 10)])
    assert core.on_timer(2.0, peers=0) == []
    acts = core.on_timer(4.0, peers=2)
    assert acts == []
    assert core.next_deadline() == 4.0 + ONLINE_DELAY_S
    acts = core.on_timer(4.0 + ONLINE_DELAY_S, peers=2)
    assert acts[0] == ListStore()
    assert Publish(BlobSyncMsg()) in acts and Count(QUERIES_SENT, ("sync",)) in acts
    # staying online: nothing more; offline and back: again
    assert core.on_timer(20.0, peers=3) == []
    core.on_timer(30.0, peers=0)
    core.on_timer(32.0, peers=1)
    assert Publish(BlobSyncMsg()) in core.on_timer(33.0, peers=1)


def test_a_sync_is_answered_with_our_holdings_after_a_random_delay():
    items = [(h(i), i) for i in range(ANNOUNCE_BATCH + 3)]
    core = started(items=items)
    assert core.on_message(A, BlobSyncMsg(), 10.0) == []
    due = core.next_deadline()
    assert 10.0 <= due <= 10.0 + SYNC_SPREAD_S
    acts = core.on_timer(due)
    sends = [a for a in acts if isinstance(a, Send)]
    assert [s.to for s in sends] == [A, A]
    assert [b for s in sends for b in s.msg.blobs] == items
    assert Count(QUERIES_ANSWERED, ("sync",)) in acts
    # one answer per member per window; at most SYNCS_PER_WINDOW members per window
    assert core.on_message(A, BlobSyncMsg(), 11.0) == [Dropped(A, "sync-rate-member")]
    for i in range(SYNCS_PER_WINDOW - 1):
        assert core.on_message(f"did:m{i}", BlobSyncMsg(), 12.0) == []
    assert core.on_message(B, BlobSyncMsg(), 12.0) == [Dropped(B, "sync-rate-all")]
    assert core.on_message(A, BlobSyncMsg(), 10.0 + SYNC_GAP_S) == []


def test_a_node_holding_nothing_answers_a_sync_with_nothing():
    core = started()
    core.on_message(A, BlobSyncMsg(), 1.0)
    assert core.on_timer(1.0 + SYNC_SPREAD_S) == []


# --- queries ------------------------------------------------------------------------------


def test_a_query_is_answered_only_for_what_this_node_holds():
    core = started(items=[(h(1), 10), (h(2), 20)])
    core.on_message(B, BlobHaveMsg(((h(3), 30),), REFRESH), 1.0)  # B's: not ours to tell
    acts = core.on_message(A, BlobQueryMsg((h(2), h(3), h(4))), 2.0)
    assert acts == [
        Send(A, BlobHaveMsg(((h(2), 20),), REFRESH)),
        Count(QUERIES_ANSWERED, ("query",)),
    ]
    assert core.on_message(A, BlobQueryMsg((h(3),)), 2.0) == []  # silence


def test_answers_are_rate_limited_per_member_and_in_all():
    core = started(items=[(h(1), 10)])
    q = BlobQueryMsg((h(1),))
    for _ in range(ANSWERS_PER_WINDOW):
        assert isinstance(core.on_message(A, q, 1.0)[0], Send)
    assert core.on_message(A, q, 1.0) == [Dropped(A, "query-rate-member")]
    answered = ANSWERS_PER_WINDOW
    i = 0
    while answered < ANSWERS_PER_WINDOW_ALL:
        assert isinstance(core.on_message(f"did:m{i // 10}", q, 1.0)[0], Send)
        answered += 1
        i += 1
    assert core.on_message(B, q, 1.0) == [Dropped(B, "query-rate-all")]
    assert isinstance(core.on_message(A, q, 11.0)[0], Send)  # a new window


def test_asking_batches_rate_limits_and_backs_off():
    core = started()
    until, acts = core.ask([h(1), h(2)], 10.0)
    assert until > 10.0 and acts == []
    assert core.next_deadline() == 10.0
    acts = core.on_timer(10.0)
    assert acts == [Publish(BlobQueryMsg((h(1), h(2)))), Count(QUERIES_SENT, ("query",))]
    core.ask([h(1)], 10.1)  # asked just now: not again
    core.ask([h(3)], 10.1)  # waits for the gap
    assert core.next_deadline() == 10.0 + QUERY_GAP_S
    assert core.on_timer(10.0 + QUERY_GAP_S)[0] == Publish(BlobQueryMsg((h(3),)))
    core.ask([h(1)], 10.0 + QUERY_BACKOFF_S)
    assert core.on_timer(10.0 + QUERY_BACKOFF_S)[0] == Publish(BlobQueryMsg((h(1),)))


def test_a_long_question_goes_out_in_several_messages_and_the_backlog_is_bounded():
    core = started()
    _, acts = core.ask([h(i) for i in range(MAX_QUERY_BACKLOG + 5)], 1.0)
    assert acts == [Count(DROPPED, ("query-backlog",))] * 5
    sent = []
    t = 1.0
    while core.next_deadline() < 100.0:
        t = core.next_deadline()
        sent += [a.msg for a in core.on_timer(t) if isinstance(a, Publish)]
    assert [len(m.blobs) for m in sent] == [MAX_QUERY_BLOBS] * (
        MAX_QUERY_BACKLOG // MAX_QUERY_BLOBS
    )
    assert t == 1.0 + (len(sent) - 1) * QUERY_GAP_S


def test_causes_are_a_fixed_label_set():
    assert cause_label("task_input") == "task_input"
    assert cause_label("user_get") == "user_get"
    assert cause_label("anything a peer made up") == "other"
