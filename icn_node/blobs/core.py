"""The decisions of blobs between nodes, sans-IO: who holds what, what to announce when, whom
to ask, what to answer, and the fetches. No trio, no clock, no disk, no logging.

:class:`BlobCore` is the one object the driver talks to. Events go in as method calls, each
taking ``now`` (the node's clock in seconds, supplied by the driver); what the driver must do
comes back as a list of actions, in order:

=========================================  ================================================
event                                      actions
=========================================  ================================================
``start(now)``                             (the first full announcement falls due at once)
``on_timer(now, peers)``                   :class:`ListStore`, :class:`Publish`, :class:`Send`,
                                           and the fetches' actions (re-sends, time-outs)
``on_store_listed(items, now)``            :class:`Publish`, :class:`SizeConflict`
``added(blob, size, now)``                 :class:`SizeConflict`
``removed(blob, now)``                     (a withdrawal is batched)
``on_message(origin, msg, now)``           :class:`Send` (answers), :class:`Count`,
                                           :class:`Dropped`, :class:`SizeConflict`, and the
                                           fetches' actions
``ask(blobs, now)``                        (a query is batched; returns until when to wait)
``fetch(blob, holders, now, ...)``         :class:`~.transfer.Request`, …
``attempt_failed(fetch, error, now)``      the fetch's actions (a new hash list, …)
``committed(fetch)``, ``cancel(fetch)``    (the fetch is forgotten)
=========================================  ================================================

**Locations** (:class:`~.locations.BlobLocations`) are recorded only from the holder itself:
its signed gossip or its direct answer, the mesh's authenticated origin, never a field.

**Announcements.** A blob stored here (put, output, or fetched) is announced (``blob_have``)
within ``ANNOUNCE_DELAY_S``, batched; a removed one is withdrawn (``blob_withdraw``) the same
way. Everything held is re-announced every ``refresh_s`` (``blobs.announce_interval_s``), the
first time at start and again ``ONLINE_DELAY_S`` after the node comes online (its peer count
rises from zero). ``blob_have`` carries ``refresh_s``; a receiver expires the locations after
three missed refreshes. A full announcement needs the store's listing, which only the driver
can read: the core asks for it with :class:`ListStore` and goes on in :meth:`on_store_listed`.

**Queries**, for a node that missed announcements:

* *Who holds X* (``blob_query``, gossip): sent when a fetch has run out of holders, or for
  ``blob.locate`` of a blob nobody is known to hold. Blobs are asked for in batches of at most
  ``MAX_QUERY_BLOBS``, at most one message per ``QUERY_GAP_S``, none again within
  ``QUERY_BACKOFF_S``, and at most ``MAX_QUERY_BACKLOG`` waiting. A node answers only for
  itself (a direct ``blob_have`` listing those of the blobs it holds; silence otherwise), so
  the answers are one small message per actual holder, and a third party can never add a
  location. Each member gets at most ``ANSWERS_PER_WINDOW`` answers per ``ANSWER_WINDOW_S``,
  all members together ``ANSWERS_PER_WINDOW_ALL``; beyond that queries are dropped, counted.
* *Send me your holdings* (``blob_sync``, gossip): sent ``ONLINE_DELAY_S`` after this node
  comes online. Each node answers with its holdings, directly, after a random delay within
  ``SYNC_SPREAD_S`` (so the answers do not all arrive at once), at most once per member per
  ``SYNC_GAP_S`` and to at most ``SYNCS_PER_WINDOW`` members per ``SYNC_GAP_S``. One sync costs
  about what one round of full announcements costs the node that asked, and nothing more.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ..wire import (
    LEGACY_REFRESH_S,
    MAX_LIST_LEN,
    MAX_QUERY_BLOBS,
    BlobAnnounceMsg,
    BlobChunkMsg,
    BlobHashesMsg,
    BlobHaveMsg,
    BlobQueryMsg,
    BlobSyncMsg,
    BlobWithdrawMsg,
    Message,
)
from .locations import DEFAULT_REFRESH_S, BlobLocations, ttl_for
from .transfer import (
    BYTES,
    QUERY_WAIT_S,
    SEQ_BITS,
    Ask,
    Commit,
    Count,
    Discard,
    Estimate,
    Failed,
    Fetch,
    FetchAction,
    Forget,
    Open,
    Request,
    Write,
)

ANNOUNCE_DELAY_S = 0.2
ANNOUNCE_BATCH = 200
ONLINE_DELAY_S = 1.0
PEER_CHECK_S = 2.0
QUERY_GAP_S = 0.5
QUERY_BACKOFF_S = 10.0
MAX_QUERY_BACKLOG = 4 * MAX_QUERY_BLOBS
ANSWER_WINDOW_S = 10.0
ANSWERS_PER_WINDOW = 20
ANSWERS_PER_WINDOW_ALL = 200
SYNC_GAP_S = 60.0
SYNCS_PER_WINDOW = 16
SYNC_SPREAD_S = 5.0
MAX_TRACKED = 4096
"""Blobs remembered for the query back-off, at most (older ones forgotten first)."""
LOCATE_GRACE_S = 0.5
"""``blob.locate`` after a query: how long to wait for more holders after the first answers."""

CAUSES = frozenset({"task_input", "module", "user_get", "replica", "output", "other"})
"""Why bytes move: the ``cause`` label of ``icn_blob_bytes_total`` (a fixed set)."""


def cause_label(cause: str) -> str:
    """``cause`` as a metric label: itself when known, else ``other`` (a peer's request names
    the cause, so the label set must not grow with what peers send)."""
    return cause if cause in CAUSES else "other"


# Metric names in :class:`Count` (the driver owns the metric objects).
ANNOUNCES_RECEIVED = "announces_received"  # labels: kind (have, withdraw)
QUERIES_SENT = "queries_sent"  # kind (query, sync)
QUERIES_ANSWERED = "queries_answered"  # kind (query, sync)
DROPPED = "dropped"  # reason

_T = TypeVar("_T")

__all__ = [
    "ANNOUNCE_DELAY_S",
    "BYTES",
    "CAUSES",
    "Action",
    "Ask",
    "BlobCore",
    "BlobLocations",
    "Commit",
    "Count",
    "Discard",
    "Dropped",
    "Failed",
    "Forget",
    "ListStore",
    "Open",
    "Publish",
    "Request",
    "Send",
    "SizeConflict",
    "Write",
    "cause_label",
]


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Gossip this message on the blob topic."""

    msg: BlobHaveMsg | BlobWithdrawMsg | BlobQueryMsg | BlobSyncMsg


