"""Blobs between nodes: a thin trio driver around :class:`~icn_node.blobs.core.BlobCore`.

:class:`BlobService` owns what the core may not touch: the mesh subscription to ``icn/blob``,
the store on disk, the clock, the metrics and the tasks. Everything on that topic arrives here:
requests for pieces and hash lists are served from the store; everything else goes to the core.
What the core decides comes back as actions, carried out by :meth:`BlobService._run`: requests,
answers and announcements go out on the mesh, pieces are written into a
:class:`~icn_node.blobs.store.BlobWriter`, and a finished fetch is verified and published in a
worker thread by the task that asked for it (:meth:`BlobService.ensure`). One timer task sleeps
until the core's next deadline and calls ``on_timer(now, peers)``.

A peer can waste our time but never plant wrong bytes: a blob becomes visible only when its
SHA-256 matches its name.

**Serving hash lists.** A ``blob_hashes_request`` needs the SHA-256 of every piece: the list is
computed by one read of the blob (in the event loop up to ``HASH_INLINE_BYTES``, else in a
worker thread, at most ``MAX_HASHING`` at once; further requests are dropped and re-sent by
their requester) and kept in a cache of at most ``HASH_CACHE_BYTES``; a blob fetched here
brings its verified list along.

The compute service uses :meth:`ensure`, :meth:`added`, :attr:`locations` (``holders`` and
``snapshot``), :attr:`store`, :attr:`served_bytes` and :attr:`fetched_bytes`; ``icnctl blob rm``
calls :meth:`removed`.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections import OrderedDict
from collections.abc import Callable

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import CodecError
from ..logs import get_logger
from ..wire import (
    BLOB_TOPIC,
    MAX_BLOB_CHUNK,
    MAX_HASHES,
    BlobAnnounceMsg,
    BlobChunkMsg,
    BlobFetchMsg,
    BlobHashesMsg,
    BlobHashesRequestMsg,
    BlobHaveMsg,
    BlobRequestMsg,
    decode_message,
    encode_message,
)
from .core import (
    ANNOUNCES_RECEIVED,
    BYTES,
    DROPPED,
    LOCATE_GRACE_S,
    QUERIES_ANSWERED,
    QUERIES_SENT,
    Action,
    BlobCore,
    BlobLocations,
    Commit,
    Count,
    Discard,
    Dropped,
    Failed,
    ListStore,
    Open,
    Publish,
    Request,
    Send,
    SizeConflict,
    Write,
    cause_label,
)
from .locations import DEFAULT_REFRESH_S
from .store import BlobError, BlobStore, BlobWriter
from .transfer import Estimate

log = get_logger("icn.blobs")

MAX_HASHING = 4
HASH_INLINE_BYTES = 8 << 20
"""A blob up to this size is hashed in the event loop (a few ms); a larger one in a thread."""
HASH_CACHE_BYTES = 8 << 20
LOOKUPS = "lookups"
FETCHES = "fetches"


class BlobMetrics:
    """The blob service's metrics; no per-peer labels, causes from a fixed set."""

    def __init__(self, registry: CollectorRegistry, locations: BlobLocations) -> None:
        g = Gauge(
            "icn_blob_locations",
            "(blob, holder) locations this node knows (expired ones until the next sweep).",
            registry=registry,
        )
        g.set_function(lambda: len(locations))
        b = Gauge("icn_blob_known", "Blobs with at least one known location.", registry=registry)
        b.set_function(lambda: locations.blob_count)
        self.counters: dict[str, Counter] = {
            ANNOUNCES_RECEIVED: Counter(
                "icn_blob_announces_received_total",
                "Announcements received: kind=have (holdings) or withdraw.",
                ["kind"],
                registry=registry,
            ),
            QUERIES_SENT: Counter(
                "icn_blob_queries_sent_total",
                "Queries sent: kind=query (who holds X) or sync (send me your holdings).",
                ["kind"],
                registry=registry,
            ),
            QUERIES_ANSWERED: Counter(
                "icn_blob_queries_answered_total",
                "Queries this node answered, by kind.",
                ["kind"],
                registry=registry,
            ),
            LOOKUPS: Counter(
                "icn_blob_lookups_total",
                "Location lookups by ensure/locate: result=local (held here), hit (a holder "
                "known), miss (none known).",
                ["op", "result"],
                registry=registry,
            ),
            FETCHES: Counter(
                "icn_blob_fetches_total",
                "Fetches that ended, by result.",
                ["result"],
                registry=registry,
            ),
            BYTES: Counter(
                "icn_blob_bytes_total",
                "Blob bytes moved (piece data), by direction (in, out) and cause.",
                ["direction", "cause"],
                registry=registry,
            ),
            DROPPED: Counter(
                "icn_blob_messages_dropped_total",
                "Blob messages refused, by reason.",
                ["reason"],
                registry=registry,
            ),
        }

    def count(self, metric: str, labels: tuple[str, ...] = (), n: float = 1) -> None:
        c = self.counters[metric]
        (c.labels(*labels) if labels else c).inc(n)


