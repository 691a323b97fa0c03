"""The decisions of blob transfer, sans-IO: who holds which blob, what to announce when, and the
bookkeeping of fetches. No trio, no clock, no disk, no logging.

:class:`BlobCore` is the one object the driver talks to. Events go in as method calls, each
taking ``now`` (the node's clock in seconds, supplied by the driver); what the driver must do
comes back as a list of actions, in order:

======================================  ===================================================
event                                   actions
======================================  ===================================================
``start(now)``                          (the first full announcement falls due at once)
``added(blob, size, now)``              :class:`SizeConflict`
``on_announce(origin, msg, now)``       :class:`SizeConflict`
``fetch(blob, holders, now)``           :class:`Request`, or :class:`Failed` (nobody to ask)
``on_chunk(origin, msg, now)``          :class:`Open`, :class:`Write`, :class:`Request`,
                                        :class:`Discard`, :class:`Commit`, :class:`Failed`
``attempt_failed(fetch, error, now)``   :class:`Discard`, :class:`Request`, :class:`Failed`
``on_timer(now)``                       :class:`ListStore`, :class:`Publish`, :class:`Request`
                                        (a re-send), :class:`Discard`, :class:`Failed`
``on_store_listed(items, now)``         :class:`SizeConflict`, :class:`Publish`
``committed(fetch)``, ``cancel(fetch)``  (the fetch is forgotten)
======================================  ===================================================

**Announcements.** A blob stored here is announced within ``ANNOUNCE_DELAY_S`` (blobs added
meanwhile ride the same batch); everything held is re-announced every ``REANNOUNCE_S``, the
first time at start. A full announcement needs the store's listing, which only the driver can
read: the core asks for it with :class:`ListStore` and goes on in :meth:`on_store_listed`.
Announcements go out in messages of at most ``ANNOUNCE_BATCH`` blobs.

**Fetches.** :meth:`fetch` tries the holders it is given, then the ones announced, skipping this
node, one after the other until one delivers. From a holder it asks for ``MAX_BLOB_CHUNK``
pieces: the first alone (its answer gives the blob's size), then windows of ``WINDOW`` requests
in flight; a window is written in order once all its pieces are in. Each request is re-sent
every ``REQUEST_RESEND_S`` until answered and fails the attempt after ``FETCH_TIMEOUT_S``
(so a holder that restarts mid-fetch is asked again, and one that stays quiet is given up on).
Only the holder asked may answer. An error, a wrong range, a gap or an overrun fails the
attempt: the partial file is discarded and the next holder is tried. When all bytes are
written the driver verifies and publishes the file (:class:`Commit`) and reports back:
:meth:`committed`, or :meth:`attempt_failed` when the SHA-256 did not match.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..scheduler import BlobLocation, BlobRegistry
from ..wire import MAX_BLOB_CHUNK, BlobAnnounceMsg, BlobChunkMsg, BlobRequestMsg

FETCH_TIMEOUT_S = 10.0
REQUEST_RESEND_S = 2.0
WINDOW = 4
ANNOUNCE_DELAY_S = 0.2
REANNOUNCE_S = 300.0
ANNOUNCE_BATCH = 200
LOCATION_TTL_S = 3 * REANNOUNCE_S


class BlobLocations:
    """Who holds which blob, as announced, with expiry; hands the scheduler an immutable
    :class:`BlobRegistry` snapshot (rebuilt only after a change)."""

    def __init__(self, ttl_s: float = LOCATION_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._held: dict[bytes, tuple[int, dict[str, float]]] = {}
        self._snapshot: BlobRegistry | None = BlobRegistry()

    def add(self, h: bytes, holder: str, size: int, now: float) -> bool:
        """Record that ``holder`` has blob ``h``; False (nothing recorded) when ``size``
        contradicts the size already known for ``h``."""
        known = self._held.get(h)
        if known is not None and known[0] != size:
            return False
        if known is None:
            known = self._held[h] = (size, {})
        if holder not in known[1]:
            self._snapshot = None
        known[1][holder] = now
        return True

    def holders(self, h: bytes) -> list[str]:
        entry = self._held.get(h)
        return sorted(entry[1]) if entry else []

    def expire(self, now: float) -> None:
        for h in list(self._held):
            size, seen = self._held[h]
            for did in [d for d, t in seen.items() if now - t > self.ttl_s]:
                del seen[did]
                self._snapshot = None
            if not seen:
                del self._held[h]

    def snapshot(self) -> BlobRegistry:
        if self._snapshot is None:
            self._snapshot = BlobRegistry(
                BlobLocation(h, did, size) for h, (size, seen) in self._held.items() for did in seen
            )
        return self._snapshot


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Gossip this announcement on the blob topic."""

    msg: BlobAnnounceMsg