@dataclass(frozen=True, slots=True)
class Send:
    """Send this answer directly to ``to`` on the blob topic."""

    to: str
    msg: BlobHaveMsg


@dataclass(frozen=True, slots=True)
class ListStore:
    """A full announcement is due: list the store, hand it to :meth:`BlobCore.on_store_listed`."""


@dataclass(frozen=True, slots=True)
class SizeConflict:
    """``holder`` claims blob ``blob`` has ``size`` bytes, but another size is known. From a
    peer: ignored. From this node (``holder`` is us, the size verified): ours wins."""

    blob: bytes
    holder: str
    size: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message from ``origin`` was refused (counted and logged by the driver)."""

    origin: str
    reason: str


Action = (
    Publish
    | Send
    | ListStore
    | SizeConflict
    | Dropped
    | Request
    | Open
    | Write
    | Discard
    | Commit
    | Failed
    | Count
)


class _Budget:
    """At most ``per_key`` events per key and ``total`` in all per window (rate limits)."""

    def __init__(self, window_s: float, per_key: int, total: int) -> None:
        self.window_s, self.per_key, self.total = window_s, per_key, total
        self._start = -math.inf
        self._all = 0
        self._by_key: dict[str, int] = {}

    def take(self, key: str, now: float) -> str | None:
        """None if allowed (and counted), else why not: ``member`` or ``all``."""
        if now - self._start >= self.window_s:
            self._start, self._all, self._by_key = now, 0, {}
        if self._by_key.get(key, 0) >= self.per_key:
            return "member"
        if self._all >= self.total:
            return "all"
        self._all += 1
        self._by_key[key] = self._by_key.get(key, 0) + 1
        return None


class BlobCore:
    def __init__(
        self,
        did: str,
        locations: BlobLocations | None = None,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        rng: random.Random | None = None,
    ) -> None:
        self.did = did
        self.refresh_s = refresh_s
        self.locations = locations if locations is not None else BlobLocations(ttl_for(refresh_s))
        self.locations.set_ttl(did, math.inf)  # our own entries: until the store says otherwise
        self._rng = rng if rng is not None else random.Random(0)
        self._own: dict[bytes, int] = {}
        # announcements
        self._next_full: float | None = None  # None until start()
        self._batch_due: float | None = None
        self._unannounced: dict[bytes, int] = {}
        self._withdrawn: dict[bytes, None] = {}
        # coming online
        self._online = False
        self._peer_check_at: float | None = None
        self._sync_due: float | None = None
        # queries out, answers in
        self._query_due: float | None = None
        self._last_query = -math.inf
        self._to_ask: dict[bytes, None] = {}
        self._asked: dict[bytes, float] = {}
        self._answers = _Budget(ANSWER_WINDOW_S, ANSWERS_PER_WINDOW, ANSWERS_PER_WINDOW_ALL)
        self._syncs = _Budget(SYNC_GAP_S, 1, SYNCS_PER_WINDOW)
        self._sync_answers: list[tuple[float, str]] = []
        # fetches
        self._fetches: dict[int, Fetch] = {}
        self._last_fetch = 0

    # --- time ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._next_full = now

    def next_deadline(self) -> float:
        """When :meth:`on_timer` next has something to do (``inf``: nothing scheduled)."""
        times = [
            t
            for t in (
                self._next_full,
                self._batch_due,
                self._peer_check_at,
                self._sync_due,
                self._query_due,
            )
            if t is not None
        ]
        times.extend(due for due, _ in self._sync_answers)
        times.extend(f.next_deadline() for f in self._fetches.values())
        return min(times, default=math.inf)

    def on_timer(self, now: float, peers: int | None = None) -> list[Action]:
        """Whatever is due at ``now``. ``peers``: how many peers the mesh has linked now (the
        driver reads it; None when unknown)."""
        self.locations.tick(now)
        acts: list[Action] = []
        if peers is not None and self._next_full is not None:
            # The driver tells us its peer count: look again every PEER_CHECK_S.
            self._peer_check_at = now + PEER_CHECK_S
            if peers and not self._online:
                # Just online: tell the cooperative what we hold, and ask what it holds.
                self._sync_due = now + ONLINE_DELAY_S
                self._next_full = min(self._next_full, now + ONLINE_DELAY_S)
            self._online = peers > 0
        if self._next_full is not None and now >= self._next_full:
            self._next_full = now + self.refresh_s
            self._unannounced.clear()
            acts.append(ListStore())
        if self._batch_due is not None and now >= self._batch_due:
            self._batch_due = None
            acts += [Publish(self._have(b)) for b in _batches(list(self._unannounced.items()))]
            acts += [Publish(BlobWithdrawMsg(b)) for b in _batches(list(self._withdrawn))]
            self._unannounced.clear()
            self._withdrawn.clear()
        if self._sync_due is not None and now >= self._sync_due:
            self._sync_due = None
            acts += [Publish(BlobSyncMsg()), Count(QUERIES_SENT, ("sync",))]
        if self._query_due is not None and now >= self._query_due:
            acts += self._send_query(now)
        due = [origin for t, origin in self._sync_answers if now >= t]
        if due:
            self._sync_answers = [(t, o) for t, o in self._sync_answers if now < t]
            for origin in due:
                acts += self._answer_sync(origin)
        for f in list(self._fetches.values()):
            acts += self._fetch_acts(f, f.on_timer(now), now)
        return acts

    # --- our own blobs ---------------------------------------------------------------------

    def added(self, blob: bytes, size: int, now: float) -> list[Action]:
        """A blob is stored here (put, output, fetched): announced within ``ANNOUNCE_DELAY_S``."""
        acts = self._hold(blob, size, now)
        self._withdrawn.pop(blob, None)
        self._unannounced[blob] = size
        self._batch_soon(now)
        return acts

    def removed(self, blob: bytes, now: float) -> list[Action]:
        """A blob was removed from the store here: withdrawn within ``ANNOUNCE_DELAY_S``."""
        self._own.pop(blob, None)
        self._unannounced.pop(blob, None)
        self.locations.remove(blob, self.did)
        self._withdrawn[blob] = None
        self._batch_soon(now)
        return []

    def on_store_listed(self, items: Iterable[tuple[bytes, int]], now: float) -> list[Action]:
        """The store's (hash, size) listing, asked for by :class:`ListStore`: forget expired
        locations, refresh our own, withdraw what went missing, announce everything."""
        self.locations.expire(now)
        before, self._own = self._own, {}
        acts: list[Action] = []
        for h, size in items:
            acts += self._hold(h, size, now)
        gone = [h for h in before if h not in self._own]
        for h in gone:
            self.locations.remove(h, self.did)
        acts += [Publish(self._have(b)) for b in _batches(list(self._own.items()))]
        return acts + [Publish(BlobWithdrawMsg(b)) for b in _batches(gone)]

    def holds(self, blob: bytes) -> bool:
        return blob in self._own

    def _hold(self, blob: bytes, size: int, now: float) -> list[Action]:
        self._own[blob] = size
        known = self.locations.size(blob)
        self.locations.add(blob, self.did, size, now, authoritative=True)
        return [] if known in (None, size) else [SizeConflict(blob, self.did, size)]

    def _batch_soon(self, now: float) -> None:
        if self._batch_due is None:
            self._batch_due = now + ANNOUNCE_DELAY_S

    def _have(self, batch: tuple[tuple[bytes, int], ...]) -> BlobHaveMsg:
        return BlobHaveMsg(batch, self.refresh_s)

    # --- from peers ------------------------------------------------------------------------

    def on_message(self, origin: str, msg: Message, now: float) -> list[Action]:
        """A message on the blob topic other than a request to serve; ``origin`` is the mesh's
        authenticated sender."""
        self.locations.tick(now)
        if origin == self.did:
            return [Dropped(origin, "own")]
        match msg:
            case BlobHaveMsg() | BlobAnnounceMsg():
                return self._on_have(origin, msg, now)
            case BlobWithdrawMsg(blobs):
                for h in blobs:
                    self.locations.remove(h, origin)
                return [Count(ANNOUNCES_RECEIVED, ("withdraw",))]
            case BlobQueryMsg(blobs):
                return self._on_query(origin, blobs, now)
            case BlobSyncMsg():
                return self._on_sync(origin, now)
            case BlobChunkMsg() | BlobHashesMsg():
                f = self._fetches.get(msg.request_id >> SEQ_BITS)
                if f is None:
                    return []  # late: the fetch is over
                if isinstance(msg, BlobChunkMsg):
                    return self._fetch_acts(f, f.on_chunk(origin, msg, now), now)
                return self._fetch_acts(f, f.on_hashes(origin, msg, now), now)
        return [Dropped(origin, "unexpected")]

    def _on_have(self, origin: str, msg: BlobHaveMsg | BlobAnnounceMsg, now: float) -> list[Action]:
        refresh = msg.refresh_s if isinstance(msg, BlobHaveMsg) else LEGACY_REFRESH_S
        self.locations.set_ttl(origin, ttl_for(refresh))
        acts: list[Action] = [Count(ANNOUNCES_RECEIVED, ("have",))]
        wanted: dict[bytes, list[Fetch]] = {}
        for f in self._fetches.values():
            wanted.setdefault(f.blob, []).append(f)
        for h, size in msg.blobs:
            if not self.locations.add(h, origin, size, now):
                acts.append(SizeConflict(h, origin, size))
                continue
            for f in wanted.get(h, ()):
                acts += self._fetch_acts(f, f.found([origin], now), now)
        return acts

    def _on_query(self, origin: str, blobs: tuple[bytes, ...], now: float) -> list[Action]:
        held = tuple((h, self._own[h]) for h in blobs if h in self._own)
        if not held:
            return []
        refused = self._answers.take(origin, now)
        if refused is not None:
            return [Dropped(origin, f"query-rate-{refused}")]
        return [Send(origin, self._have(held)), Count(QUERIES_ANSWERED, ("query",))]

    def _on_sync(self, origin: str, now: float) -> list[Action]:
        refused = self._syncs.take(origin, now)
        if refused is not None:
            return [Dropped(origin, f"sync-rate-{refused}")]
        self._sync_answers.append((now + self._rng.uniform(0, SYNC_SPREAD_S), origin))
        return []

    def _answer_sync(self, origin: str) -> list[Action]:
        acts: list[Action] = [
            Send(origin, self._have(b)) for b in _batches(list(self._own.items()))
        ]
        if acts:
            acts.append(Count(QUERIES_ANSWERED, ("sync",)))
        return acts

    # --- asking the cooperative ------------------------------------------------------------

    def ask(self, blobs: Iterable[bytes], now: float) -> tuple[float, list[Action]]:
        """Ask the cooperative who holds ``blobs`` (batched, rate-limited, not again within
        ``QUERY_BACKOFF_S``); returns until when answers are worth waiting for."""
        acts: list[Action] = []
        for h in blobs:
            acts += self._want(h, now)
        start = self._query_due if self._query_due is not None else now
        return start + QUERY_WAIT_S, acts

    def _want(self, blob: bytes, now: float) -> list[Action]:
        asked = self._asked.get(blob)
        if (asked is not None and now - asked < QUERY_BACKOFF_S) or blob in self._to_ask:
            return []
        if len(self._to_ask) >= MAX_QUERY_BACKLOG:
            return [Count(DROPPED, ("query-backlog",))]
        self._to_ask[blob] = None
        if self._query_due is None:
            self._query_due = max(now, self._last_query + QUERY_GAP_S)
        return []

    def _send_query(self, now: float) -> list[Action]:
        batch = list(self._to_ask)[:MAX_QUERY_BLOBS]
        for h in batch:
            del self._to_ask[h]
            self._asked[h] = now
        if len(self._asked) > MAX_TRACKED:
            self._asked = {h: t for h, t in self._asked.items() if now - t < QUERY_BACKOFF_S}
        self._last_query = now
        self._query_due = now + QUERY_GAP_S if self._to_ask else None
        if not batch:
            return []
        return [Publish(BlobQueryMsg(tuple(batch))), Count(QUERIES_SENT, ("query",))]

    # --- fetches ---------------------------------------------------------------------------

    def fetch(
        self,
        blob: bytes,
        holders: list[str],
        now: float,
        *,
        cause: str = "other",
        estimates: Mapping[str, Estimate] | None = None,
    ) -> tuple[int, list[Action]]:
        """Start fetching ``blob`` from ``holders`` and the announced ones (never this node),
        best estimated first. Returns the fetch's id (named in its actions) and the first
        actions."""
        self._last_fetch += 1
        f = Fetch(self._last_fetch, blob, cause, self.locations.size(blob), dict(estimates or {}))
        self._fetches[f.id] = f
        known = [*holders, *self.locations.holders(blob)]
        return f.id, self._fetch_acts(f, f.start([d for d in known if d != self.did], now), now)

    def attempt_failed(self, fetch: int, error: str, now: float) -> list[Action]:
        """The driver's check at :class:`Commit` failed: the hash list lied; start over."""
        f = self._fetches.get(fetch)
        return self._fetch_acts(f, f.commit_failed(error, now), now) if f is not None else []

    def committed(self, fetch: int) -> None:
        """The blob is stored: the fetch is over (the driver also calls :meth:`added`)."""
        self._fetches.pop(fetch, None)

    def cancel(self, fetch: int) -> None:
        """The fetch is abandoned (its caller went away); late answers are ignored."""
        self._fetches.pop(fetch, None)

    def fetching(self) -> int:
        """How many fetches are in progress."""
        return len(self._fetches)

    def _fetch_acts(self, f: Fetch, acts: list[FetchAction], now: float) -> list[Action]:
        """A fetch's actions, with the core's part done: queries asked, locations forgotten,
        and the fetch dropped when it failed."""
        out: list[Action] = []
        for act in acts:
            if isinstance(act, Ask):
                out += self._want(act.blob, now)
            elif isinstance(act, Forget):
                self.locations.remove(act.blob, act.holder)
            else:
                if isinstance(act, Failed):
                    self._fetches.pop(f.id, None)
                out.append(act)
        return out


def _batches(items: list[_T]) -> list[tuple[_T, ...]]:
    """``items`` in runs of at most ``ANNOUNCE_BATCH`` (one message each)."""
    size = min(ANNOUNCE_BATCH, MAX_LIST_LEN)
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]
