"""Blobs between nodes: a thin trio driver around :class:`~icn_node.blobs.core.BlobCore`.

:class:`BlobService` owns what the core may not touch: the mesh subscription to ``icn/blob``,
the store on disk, the clock and the tasks. Everything on that topic arrives here: chunk
requests are served from the store, chunk replies and announcements go to the core. What the
core decides comes back as actions, carried out by :meth:`BlobService._run`: requests and
announcements go out on the mesh, pieces are written into a
:class:`~icn_node.blobs.store.BlobWriter`, and a finished fetch is verified and published in a
worker thread by the task that asked for it (:meth:`BlobService.ensure`). One timer task sleeps
until the core's next deadline and calls ``on_timer(now)``.

A peer can waste our time but never plant wrong bytes: a blob becomes visible only when its
SHA-256 matches its name.

The compute service uses :meth:`ensure`, :meth:`added`, :attr:`locations` (``holders`` and
``snapshot``), :attr:`store`, :attr:`served_bytes` and :attr:`fetched_bytes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from ..errors import CodecError
from ..logs import get_logger
from ..wire import (
    BLOB_TOPIC,
    BlobAnnounceMsg,
    BlobChunkMsg,
    BlobRequestMsg,
    decode_message,
    encode_message,
)
from .core import (
    Action,
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
from .store import BlobError, BlobStore, BlobWriter

log = get_logger("icn.blobs")


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


class BlobService:
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
        self.core = BlobCore(did)
        self._writers: dict[int, BlobWriter] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._wakeup = trio.Event()
        self._armed_for = math.inf  # the deadline the timer loop sleeps until
        self.served_bytes = 0
        self.fetched_bytes = 0

    @property
    def locations(self) -> BlobLocations:
        return self.core.locations

    # --- service ---------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        inbox = self.mesh.subscribe(BLOB_TOPIC, buffer=1024)
        self.core.start(self.now())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, inbox)
            nursery.start_soon(self._timer_loop)
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
                await self._run(self.core.on_chunk(delivery.origin, msg, self.now()))
            elif isinstance(msg, BlobAnnounceMsg):
                await self._run(self.core.on_announce(delivery.origin, msg, self.now()))
            else:
                log.debug("blob_message_unexpected", tag=msg.TAG, origin=delivery.origin)

    async def _serve_chunk(self, origin: str, req: BlobRequestMsg) -> None:
        size = self.store.size(req.blob)
        if size is None:
            reply = BlobChunkMsg(req.request_id, req.blob, req.offset, 0, b"", error="not found")
        else:
            data = self.store.read_chunk(req.blob, req.offset, req.length)
            self.served_bytes += len(data)
            reply = BlobChunkMsg(req.request_id, req.blob, req.offset, size, data)
        await self.mesh.send_direct(origin, BLOB_TOPIC, encode_message(reply))

    async def _timer_loop(self) -> None:
        while True:
            self._armed_for = self.core.next_deadline()
            with trio.move_on_after(max(0.0, self._armed_for - self.now())):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self._run(self.core.on_timer(self.now()))

    def _rearm(self) -> None:
        """Wake the timer loop when the core's next deadline comes before the one it sleeps to."""
        if self.core.next_deadline() < self._armed_for:
            self._wakeup.set()

    # --- for the compute service ----------------------------------------------------------

    async def ensure(self, h: bytes, holders: list[str]) -> None:
        """Make sure blob ``h`` is stored here, fetching it from the first of ``holders`` (then
        of the announced holders) that delivers it; BlobError saying why each one failed."""
        if self.store.has(h):
            return
        fid, acts = self.core.fetch(h, list(holders), self.now())
        waiter = self._waiters[fid] = _Waiter()
        try:
            await self._run(acts)
            while True:
                outcome = await waiter.take()
                if isinstance(outcome, Exception):
                    raise outcome
                if isinstance(outcome, Failed):
                    raise BlobError(outcome.error)
                writer = self._writers.pop(fid)
                try:
                    await trio.to_thread.run_sync(writer.commit)
                except BlobError as e:  # the bytes do not hash to the name: next holder
                    await self._run(self.core.attempt_failed(fid, str(e), self.now()))
                    continue
                self.core.committed(fid)
                self.fetched_bytes += outcome.size
                log.info("blob_fetched", blob=h.hex(), size=outcome.size, holder=outcome.holder)
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
        """withdrawal: see issue 9"""

    # --- actions ---------------------------------------------------------------------------

    async def _run(self, acts: list[Action]) -> None:
        for act in acts:
            match act:
                case Request(holder, msg):
                    await self.mesh.send_direct(holder, BLOB_TOPIC, encode_message(msg))
                case Publish(msg):
                    await self.mesh.publish(BLOB_TOPIC, encode_message(msg))
                case ListStore():
                    await self._run(self.core.on_store_listed(self.store.items(), self.now()))
                case SizeConflict():
                    _log_conflict(act)
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
