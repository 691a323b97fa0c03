"""One fetch of one blob from the holders that have it, sans-IO: :class:`Fetch`.

:class:`~icn_node.blobs.core.BlobCore` owns the fetches and routes answers to them; a fetch
returns actions like the core's (it never touches a disk or a clock).

**Pieces and their hashes.** A blob travels in pieces of ``MAX_BLOB_CHUNK`` (256 KiB). Its name
is the SHA-256 of the whole, which says nothing about a single piece, so a fetch first asks one
holder, the *list source*, for the size and the SHA-256 of every piece (``blob_hashes``; a
holder computes the list from its verified copy). Each piece is then checked on arrival. A blob
of one piece needs no list: the piece's hash is the blob's name, and when its size is known
from an announcement the fetch asks for the piece at once.

**Several holders at once.** Holders are ranked by estimated transfer time (RTT + size /
bandwidth, with defaults for what is unknown). The best ``MAX_SOURCES`` whose estimate is within
``SOURCE_SPREAD`` times the best one's are asked at once, each with up to ``WINDOW`` requests
in flight; every free slot takes the lowest piece nobody has been asked for, so a faster holder
serves more pieces. Verified pieces wait in memory until the ones before them are in, at most
``AHEAD`` pieces past the write point, and are written in order. A request unanswered after
``REQUEST_RESEND_S`` is re-sent and, when another holder has a free slot (or a holder not yet
asked can be added), also asked of that one: whichever answers first wins, so one slow or dead
holder does not stall the others. The late holder is *stalled*: it gets no new pieces (while
another holder is there to ask) until it answers again. A holder that leaves a request
unanswered for ``FETCH_TIMEOUT_S`` (``HASHES_TIMEOUT_S`` for a hash list, which may need a whole
read of a large blob) is given up on; its pieces go to the others, the pieces already in are
kept.
When no holder is left, the fetch asks the cooperative once who else holds the blob
(:class:`Ask`) and waits ``QUERY_WAIT_S`` for answers before it fails.

**Who is to blame.** Only the holder asked may answer a request. A piece that does not match the
list, or a size that contradicts it, makes its sender a *suspect*: it is dropped from this fetch
and its pieces go to others. If the list source itself sends a piece that does not match its own
list, it lied: it is out, the partial file is discarded, the suspects are cleared and the fetch
starts again with a list from the next holder. If every piece matched the list but the whole does
not hash to the name (the driver's check at :class:`Commit`), the list was wrong: the list source
is out and the fetch starts again in the same way. A peer can waste time; it cannot plant bytes.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..wire import (
    MAX_BLOB_CHUNK,
    MAX_HASHES,
    BlobChunkMsg,
    BlobFetchMsg,
    BlobHashesMsg,
    BlobHashesRequestMsg,
)

WINDOW = 4
MAX_SOURCES = 4
AHEAD = 32
SOURCE_SPREAD = 3.0
REQUEST_RESEND_S = 2.0
FETCH_TIMEOUT_S = 10.0
HASHES_TIMEOUT_S = 30.0
QUERY_WAIT_S = 3.0
DEFAULT_RTT_MS = 200.0
DEFAULT_MBPS = 100.0
SIZE_GUESS = 1 << 20
"""Bytes assumed for ranking holders when the size is not known yet."""
SEQ_BITS = 24
"""A request id is ``fetch id << SEQ_BITS | sequence``: the core routes answers by it."""

EMPTY_SHA256 = hashlib.sha256(b"").digest()

Estimate = tuple[float | None, float | None]
"""(RTT in ms, bandwidth in Mbit/s) to a holder; None where unknown."""


def estimated_seconds(size: int, estimate: Estimate) -> float:
    """RTT + size / bandwidth, with :data:`DEFAULT_RTT_MS` and :data:`DEFAULT_MBPS` for what is
    unknown."""
    rtt_ms, mbps = estimate
    rtt = DEFAULT_RTT_MS if rtt_ms is None else rtt_ms
    bw = DEFAULT_MBPS if mbps is None or mbps <= 0 else mbps
    return rtt / 1000.0 + size * 8 / (bw * 1e6)


def pieces(size: int) -> int:
    return -(-size // MAX_BLOB_CHUNK)


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """Send this request directly to ``holder`` on the blob topic."""

    holder: str
    msg: BlobFetchMsg | BlobHashesRequestMsg


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
    """Throw away the fetch's partial file (the fetch starts over, or ends)."""

    fetch: int