class _Waiter:
    """Where :meth:`BlobService._run` leaves a fetch's outcome for the task in :meth:`ensure`."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.outcome: Commit | Failed | Exception | None = None

    def settle(self, outcome: Commit | Failed | Exception) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.event.set()

    async def take(self) -> Commit | Failed | Exception:
        await self.event.wait()
        outcome, self.outcome = self.outcome, None
        self.event = trio.Event()
        assert outcome is not None
        return outcome


class _Shared:
    """A fetch in progress that other callers of :meth:`BlobService.ensure` wait for."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BlobError | None = None


class BlobService:
    def __init__(
        self,
        did: str,
        store: BlobStore,
        mesh,
        now: Callable[[], float],
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        registry: CollectorRegistry | None = None,
        estimate: Callable[[str], Estimate] | None = None,
        on_transfer: Callable[[str, int, float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``refresh_s``: ``blobs.announce_interval_s``. ``estimate(did)``: (RTT ms, Mbit/s)
        to a holder, None where unknown (default: the mesh's measured RTT). ``on_transfer(did,
        bytes, seconds)``: called for each holder that delivered a completed fetch."""
        self.did = did
        self.store = store
        self.mesh = mesh
        self.now = now
        rng = rng if rng is not None else random.Random(int.from_bytes(os.urandom(8), "big"))
        self.core = BlobCore(did, refresh_s=refresh_s, rng=rng)
        self.metrics = BlobMetrics(registry or CollectorRegistry(), self.core.locations)
        self.estimate = estimate if estimate is not None else self._mesh_estimate
        self.on_transfer = on_transfer
        self._writers: dict[int, BlobWriter] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._fetching: dict[bytes, _Shared] = {}  # the fetch in progress, by blob
        self._learned = trio.Event()  # set (and replaced) whenever a holder announces
        self._hashes: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        self._hashes_bytes = 0
        self._hashing: dict[bytes, list[tuple[str, BlobHashesRequestMsg]]] = {}
        self._nursery: trio.Nursery | None = None
        self._wakeup = trio.Event()
        self._armed_for = math.inf  # the deadline the timer loop sleeps until
        self.served_bytes = 0
        self.fetched_bytes = 0

    @property
    def locations(self) -> BlobLocations:
        return self.core.locations

    def _mesh_estimate(self, did: str) -> Estimate:
        rtt = self.mesh.rtt_ms().get(did) if self.mesh is not None else None
        return (rtt, None)

    # --- service ---------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        inbox = self.mesh.subscribe(BLOB_TOPIC, buffer=1024)
        self.core.start(self.now())
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._receive, inbox)
            nursery.start_soon(self._timer_loop)
            task_status.started()

    async def _receive(self, inbox) -> None:
        async for delivery in inbox:
            try:
                msg = decode_message(delivery.payload)
            except CodecError as e:
                self.metrics.count(DROPPED, ("undecodable",))
                log.warning("blob_message_dropped", origin=delivery.origin, reason=str(e))
                continue
            if isinstance(msg, (BlobFetchMsg, BlobRequestMsg)):
                await self._serve_piece(delivery.origin, msg)
            elif isinstance(msg, BlobHashesRequestMsg):
                await self._serve_hashes(delivery.origin, msg)
            else:
                await self._run(self.core.on_message(delivery.origin, msg, self.now()))
                if isinstance(msg, (BlobHaveMsg, BlobAnnounceMsg)):
                    self._learned.set()
                    self._learned = trio.Event()

    async def _timer_loop(self) -> None:
        while True:
            self._armed_for = self.core.next_deadline()
            with trio.move_on_after(max(0.0, self._armed_for - self.now())):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            peers = self.mesh.peer_count() if self.mesh is not None else None
            await self._run(self.core.on_timer(self.now(), peers))

    def _rearm(self) -> None:
        """Wake the timer loop when the core's next deadline comes before the one it sleeps to."""
        if self.core.next_deadline() < self._armed_for:
            self._wakeup.set()

    # --- serving ---------------------------------------------------------------------------

    async def _serve_piece(self, origin: str, req: BlobFetchMsg | BlobRequestMsg) -> None:
        size = self.store.size(req.blob)
        if size is None:
            reply = BlobChunkMsg(req.request_id, req.blob, req.offset, 0, b"", error="not found")
        else:
            data = self.store.read_chunk(req.blob, req.offset, req.length)
            cause = cause_label(req.cause) if isinstance(req, BlobFetchMsg) else "other"
            self.served_bytes += len(data)
            self.metrics.count(BYTES, ("out", cause), len(data))
            reply = BlobChunkMsg(req.request_id, req.blob, req.offset, size, data)
        await self.mesh.send_direct(origin, BLOB_TOPIC, encode_message(reply))

    async def _serve_hashes(self, origin: str, req: BlobHashesRequestMsg) -> None:
        size = self.store.size(req.blob)
        cached = self._hashes.get(req.blob)
        if size is None or (cached is not None and cached[0] != size):
            self._hashes.pop(req.blob, None)
            await self._send_hashes(origin, req, None)
        elif cached is not None:
            self._hashes.move_to_end(req.blob)
            await self._send_hashes(origin, req, cached)
        elif size <= HASH_INLINE_BYTES:
            listed = self._read_hashes(req.blob)
            if listed is not None:
                self._cache_hashes(req.blob, *listed)
            await self._send_hashes(origin, req, listed)
        elif req.blob in self._hashing:
            self._hashing[req.blob].append((origin, req))
        elif len(self._hashing) >= MAX_HASHING or self._nursery is None:
            self.metrics.count(DROPPED, ("hashing-busy",))
        else:
            self._hashing[req.blob] = [(origin, req)]
            self._nursery.start_soon(self._hash_blob, req.blob)

    async def _hash_blob(self, h: bytes) -> None:
        try:
            listed = await trio.to_thread.run_sync(self._read_hashes, h)
        finally:
            waiting = self._hashing.pop(h, [])
        if listed is not None:
            self._cache_hashes(h, *listed)
        for origin, req in waiting:
            await self._send_hashes(origin, req, listed)

    def _read_hashes(self, h: bytes) -> tuple[int, bytes] | None:
        """(size, piece hashes) of a stored blob, read from disk (in a worker thread)."""
        out = []
        size = 0
        try:
            with open(self.store.path(h), "rb") as f:
                while piece := f.read(MAX_BLOB_CHUNK):
                    out.append(hashlib.sha256(piece).digest())
                    size += len(piece)
        except FileNotFoundError:
            return None
        return size, b"".join(out)

    def _cache_hashes(self, h: bytes, size: int, hashes: bytes) -> None:
        if h in self._hashes:
            self._hashes_bytes -= len(self._hashes.pop(h)[1])
        self._hashes[h] = (size, hashes)
        self._hashes_bytes += len(hashes)
        while self._hashes_bytes > HASH_CACHE_BYTES and len(self._hashes) > 1:
            self._hashes_bytes -= len(self._hashes.popitem(last=False)[1][1])

    async def _send_hashes(
        self, origin: str, req: BlobHashesRequestMsg, listed: tuple[int, bytes] | None
    ) -> None:
        if listed is None:
            reply = BlobHashesMsg(req.request_id, req.blob, 0, req.first, b"", error="not found")
        else:
            size, hashes = listed
            page = hashes[req.first * 32 : (req.first + MAX_HASHES) * 32]
            reply = BlobHashesMsg(req.request_id, req.blob, size, req.first, page)
        await self.mesh.send_direct(origin, BLOB_TOPIC, encode_message(reply))

    # --- for the compute service and the RPC ----------------------------------------------

    async def ensure(self, h: bytes, holders: list[str], *, cause: str = "other") -> None:
        """Make sure blob ``h`` is stored here, fetching it from ``holders`` and the announced
        holders (the best ones at once); BlobError saying what each one did otherwise.
        ``cause`` (``task_input``, ``module``, ``user_get``, ``replica``, …) labels the bytes
        moved, here and at the holders."""
        while not self.store.has(h):
            running = self._fetching.get(h)
            if running is None:
                known = [d for d in self.locations.holders(h) if d != self.did]
                self.metrics.count(LOOKUPS, ("ensure", "hit" if known else "miss"))
                shared = self._fetching[h] = _Shared()
                try:
                    return await self._fetch(h, holders, cause)
                except BlobError as e:
                    shared.error = e
                    raise
                finally:
                    self._fetching.pop(h)
                    shared.done.set()
            # Someone else is fetching it: share the outcome (a cancelled one is tried again).
            await running.done.wait()
            if running.error is not None:
                raise BlobError(str(running.error))
        self.metrics.count(LOOKUPS, ("ensure", "local"))

    async def _fetch(self, h: bytes, holders: list[str], cause: str) -> None:
        estimates = {
            d: self.estimate(d) for d in {*holders, *self.locations.holders(h)} if d != self.did
        }
        fid, acts = self.core.fetch(
            h, list(holders), self.now(), cause=cause_label(cause), estimates=estimates
        )
        waiter = self._waiters[fid] = _Waiter()
        try:
            await self._run(acts)
            while True:
                outcome = await waiter.take()
                if isinstance(outcome, Exception):
                    raise outcome
                if isinstance(outcome, Failed):
                    self.metrics.count(FETCHES, ("failed",))
                    raise BlobError(outcome.error)
                writer = self._writers.pop(fid)
                try:
                    await trio.to_thread.run_sync(writer.commit)
                except BlobError as e:  # the pieces matched the list, the whole does not
                    await self._run(self.core.attempt_failed(fid, str(e), self.now()))
                    continue
                self.core.committed(fid)
                self._cache_hashes(h, outcome.size, outcome.hashes)
                self.added(h, outcome.size)  # a holder now: announce it
                self.fetched_bytes += outcome.size
                self.metrics.count(FETCHES, ("ok",))
                log.info(
                    "blob_fetched",
                    blob=h.hex(),
                    size=outcome.size,
                    holders=[did for did, _, _ in outcome.transfers],
                )
                if self.on_transfer is not None:
                    for did, nbytes, seconds in outcome.transfers:
                        self.on_transfer(did, nbytes, seconds)
                return
        finally:
            del self._waiters[fid]
            self.core.cancel(fid)
            left = self._writers.pop(fid, None)
            if left is not None:
                left.abort()

    def added(self, h: bytes, size: int) -> None:
        """A blob was stored here: announce it soon."""
        for act in self.core.added(h, size, self.now()):
            assert isinstance(act, SizeConflict)
            _log_conflict(act)
        self._rearm()

    def removed(self, h: bytes) -> None:
        """A blob was removed from the store here: forget it and withdraw it soon."""
        if h in self._hashes:
            self._hashes_bytes -= len(self._hashes.pop(h)[1])
        self.core.removed(h, self.now())
        self._rearm()

    async def locate(self, h: bytes) -> tuple[int | None, list[tuple[str, float]], bool]:
        """``(size, [(holder, seconds since its last announcement)], asked)``. When no holder
        but this node is known, the cooperative is asked first (``asked``), and the answers
        that come within the core's wait are included."""

        def others() -> bool:
            return any(d != self.did for d in self.locations.holders(h))

        asked = not others()
        self.metrics.count(LOOKUPS, ("locate", "miss" if asked else "hit"))
        if asked:
            deadline, acts = self.core.ask([h], self.now())
            await self._run(acts)
            with trio.move_on_after(max(0.0, deadline - self.now())):
                while not others():
                    await self._learned.wait()
                await trio.sleep(LOCATE_GRACE_S)  # the other holders' answers
        return self.locations.size(h), self.locations.entries(h), asked

    # --- actions ---------------------------------------------------------------------------

    async def _run(self, acts: list[Action]) -> None:
        for act in acts:
            match act:
                case Request(holder, msg):
                    await self.mesh.send_direct(holder, BLOB_TOPIC, encode_message(msg))
                case Send(to, msg):
                    await self.mesh.send_direct(to, BLOB_TOPIC, encode_message(msg))
                case Publish(msg):
                    await self.mesh.publish(BLOB_TOPIC, encode_message(msg))
                case ListStore():
                    await self._run(self.core.on_store_listed(self.store.items(), self.now()))
                case SizeConflict():
                    if act.holder != self.did:
                        self.metrics.count(DROPPED, ("size-conflict",))
                    _log_conflict(act)
                case Dropped(origin, reason):
                    self.metrics.count(DROPPED, (reason,))
                    log.debug("blob_message_dropped", origin=origin, reason=reason)
                case Count(metric, labels, n):
                    self.metrics.count(metric, labels, n)
                case Open() | Write():
                    self._file(act)
                case Discard(fid):
                    writer = self._writers.pop(fid, None)
                    if writer is not None:
                        writer.abort()
                case Commit(fid) | Failed(fid):
                    waiter = self._waiters.get(fid)
                    if waiter is not None:
                        waiter.settle(act)
        self._rearm()

    def _file(self, act: Open | Write) -> None:
        """Open or write a fetch's file. The core has checked order and sizes, so an error here
        is the disk's (or a bug): the fetch ends and the error reaches :meth:`ensure`'s caller."""
        waiter = self._waiters.get(act.fetch)
        if waiter is None:
            return  # the caller went away
        try:
            if isinstance(act, Open):
                old = self._writers.pop(act.fetch, None)
                if old is not None:
                    old.abort()
                self._writers[act.fetch] = self.store.writer(act.blob, act.size)
            elif (writer := self._writers.get(act.fetch)) is not None:
                writer.write(act.offset, act.data)
        except (BlobError, OSError) as e:
            self.core.cancel(act.fetch)
            writer = self._writers.pop(act.fetch, None)
            if writer is not None:
                writer.abort()
            waiter.settle(e)


def _log_conflict(act: SizeConflict) -> None:
    log.warning("blob_size_conflict", blob=act.blob.hex(), holder=act.holder, size=act.size)
