"""The RPC server's connection table: who holds a connection, and whom to close for a newcomer.

A connection is either *waiting* (for its next request line, or for its client to read a
reply) or *busy* (a handler runs for it). When every slot is taken, a new connection is still
served: the connection that has been waiting longest is closed to make room, since a client
that neither completes a request nor reads its reply holds a slot without using it (an idle
connection, a client trickling a request a byte at a time, one that stopped reading). A busy
connection is never closed for a newcomer; when all are busy the newcomer is refused.

A connection closed for a newcomer may belong to a client that had just connected and was
about to send its request (in a burst of more than ``limit`` arrivals); the server tells such a
connection "busy" before closing it, so that its client tries again, rather than keeping new
connections from being closed, which would let a stream of arrivals keep every newcomer out.

Pure: the driver (:mod:`.server`) passes the time and closes what :meth:`admit` names.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Admission(Generic[K]):
    """``admitted``: the newcomer has a slot. ``evict``: the connection to close first."""

    admitted: bool
    evict: K | None = None


class ConnectionTable(Generic[K]):
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a connection table holds at least one connection")
        self.limit = limit
        self._waiting: dict[K, float] = {}  # connection -> since when it waits
        self._busy: set[K] = set()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._busy)

    def __contains__(self, key: object) -> bool:
        return key in self._waiting or key in self._busy

    def admit(self, key: K, now: float) -> Admission[K]:
        """A new connection, waiting for its first request from ``now``."""
        victim = None
        if len(self) >= self.limit:
            if not self._waiting:
                return Admission(False)
            victim = min(self._waiting, key=self._waiting.__getitem__)
            del self._waiting[victim]
        self._waiting[key] = now
        return Admission(True, victim)

    def waiting(self, key: K, now: float) -> None:
        """``key`` waits from ``now`` (for a request, or for its client to read); it may be
        closed for a newcomer. Nothing for a connection no longer in the table."""
        if key in self:
            self._busy.discard(key)
            self._waiting[key] = now

    def busy(self, key: K) -> None:
        """A handler runs for ``key``: it keeps its slot."""
        if self._waiting.pop(key, None) is not None:
            self._busy.add(key)

    def remove(self, key: K) -> None:
        self._waiting.pop(key, None)
        self._busy.discard(key)

    @property
    def busy_count(self) -> int:
        return len(self._busy)


__all__ = ["Admission", "ConnectionTable"]