@dataclass(frozen=True, slots=True)
class Commit:
    """Every byte is written: verify the SHA-256 and publish the blob, then report back
    (:meth:`BlobCore.committed` or :meth:`BlobCore.attempt_failed`). ``transfers``:
    ``(holder, bytes, seconds)`` for each holder that delivered verified pieces; ``hashes``:
    the piece hashes (32 bytes each), for serving the blob on."""

    fetch: int
    blob: bytes
    size: int
    transfers: tuple[tuple[str, int, float], ...]
    hashes: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    """No holder delivered the blob; ``error`` says what each one did. The fetch is over."""

    fetch: int
    error: str


@dataclass(frozen=True, slots=True)
class Ask:
    """Every known holder failed: ask the cooperative who else holds ``blob``."""

    blob: bytes


@dataclass(frozen=True, slots=True)
class Forget:
    """``holder`` says it does not have ``blob``: drop the location."""

    blob: bytes
    holder: str


@dataclass(frozen=True, slots=True)
class Count:
    """Add ``n`` to the metric ``metric`` with these label values."""

    metric: str
    labels: tuple[str, ...] = ()
    n: float = 1


FetchAction = Request | Open | Write | Discard | Commit | Failed | Ask | Forget | Count

BYTES = "bytes"
"""Metric: blob bytes moved, labelled (direction, cause)."""


# --- state --------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A request in flight: re-sent at ``resend_at``, given up on at ``give_up_at``."""

    holder: str
    msg: BlobFetchMsg | BlobHashesRequestMsg
    piece: int  # -1 for a hash-list request
    give_up_at: float
    resend_at: float


@dataclass
class _Source:
    """A holder being asked, and what it delivered (for the transfer report)."""

    inflight: int = 0
    nbytes: int = 0
    first_at: float | None = None
    last_at: float = 0.0
    stalled: bool = False  # a request went unanswered past a re-send: no new pieces for now