@dataclass(frozen=True, slots=True)
class ListStore:
    """A full announcement is due: list the store, hand it to :meth:`BlobCore.on_store_listed`."""


@dataclass(frozen=True, slots=True)
class SizeConflict:
    """``holder`` claims blob ``blob`` has ``size`` bytes, but another size is known; ignored."""

    blob: bytes
    holder: str
    size: int


@dataclass(frozen=True, slots=True)
class Request:
    """Send this request directly to ``holder`` on the blob topic."""

    holder: str
    msg: BlobRequestMsg


@dataclass(frozen=True, slots=True)
class Open:
    """Open a writer for fetch ``fetch``: blob ``blob`` of ``size`` bytes."""

    fetch: int
    blob: bytes
    size: int


@dataclass(frozen=True, slots=True)
class Write:
    """Append ``data`` at ``offset`` to the fetch's writer (offsets come in order, no gaps)."""

    fetch: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Discard:
    """Throw away the fetch's partial file (the attempt failed; another may follow)."""

    fetch: int


@dataclass(frozen=True, slots=True)
class Commit:
    """Every byte is written: verify the SHA-256 and publish the blob, then report back."""

    fetch: int
    blob: bytes
    holder: str
    size: int


@dataclass(frozen=True, slots=True)
class Failed:
    """No holder delivered the blob; ``error`` says what each one did. The fetch is over."""

    fetch: int
    error: str


Action = Publish | ListStore | SizeConflict | Request | Open | Write | Discard | Commit | Failed


# --- fetch state --------------------------------------------------------------------------


@dataclass
class _Pending:
    """A request in flight: re-sent at ``resend_at``, given up on at ``give_up_at``."""

    msg: BlobRequestMsg
    give_up_at: float
    resend_at: float


@dataclass
class _Fetch:
    id: int
    blob: bytes
    candidates: list[str]  # holders still to try, in order
    errors: list[str] = field(default_factory=list)
    holder: str = ""  # the one being asked now
    size: int | None = None  # known (and a writer open) once the first piece is in
    written: int = 0
    todo: list[int] = field(default_factory=list)  # offsets not requested yet
    window: dict[int, bytes | None] = field(default_factory=dict)  # offset -> data when in
    pending: dict[int, _Pending] = field(default_factory=dict)  # by request id


