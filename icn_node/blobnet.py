"""Blobs between nodes: serve chunks of local blobs, fetch missing ones from a peer, announce
what this node holds.

A fetch asks the holder for ``MAX_BLOB_CHUNK``-sized pieces in order (a small window of requests
in flight), writes them into a :class:`~icn_node.blobs.BlobWriter`, and publishes the blob only
when its SHA-256 matches: a peer can waste our time but never plant wrong bytes. Every request
has a deadline and is re-sent every ``REQUEST_RESEND_S`` until answered (so a holder that
restarts mid-fetch is asked again); a holder that stays quiet fails the fetch with a clear
error.

Announcements (``BlobAnnounceMsg`` on gossip) are batched: new blobs are announced within
``ANNOUNCE_DELAY_S`` and everything is re-announced every ``REANNOUNCE_S``, so the locality
registry of other nodes learns and refreshes where blobs are. Received announcements feed the
node's :class:`~icn_node.scheduler.BlobRegistry` (the locality context of placement).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import trio

from .blobs import BlobError, BlobStore
from .errors import CodecError
from .logs import get_logger
from .scheduler import BlobLocation, BlobRegistry
from .wire import (
    BLOB_TOPIC,
    COMPUTE_TOPIC,
    MAX_BLOB_CHUNK,
    BlobAnnounceMsg,
    BlobChunkMsg,
    BlobRequestMsg,
    decode_message,
    encode_message,
)

log = get_logger("icn.blobnet")

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

    def add(self, h: bytes, holder: str, size: int, now: float) -> None:
        known = self._held.get(h)
        if known is not None and known[0] != size:
            log.warning("blob_size_conflict", blob=h.hex(), holder=holder)
            return
        if known is None:
            known = self._held[h] = (size, {})
        if holder not in known[1]:
            self._snapshot = None
        known[1][holder] = now

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


class BlobNet:
    def __init__(
        self,
        did: str,
        store: BlobStore,
        mesh,
        now: Callable[[], float],
    ) -> None:
        self.did = did
        self.store = store
        self.mesh = mesh
        self.now = now
        self.locations = BlobLocations()
        self._ids = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[BlobChunkMsg]] = {}
        self._unannounced: dict[bytes, int] = {}
        self._announce_wakeup = trio.Event()
        self.served_bytes = 0
        self.fetched_bytes = 0

    # --- service ---------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        inbox = self.mesh.subscribe(BLOB_TOPIC, buffer=1024)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, inbox)
            nursery.start_soon(self._announcer)
            task_status.started()

    async def _receive(self, inbox) -> None:
        async for delivery in inbox:
            try:
                msg = decode_message(delivery.payload)
            except CodecError as e:
                log.warning("blob_message_dropped", origin=delivery.origin, reason=str(e))
                continue
            if isinstance(msg, BlobRequestMsg):
                await self._serve_chunk(delivery.origin, msg)
            elif isinstance(msg, BlobChunkMsg):
                chan = self._pending.get(msg.request_id)
                if chan is not None:
                    try:
                        chan.send_nowait(msg)
                    except (trio.WouldBlock, trio.BrokenResourceError):
                        pass

    def on_announce(self, origin: str, msg: BlobAnnounceMsg) -> None:
        """A peer's announcement (delivered on the compute gossip topic)."""
        now = self.now()
        for h, size in msg.blobs:
            self.locations.add(h, origin, size, now)

    async def _serve_chunk(self, origin: str, req: BlobRequestMsg) -> None:
        size = self.store.size(req.blob)
        if size is None:
            reply = BlobChunkMsg(req.request_id, req.blob, req.offset, 0, b"", error="not found")
        else:
            data = self.store.read_chunk(req.blob, req.offset, req.length)
            self.served_bytes += len(data)
            reply = BlobChunkMsg(req.request_id, req.blob, req.offset, size, data)
        await self.mesh.send_direct(origin, BLOB_TOPIC, encode_message(reply))

    # --- fetching --------------------------------------------------------------------------

    async def ensure(self, h: bytes, holders: list[str]) -> None:
        """Make sure blob ``h`` is stored here, fetching it from the first holder that has it."""
        if self.store.has(h):
            return
        errors = []
        for holder in holders + [d for d in self.locations.holders(h) if d not in holders]:
            if holder == self.did:
                continue
            try:
                await self.fetch(h, holder)
                return
            except BlobError as e:
                errors.append(f"{holder}: {e}")
        raise BlobError(f"blob {h.hex()} could not be fetched ({'; '.join(errors) or 'no holder'})")

    async def _request(self, holder: str, h: bytes, offset: int, length: int) -> BlobChunkMsg:
        rid = next(self._ids)
        send, receive = trio.open_memory_channel[BlobChunkMsg](1)
        self._pending[rid] = send
        try:
            request = encode_message(BlobRequestMsg(rid, h, offset, length))
            with trio.move_on_after(FETCH_TIMEOUT_S):
                # Re-sent until answered: a request or chunk lost while the holder restarts
                # (or a link redials) must not stall the fetch for the whole timeout and fail it.
                while True:
                    await self.mesh.send_direct(holder, BLOB_TOPIC, request)
                    with trio.move_on_after(REQUEST_RESEND_S):
                        chunk = await receive.receive()
                        if chunk.error:
                            raise BlobError(chunk.error)
                        if chunk.blob != h or chunk.offset != offset:
                            raise BlobError("holder answered with the wrong range")
                        return chunk
            raise BlobError(f"no answer within {FETCH_TIMEOUT_S:g} s")
        finally:
            del self._pending[rid]

    async def fetch(self, h: bytes, holder: str) -> None:
        first = await self._request(holder, h, 0, MAX_BLOB_CHUNK)
        writer = self.store.writer(h, first.size)
        try:
            writer.write(0, first.data)
            offsets = list(range(len(first.data), first.size, MAX_BLOB_CHUNK))
            if first.size and not first.data:
                raise BlobError("holder sent an empty first chunk")
            # A few requests in flight; chunks are written in order.
            for i in range(0, len(offsets), WINDOW):
                batch = offsets[i : i + WINDOW]
                results: dict[int, BlobChunkMsg] = {}

                async def get(off: int, results=results) -> None:
                    results[off] = await self._request(holder, h, off, MAX_BLOB_CHUNK)

                async with trio.open_nursery() as nursery:
                    for off in batch:
                        nursery.start_soon(get, off)
                for off in batch:
                    writer.write(off, results[off].data)
            await trio.to_thread.run_sync(writer.commit)
        except BaseException:
            writer.abort()
            raise
        self.fetched_bytes += first.size
        log.info("blob_fetched", blob=h.hex(), size=first.size, holder=holder)

    # --- announcing ------------------------------------------------------------------------

    def added(self, h: bytes, size: int) -> None:
        """A blob was stored here: announce it soon."""
        self.locations.add(h, self.did, size, self.now())
        self._unannounced[h] = size
        self._announce_wakeup.set()

    async def _announcer(self) -> None:
        for h, size in self.store.items():
            self.locations.add(h, self.did, size, self.now())
        next_full = self.now()
        while True:
            with trio.move_on_at(trio.current_time() + max(0.0, next_full - self.now())):
                await self._announce_wakeup.wait()
                await trio.sleep(ANNOUNCE_DELAY_S)
            self._announce_wakeup = trio.Event()
            if self.now() >= next_full:
                self.locations.expire(self.now())
                for h, size in self.store.items():
                    self.locations.add(h, self.did, size, self.now())
                batch = list(self.store.items())
                next_full = self.now() + REANNOUNCE_S
                self._unannounced.clear()
            else:
                batch = list(self._unannounced.items())
                self._unannounced.clear()
            for i in range(0, len(batch), ANNOUNCE_BATCH):
                msg = BlobAnnounceMsg(tuple(batch[i : i + ANNOUNCE_BATCH]))
                await self.mesh.publish(COMPUTE_TOPIC, encode_message(msg))