@dataclass
class Fetch:
    id: int
    blob: bytes
    cause: str
    size_hint: int | None
    estimates: dict[str, Estimate] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)  # not asked yet, best first
    failed: dict[str, str] = field(default_factory=dict)  # out of this fetch, and why
    suspects: dict[str, str] = field(default_factory=dict)  # out while the list stands
    errors: list[str] = field(default_factory=list)
    sources: dict[str, _Source] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    size: int | None = None
    hashes: list[bytes] | None = None  # complete list, once known
    hash_pages: list[bytes] = field(default_factory=list)  # while it is being received
    list_source: str | None = None  # "" when the blob's name is its only piece's hash
    opened: bool = False
    todo: list[int] = field(default_factory=list)  # heap of pieces nobody was asked for
    have: dict[int, bytes] = field(default_factory=dict)  # verified, waiting to be written
    next_write: int = 0
    asked_cooperative: bool = False
    asking_until: float | None = None
    committing: bool = False
    seq: int = 0

    # --- events ----------------------------------------------------------------------------

    def start(self, holders: Iterable[str], now: float) -> list[FetchAction]:
        self.learn(holders)
        if self.size_hint is not None and 0 < self.size_hint <= MAX_BLOB_CHUNK:
            # One piece whose hash is the blob's name: no list needed.
            self.size, self.hashes, self.list_source = self.size_hint, [self.blob], ""
            return self._begin_pieces(now)
        return self._proceed(now)

    def learn(self, holders: Iterable[str]) -> bool:
        """More holders: they join the candidates (ranked); True if any was new."""
        new = False
        for did in holders:
            if (
                did in self.failed
                or did in self.suspects
                or did in self.sources
                or did in self.candidates
            ):
                continue
            self.candidates.append(did)
            new = True
        if new:
            self.candidates.sort(key=self._eta)
        return new

    def found(self, holders: Iterable[str], now: float) -> list[FetchAction]:
        """Holders learned from announcements or answers while the fetch runs."""
        if not self.learn(holders) or self.committing:
            return []
        self.asking_until = None
        return self._proceed(now)

    def on_chunk(self, origin: str, msg: BlobChunkMsg, now: float) -> list[FetchAction]:
        p = self.pending.get(msg.request_id)
        if p is None or p.holder != origin or p.piece < 0:
            return []  # late (answered twice, or by a hedge), or not from whom we asked
        self._settle(msg.request_id, requeue=False)
        acts: list[FetchAction] = [Count(BYTES, ("in", self.cause), len(msg.data))]
        return acts + self._piece(origin, p.piece, msg, now)

    def _piece(self, origin: str, piece: int, msg: BlobChunkMsg, now: float) -> list[FetchAction]:
        assert self.size is not None and self.hashes is not None
        if piece < self.next_write or piece in self.have:
            return self._fill(now)  # a hedged piece that came in twice
        offset = piece * MAX_BLOB_CHUNK
        want = min(MAX_BLOB_CHUNK, self.size - offset)
        if msg.error or msg.blob != self.blob or msg.offset != offset:
            self._requeue(piece)
            why = msg.error or "answered with the wrong range"
            return self._fail(origin, why, now, forget=bool(msg.error))
        if msg.size != self.size and self.list_source == "":
            # The announced size was wrong: ask this holder for the size and the list.
            return self._restart(now, first=origin)
        if msg.size != self.size:
            why = f"says the blob has {msg.size} bytes, not {self.size}"
        elif len(msg.data) != want:
            why = f"sent {len(msg.data)} bytes of piece {piece}, not {want}"
        elif hashlib.sha256(msg.data).digest() != self.hashes[piece]:
            why = f"piece {piece} does not match its hash"
        else:
            src = self.sources[origin]
            src.nbytes += len(msg.data)
            src.last_at = now
            src.stalled = False
            self.have[piece] = msg.data
            for rid in [r for r, q in self.pending.items() if q.piece == piece]:
                self._settle(rid, requeue=False)  # the hedge's twin: its answer is ignored
            return self._write(now)
        self._requeue(piece)
        return self._blame(origin, why, now)

    def on_hashes(self, origin: str, msg: BlobHashesMsg, now: float) -> list[FetchAction]:
        p = self.pending.get(msg.request_id)
        if p is None or p.holder != origin or p.piece >= 0:
            return []
        assert isinstance(p.msg, BlobHashesRequestMsg)
        self._settle(msg.request_id)
        if msg.error:
            return self._fail(origin, msg.error, now, forget=True)
        first = p.msg.first
        if msg.blob != self.blob or msg.first != first:
            return self._fail(origin, "answered with the wrong range", now)
        if first and msg.size != self.size:
            return self._fail(origin, "changed the blob's size between pages", now)
        n = pieces(msg.size)
        got = msg.hash_list()
        if len(got) != max(0, min(MAX_HASHES, n - first)):
            return self._fail(origin, f"sent {len(got)} hashes from piece {first} of {n}", now)
        if n <= 1 and (got[:1] != [self.blob] if n else self.blob != EMPTY_SHA256):
            return self._fail(origin, "its hash list contradicts the blob's name", now)
        for rid in [r for r, q in self.pending.items() if q.piece < 0]:
            self._settle(rid)  # a hedged list request: this answer came first
        self.size = msg.size
        self.hash_pages.extend(got)
        if len(self.hash_pages) < n:
            return [self._ask_hashes(origin, len(self.hash_pages), now)]
        self.hashes, self.hash_pages = self.hash_pages, []
        self.list_source = origin
        return self._begin_pieces(now)

    def on_timer(self, now: float) -> list[FetchAction]:
        acts: list[FetchAction] = []
        for rid in list(self.pending):
            p = self.pending.get(rid)
            if p is None:
                continue  # settled by a holder given up on just now
            if now >= p.give_up_at:
                timeout = HASHES_TIMEOUT_S if p.piece < 0 else FETCH_TIMEOUT_S
                acts += self._fail(p.holder, f"no answer within {timeout:g} s", now)
            elif now >= p.resend_at:
                p.resend_at = now + REQUEST_RESEND_S
                acts.append(Request(p.holder, p.msg))
                if p.piece >= 0:
                    self.sources[p.holder].stalled = True
                acts += (
                    self._hedge(p.piece, p.holder, now) if p.piece >= 0 else self._hedge_list(now)
                )
        if self.asking_until is not None and now >= self.asking_until:
            self.asking_until = None
            acts += self._exhausted(now)
        return acts

    def commit_failed(self, error: str, now: float) -> list[FetchAction]:
        """Every piece matched the list but the whole does not match the name: the list lied."""
        self.committing = False
        source = self.list_source
        if not source:
            return self._failed(error)
        self.errors.append(f"{source}: its hash list does not add up to the blob ({error})")
        self.failed[source] = "bad hash list"
        self.sources.pop(source, None)
        return self._restart(now)

    def next_deadline(self) -> float:
        times = [min(p.give_up_at, p.resend_at) for p in self.pending.values()]
        if self.asking_until is not None:
            times.append(self.asking_until)
        return min(times, default=math.inf)

    # --- the plan --------------------------------------------------------------------------

    def _proceed(self, now: float) -> list[FetchAction]:
        if self.committing:
            return []
        if self.hashes is not None:
            return self._fill(now)
        if any(p.piece < 0 for p in self.pending.values()):
            return []  # a list is on its way
        if not self.candidates:
            return self._exhausted(now)
        holder = self.candidates.pop(0)
        self.sources[holder] = _Source()
        self.hash_pages = []
        return [self._ask_hashes(holder, 0, now)]

    def _begin_pieces(self, now: float) -> list[FetchAction]:
        assert self.size is not None and self.hashes is not None
        self.todo = list(range(len(self.hashes)))
        self.opened = True
        acts: list[FetchAction] = [Open(self.id, self.blob, self.size)]
        return acts + self._write(now)

    def _fill(self, now: float) -> list[FetchAction]:
        """Add holders as sources, then give every free slot the lowest piece not asked for."""
        if self.committing:
            return []
        best = min((self._eta(d) for d in (*self.sources, *self.candidates[:1])), default=0.0)
        while self.candidates and len(self._serving()) < MAX_SOURCES:
            if self._serving() and self._eta(self.candidates[0]) > SOURCE_SPREAD * best:
                break
            self.sources[self.candidates.pop(0)] = _Source()
        if not self.sources:
            return self._exhausted(now)
        acts: list[FetchAction] = []
        # A stalled holder holds up the write point: it gets new pieces only when no other
        # holder is left to ask.
        for did in sorted(self._serving() or self.sources, key=self._eta):
            src = self.sources[did]
            while src.inflight < WINDOW and self.todo and self.todo[0] < self.next_write + AHEAD:
                acts.append(self._ask_piece(did, heapq.heappop(self.todo), now))
        return acts

    def _hedge(self, piece: int, slow: str, now: float) -> list[FetchAction]:
        """``piece`` is overdue at ``slow``: ask it of another holder too (once)."""
        if sum(1 for p in self.pending.values() if p.piece == piece) > 1:
            return []
        assert self.size is not None
        free = [d for d in self._serving() if d != slow and self.sources[d].inflight < WINDOW]
        if not free and self.candidates and len(self._serving()) < MAX_SOURCES:
            did = self.candidates.pop(0)
            self.sources[did] = _Source()
            free = [did]
        if not free:
            return []
        did = min(free, key=self._eta)
        return [self._ask_piece(did, piece, now)]

    def _serving(self) -> list[str]:
        """The sources that are not stalled."""
        return [d for d, s in self.sources.items() if not s.stalled]

    def _hedge_list(self, now: float) -> list[FetchAction]:
        """The first page of the list is overdue: ask the next holder for it too (once)."""
        if self.hash_pages or not self.candidates:
            return []
        if sum(1 for p in self.pending.values() if p.piece < 0) > 1:
            return []
        holder = self.candidates.pop(0)
        self.sources[holder] = _Source()
        return [self._ask_hashes(holder, 0, now)]

    def _write(self, now: float) -> list[FetchAction]:
        assert self.hashes is not None
        acts: list[FetchAction] = []
        while self.next_write in self.have:
            data = self.have.pop(self.next_write)
            acts.append(Write(self.id, self.next_write * MAX_BLOB_CHUNK, data))
            self.next_write += 1
        if self.next_write == len(self.hashes):
            return acts + self._commit()
        return acts + self._fill(now)

    def _commit(self) -> list[FetchAction]:
        assert self.size is not None and self.hashes is not None
        self.committing = True
        for rid in list(self.pending):
            self._settle(rid)
        transfers = tuple(
            (did, s.nbytes, max(1e-6, s.last_at - s.first_at))
            for did, s in sorted(self.sources.items())
            if s.nbytes and s.first_at is not None
        )
        return [Commit(self.id, self.blob, self.size, transfers, b"".join(self.hashes))]

    # --- failures --------------------------------------------------------------------------

    def _fail(
        self, holder: str, why: str, now: float, *, forget: bool = False
    ) -> list[FetchAction]:
        """``holder`` is out of this fetch for good: an error, a timeout, a bad answer."""
        self.errors.append(f"{holder}: {why}")
        self.failed[holder] = why
        self._drop(holder)
        acts: list[FetchAction] = [Forget(self.blob, holder)] if forget else []
        return acts + self._proceed(now)

    def _blame(self, holder: str, why: str, now: float) -> list[FetchAction]:
        """``holder``'s answer contradicts the list (or, without a list, the name)."""
        if self.list_source in ("", holder):
            if holder == self.list_source:
                self.errors.append(f"{holder}: {why} (its own hash list)")
                self.failed[holder] = why
                self._drop(holder)
                return self._restart(now)
            return self._fail(holder, why, now)
        self.errors.append(f"{holder}: {why} (per the hash list from {self.list_source})")
        self.suspects[holder] = why
        self._drop(holder)
        return self._proceed(now)

    def _restart(self, now: float, first: str | None = None) -> list[FetchAction]:
        """The list is void: discard everything and start again with a new list source."""
        acts: list[FetchAction] = [Discard(self.id)] if self.opened else []
        back = [d for d in (*self.sources, *self.suspects) if d != first]
        for rid in list(self.pending):
            self._settle(rid)
        self.sources.clear()
        self.suspects.clear()
        self.size = self.hashes = self.list_source = None
        self.hash_pages, self.todo, self.have = [], [], {}
        self.next_write, self.opened = 0, False
        self.learn(back)
        if first is not None:
            self.candidates.insert(0, first)
        return acts + self._proceed(now)

    def _exhausted(self, now: float) -> list[FetchAction]:
        if not self.asked_cooperative:
            self.asked_cooperative = True
            self.asking_until = now + QUERY_WAIT_S
            return [Ask(self.blob)]
        if self.asking_until is not None:
            return []
        return self._failed(f"asked the cooperative, no other holder within {QUERY_WAIT_S:g} s")

    def _failed(self, last: str) -> list[FetchAction]:
        for rid in list(self.pending):
            self._settle(rid)
        why = "; ".join([*self.errors, last]) if self.errors else f"no holder; {last}"
        acts: list[FetchAction] = [Discard(self.id)] if self.opened else []
        self.opened = False
        return acts + [Failed(self.id, f"blob {self.blob.hex()} could not be fetched ({why})")]

    # --- requests --------------------------------------------------------------------------

    def _drop(self, holder: str) -> None:
        """``holder`` is asked no more; its pieces go back to be asked of others."""
        self.sources.pop(holder, None)
        for rid, p in list(self.pending.items()):
            if p.holder == holder:
                self._settle(rid)

    def _settle(self, rid: int, *, requeue: bool = True) -> None:
        """Request ``rid`` needs no answer any more; its piece is asked again unless covered."""
        p = self.pending.pop(rid)
        src = self.sources.get(p.holder)
        if src is not None and p.piece >= 0:
            src.inflight -= 1
        if requeue and p.piece >= 0:
            self._requeue(p.piece)

    def _requeue(self, piece: int) -> None:
        """``piece`` goes back to be asked for, unless it is in or asked of someone."""
        if (
            not self.committing
            and self.hashes is not None
            and piece >= self.next_write
            and piece not in self.have
            and piece not in self.todo
            and all(q.piece != piece for q in self.pending.values())
        ):
            heapq.heappush(self.todo, piece)

    def _next_rid(self) -> int:
        self.seq += 1
        return (self.id << SEQ_BITS) | (self.seq & ((1 << SEQ_BITS) - 1))

    def _ask_piece(self, holder: str, piece: int, now: float) -> Request:
        assert self.size is not None
        offset = piece * MAX_BLOB_CHUNK
        length = min(MAX_BLOB_CHUNK, self.size - offset)
        msg = BlobFetchMsg(self._next_rid(), self.blob, offset, length, self.cause)
        src = self.sources[holder]
        src.inflight += 1
        if src.first_at is None:
            src.first_at = now
        self.pending[msg.request_id] = _Pending(
            holder, msg, piece, now + FETCH_TIMEOUT_S, now + REQUEST_RESEND_S
        )
        return Request(holder, msg)

    def _ask_hashes(self, holder: str, first: int, now: float) -> Request:
        msg = BlobHashesRequestMsg(self._next_rid(), self.blob, first)
        self.pending[msg.request_id] = _Pending(
            holder, msg, -1, now + HASHES_TIMEOUT_S, now + REQUEST_RESEND_S
        )
        return Request(holder, msg)

    # --- ranking ---------------------------------------------------------------------------

    def _eta(self, did: str) -> float:
        """Estimated seconds to fetch the whole blob from ``did`` alone."""
        size = self.size if self.size is not None else self.size_hint
        estimate = self.estimates.get(did, (None, None))
        return estimated_seconds(SIZE_GUESS if size is None else size, estimate)
