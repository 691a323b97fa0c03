"""Bytes between a client's file descriptor and a streaming RPC handler, with progress.

A streaming method (:meth:`~icn_node.rpc.protocol.RpcRegistry.register_streaming`) gets the
descriptors the client sent with the request. These helpers read and write them in bounded
chunks in worker threads, so the event loop never blocks and the daemon never holds more than
a chunk per transfer:

* each read or write works on its own ``dup`` of the descriptor, closed by the thread itself,
  so a thread given up on (a pipe nobody drains) can never touch a descriptor number the server
  has since closed and the kernel reused;
* a chunk that does not move within the call's ``io_timeout_s`` ends the transfer with an error
  naming the parameter (the thread is abandoned; it holds at most one chunk);
* :func:`reporting` sends ``progress`` notifications (``{"request", "phase", "done",
  "total"}``) at most every :data:`PROGRESS_INTERVAL_S` while something changes and every
  :data:`KEEPALIVE_S` while nothing does, so the client's read timeout measures silence, not
  the length of the transfer.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import trio

from ..errors import RpcError
from .protocol import DOMAIN_ERROR, Call, InvalidParams

T = TypeVar("T")

CHUNK = 1 << 20
PROGRESS_INTERVAL_S = 0.25
KEEPALIVE_S = 5.0


def check_fd(fd: int, *, write: bool, param: str = "fd") -> os.stat_result:
    """The descriptor's stat, after checking it can be read (or written); InvalidParams else."""
    try:
        st = os.fstat(fd)
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError as e:
        raise InvalidParams(f"{param}: unusable file descriptor: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidParams(f"{param}: a directory, not a file")
    if write and access == os.O_RDONLY:
        raise InvalidParams(f"{param}: not open for writing")
    if not write and access == os.O_WRONLY:
        raise InvalidParams(f"{param}: not open for reading")
    return st


def remaining(fd: int, st: os.stat_result) -> int | None:
    """Bytes from the descriptor's offset to the end of a regular file; None for a stream."""
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        return max(0, st.st_size - os.lseek(fd, 0, os.SEEK_CUR))
    except OSError:
        return None


class _Dup:
    """A ``dup`` of a client's descriptor, closed by whichever side claims it first: the
    worker thread (which then uses and closes it) or the handler, when the thread never started
    (cancelled before it ran, or given up on while queued)."""

    def __init__(self, fd: int) -> None:
        self.fd = os.dup(fd)
        self._lock = threading.Lock()
        self._claimed = False

    def claim(self) -> bool:
        with self._lock:
            claimed, self._claimed = self._claimed, True
            return not claimed


def _in_thread(dup: _Dup, op: Callable[[int], T]) -> T | None:
    if not dup.claim():
        return None
    try:
        return op(dup.fd)
    finally:
        os.close(dup.fd)


async def _on_dup(call: Call, fd: int, op: Callable[[int], T], what: str, param: str) -> T | None:
    dup = _Dup(fd)
    try:
        with trio.move_on_after(call.io_timeout_s):
            try:
                return await trio.to_thread.run_sync(_in_thread, dup, op, abandon_on_cancel=True)
            except OSError as e:
                raise RpcError(DOMAIN_ERROR, f"{param}: {what} failed: {e.strerror}") from None
        raise RpcError(DOMAIN_ERROR, f"{param}: no bytes moved for {call.io_timeout_s:g} s")
    finally:
        if dup.claim():
            os.close(dup.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def read_chunk(call: Call, fd: int, param: str = "fd", n: int = CHUNK) -> bytes:
    """Up to ``n`` bytes from the client's descriptor at its offset; b"" at its end."""
    data = await _on_dup(call, fd, lambda own: os.read(own, n), "reading", param)
    return data or b""


async def write_chunk(call: Call, fd: int, data: bytes, param: str = "fd") -> None:
    """All of ``data`` into the client's descriptor at its offset."""
    await _on_dup(call, fd, lambda own: _write_all(own, data), "writing", param)


@dataclass
class Progress:
    """Where a transfer is: the handler updates it, :func:`reporting` tells the client."""

    phase: str
    done: int = 0
    total: int | None = None

    def doc(self) -> dict[str, object]:
        return {"phase": self.phase, "done": self.done, "total": self.total}


@asynccontextmanager
async def reporting(
    call: Call, enabled: bool, phase: str, total: int | None = None
) -> AsyncIterator[Progress]:
    """A :class:`Progress` for the body; with ``enabled``, reported as notifications. A
    notification that cannot be delivered means the client is gone (Ctrl-C on a 2 GB put):
    the body is cancelled and the call ends with an error nobody will read, so a transfer
    nobody waits for stops, and the handler's cleanup (nothing stored) runs."""
    progress = Progress(phase, total=total)
    if not enabled:
        yield progress
        return
    stop = trio.Event()
    with trio.CancelScope() as body:

        async def report() -> None:
            last: dict[str, object] | None = None
            last_at = trio.current_time()
            while True:
                with trio.move_on_after(PROGRESS_INTERVAL_S):
                    await stop.wait()
                if stop.is_set():
                    return
                doc = progress.doc()
                now = trio.current_time()
                if doc != last or now - last_at >= KEEPALIVE_S:
                    if not await call.notify("progress", doc):
                        body.cancel()
                        return
                    last, last_at = doc, now

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(report)
                try:
                    yield progress
                finally:
                    stop.set()
        except BaseExceptionGroup as group:
            # The reporter raises nothing of its own: the group wraps the body's exception,
            # which the handler's caller must see as it is (an RpcError is a reply, not a bug).
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    if body.cancelled_caught:
        raise RpcError(DOMAIN_ERROR, "the client went away; the transfer was stopped")