class BlobCore:
    def __init__(self, did: str, locations: BlobLocations | None = None) -> None:
        self.did = did
        self.locations = locations if locations is not None else BlobLocations()
        self._next_full: float | None = None  # None until start()
        self._batch_due: float | None = None
        self._unannounced: dict[bytes, int] = {}
        self._fetches: dict[int, _Fetch] = {}
        self._requests: dict[int, int] = {}  # request id -> fetch id
        self._last_request = 0
        self._last_fetch = 0

    # --- time ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._next_full = now

    def next_deadline(self) -> float:
        """When :meth:`on_timer` next has something to do (``inf``: nothing scheduled)."""
        times = [t for t in (self._next_full, self._batch_due) if t is not None]
        for f in self._fetches.values():
            times.extend(min(p.give_up_at, p.resend_at) for p in f.pending.values())
        return min(times, default=math.inf)

    def on_timer(self, now: float) -> list[Action]:
        acts: list[Action] = []
        if self._next_full is not None and now >= self._next_full:
            self._next_full = now + REANNOUNCE_S
            self._unannounced.clear()
            self._batch_due = None
            acts.append(ListStore())
        elif self._batch_due is not None and now >= self._batch_due:
            batch = list(self._unannounced.items())
            self._unannounced.clear()
            self._batch_due = None
            acts += _announce(batch)
        for f in list(self._fetches.values()):
            acts += self._fetch_timer(f, now)
        return acts

    # --- announcements ---------------------------------------------------------------------

    def added(self, blob: bytes, size: int, now: float) -> list[Action]:
        """A blob was stored here: it is announced within ``ANNOUNCE_DELAY_S``."""
        acts = self._locate(blob, self.did, size, now)
        self._unannounced[blob] = size
        if self._batch_due is None:
            self._batch_due = now + ANNOUNCE_DELAY_S
        return acts

    def on_store_listed(self, items: Iterable[tuple[bytes, int]], now: float) -> list[Action]:
        """The store's (hash, size) listing, asked for by :class:`ListStore`: forget expired
        locations, refresh our own, announce everything."""
        self.locations.expire(now)
        batch = list(items)
        acts: list[Action] = []
        for h, size in batch:
            acts += self._locate(h, self.did, size, now)
        return acts + _announce(batch)

    def on_announce(self, origin: str, msg: BlobAnnounceMsg, now: float) -> list[Action]:
        """A peer's announcement; ``origin`` is the mesh's authenticated sender."""
        acts: list[Action] = []
        for h, size in msg.blobs:
            acts += self._locate(h, origin, size, now)
        return acts

    def _locate(self, blob: bytes, holder: str, size: int, now: float) -> list[Action]:
        if self.locations.add(blob, holder, size, now):
            return []
        return [SizeConflict(blob, holder, size)]

    # --- fetches ---------------------------------------------------------------------------

    def fetch(self, blob: bytes, holders: list[str], now: float) -> tuple[int, list[Action]]:
        """Start fetching ``blob``: from ``holders`` first, then from those announced.
        Returns the fetch's id (named in its actions) and the first actions."""
        self._last_fetch += 1
        announced = [d for d in self.locations.holders(blob) if d not in holders]
        candidates = [d for d in holders + announced if d != self.did]
        f = self._fetches[self._last_fetch] = _Fetch(self._last_fetch, blob, candidates)
        return f.id, self._next_holder(f, now)

    def on_chunk(self, origin: str, msg: BlobChunkMsg, now: float) -> list[Action]:
        fid = self._requests.get(msg.request_id)
        f = self._fetches.get(fid) if fid is not None else None
        if f is None or origin != f.holder:
            return []  # late (a re-sent request answered twice), or not from whom we asked
        asked = f.pending.pop(msg.request_id).msg
        del self._requests[msg.request_id]
        if msg.error:
            return self._fail_attempt(f, msg.error, now)
        if msg.blob != f.blob or msg.offset != asked.offset:
            return self._fail_attempt(f, "holder answered with the wrong range", now)
        if f.size is None:
            return self._first_piece(f, msg, now)
        f.window[msg.offset] = msg.data
        return [] if f.pending else self._write_window(f, now)

    def attempt_failed(self, fetch: int, error: str, now: float) -> list[Action]:
        """The driver could not finish this attempt (the bytes failed verification at commit,
        or the writer refused them): try the next holder."""
        f = self._fetches.get(fetch)
        return self._fail_attempt(f, error, now) if f is not None else []

    def committed(self, fetch: int) -> None:
        """The blob is stored: the fetch is over."""
        self._fetches.pop(fetch, None)

    def cancel(self, fetch: int) -> None:
        """The fetch is abandoned (its caller went away); late answers are ignored."""
        f = self._fetches.pop(fetch, None)
        if f is not None:
            for rid in f.pending:
                del self._requests[rid]

    def fetching(self) -> int:
        """How many fetches are in progress."""
        return len(self._fetches)

    def _next_holder(self, f: _Fetch, now: float) -> list[Action]:
        for rid in f.pending:
            del self._requests[rid]
        f.pending.clear()
        f.window.clear()
        f.todo.clear()
        f.size = None
        f.written = 0
        if not f.candidates:
            del self._fetches[f.id]
            why = "; ".join(f.errors) or "no holder"
            return [Failed(f.id, f"blob {f.blob.hex()} could not be fetched ({why})")]
        f.holder = f.candidates.pop(0)
        return [self._request(f, 0, now)]

    def _fail_attempt(self, f: _Fetch, error: str, now: float) -> list[Action]:
        f.errors.append(f"{f.holder}: {error}")
        acts: list[Action] = [Discard(f.id)] if f.size is not None else []
        return acts + self._next_holder(f, now)

    def _request(self, f: _Fetch, offset: int, now: float) -> Request:
        self._last_request += 1
        rid = self._last_request
        msg = BlobRequestMsg(rid, f.blob, offset, MAX_BLOB_CHUNK)
        f.pending[rid] = _Pending(msg, now + FETCH_TIMEOUT_S, now + REQUEST_RESEND_S)
        self._requests[rid] = f.id
        return Request(f.holder, msg)

    def _fetch_timer(self, f: _Fetch, now: float) -> list[Action]:
        if any(now >= p.give_up_at for p in f.pending.values()):
            return self._fail_attempt(f, f"no answer within {FETCH_TIMEOUT_S:g} s", now)
        acts: list[Action] = []
        for p in f.pending.values():
            if now >= p.resend_at:
                p.resend_at = now + REQUEST_RESEND_S
                acts.append(Request(f.holder, p.msg))
        return acts

    def _first_piece(self, f: _Fetch, msg: BlobChunkMsg, now: float) -> list[Action]:
        if len(msg.data) > msg.size:
            return self._fail_attempt(f, f"chunks exceed the announced size {msg.size}", now)
        if msg.size and not msg.data:
            return self._fail_attempt(f, "holder sent an empty first chunk", now)
        f.size = msg.size
        f.written = len(msg.data)
        f.todo = list(range(f.written, f.size, MAX_BLOB_CHUNK))
        acts: list[Action] = [Open(f.id, f.blob, f.size), Write(f.id, 0, msg.data)]
        return acts + self._next_window(f, now)

    def _write_window(self, f: _Fetch, now: float) -> list[Action]:
        assert f.size is not None
        writes: list[Action] = []
        at = f.written
        for offset, data in sorted(f.window.items()):
            assert data is not None
            if offset != at:
                return self._fail_attempt(f, f"chunk at offset {offset}, expected {at}", now)
            if at + len(data) > f.size:
                return self._fail_attempt(f, f"chunks exceed the announced size {f.size}", now)
            writes.append(Write(f.id, offset, data))
            at += len(data)
        f.written = at
        f.window.clear()
        return writes + self._next_window(f, now)

    def _next_window(self, f: _Fetch, now: float) -> list[Action]:
        assert f.size is not None
        if not f.todo:
            if f.written != f.size:
                return self._fail_attempt(f, f"blob incomplete: {f.written} of {f.size} bytes", now)
            return [Commit(f.id, f.blob, f.holder, f.size)]
        offsets, f.todo = f.todo[:WINDOW], f.todo[WINDOW:]
        f.window = dict.fromkeys(offsets)
        return [self._request(f, off, now) for off in offsets]


def _announce(batch: list[tuple[bytes, int]]) -> list[Action]:
    return [
        Publish(BlobAnnounceMsg(tuple(batch[i : i + ANNOUNCE_BATCH])))
        for i in range(0, len(batch), ANNOUNCE_BATCH)
    ]
