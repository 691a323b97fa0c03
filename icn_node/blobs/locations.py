"""Who holds which blob, as announced: compact, with expiry, and a live view for placement.

Pure (no clock: every call that needs the time takes ``now``, and the latest ``now`` seen is
what later lookups judge expiry by).

**Layout.** A cooperative may know a million (blob, holder) locations, so each costs tens of
bytes, not hundreds. Holder DIDs are interned to small integers (``holder_ids``); each blob maps
to one ``array('Q')``: element 0 is the blob's size, then one 64-bit word per holder, the
second it was last heard from in the high 32 bits (``ceil(now)``, so a location never expires
early) and the holder's id in the low 32. With the time in the high bits, ``min()`` over the
words (in C) gives the oldest location of a blob, so a sweep skips every blob with nothing old
enough to expire without looking at its holders one by one. ``bench/bench_locations.py``
measures bytes per location and lookup time (docs/PERFORMANCE.md).

**Expiry.** Each holder has a time-to-live, set from what it announced (three of its refresh
periods plus :data:`EXPIRY_SLACK_S`; this node's own entries never expire, the blob core keeps
them). Lookups skip expired locations at once; :meth:`BlobLocations.expire` frees them.

**Placement** reads :meth:`BlobLocations.view`: a :class:`~icn_node.scheduler.BlobRegistry`
whose lookups read this table live. A rebuilt immutable snapshot costs about 3 s and hundreds of
MB at a million locations, and locations change with every announcement; a placement scores
synchronously, so the view cannot change under one scoring pass.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterator, Mapping

from ..scheduler import BlobLocation, BlobRegistry

MISSED_REFRESHES = 3
EXPIRY_SLACK_S = 5.0
"""Added to three refresh periods: an announcement's travel and its sender's timer skew."""
DEFAULT_REFRESH_S = 600.0

_SEEN_SHIFT = 32
_ID_MASK = (1 << 32) - 1
_SEEN_MAX = (1 << 32) - 1


def ttl_for(refresh_s: float) -> float:
    """How long a location lives without a refresh, for a holder that refreshes every
    ``refresh_s`` seconds: three missed refreshes (plus a little slack)."""
    return MISSED_REFRESHES * refresh_s + EXPIRY_SLACK_S


def _stamp(now: float) -> int:
    return min(_SEEN_MAX, max(0, math.ceil(now)))


class BlobLocations:
    """Who holds which blob (see the module docstring for the layout and expiry)."""

    def __init__(self, ttl_s: float = ttl_for(DEFAULT_REFRESH_S)) -> None:
        self.ttl_s = ttl_s
        self._held: dict[bytes, array[int]] = {}
        self._dids: list[str] = []
        self._ids: dict[str, int] = {}
        self._ttl: array[float] = array("d")
        self._count = 0
        self._now = -math.inf
        self._view: LiveBlobRegistry | None = None

    # --- holders ---------------------------------------------------------------------------

    def holder_id(self, did: str) -> int:
        hid = self._ids.get(did)
        if hid is None:
            hid = self._ids[did] = len(self._dids)
            self._dids.append(did)
            self._ttl.append(self.ttl_s)
        return hid

    def set_ttl(self, did: str, ttl_s: float) -> None:
        """How long ``did``'s locations live without a refresh (``inf``: until removed)."""
        self._ttl[self.holder_id(did)] = ttl_s

    def tick(self, now: float) -> None:
        """Lookups from now on judge expiry at ``now`` (time never goes back)."""
        if now > self._now:
            self._now = now

    def _live(self, word: int) -> bool:
        return self._now - (word >> _SEEN_SHIFT) <= self._ttl[word & _ID_MASK]

    # --- changes ---------------------------------------------------------------------------

    def add(
        self, h: bytes, holder: str, size: int, now: float, *, authoritative: bool = False
    ) -> bool:
        """Record that ``holder`` has blob ``h`` of ``size`` bytes, heard at ``now``.

        False (nothing recorded) when another size is known for ``h`` from a live location,
        unless ``authoritative`` (a size this node verified): then the locations that claimed
        the other size are dropped.
        """
        self.tick(now)
        word = (_stamp(now) << _SEEN_SHIFT) | self.holder_id(holder)
        arr = self._held.get(h)
        if arr is not None and arr[0] != size:
            if not authoritative and any(self._live(arr[i]) for i in range(1, len(arr))):
                return False
            self._count -= len(arr) - 1
            arr = None
        if arr is None:
            self._held[h] = array("Q", (size, word))
            self._count += 1
            return True
        hid = word & _ID_MASK
        for i in range(1, len(arr)):
            if arr[i] & _ID_MASK == hid:
                arr[i] = word
                return True
        arr.append(word)
        self._count += 1
        return True

    def remove(self, h: bytes, holder: str) -> bool:
        """Forget that ``holder`` has ``h`` (a withdrawal, or it said "not found")."""
        arr = self._held.get(h)
        hid = self._ids.get(holder)
        if arr is None or hid is None:
            return False
        for i in range(1, len(arr)):
            if arr[i] & _ID_MASK == hid:
                del arr[i]
                self._count -= 1
                if len(arr) == 1:
                    del self._held[h]
                return True
        return False

    def expire(self, now: float) -> int:
        """Free the locations whose holders missed three refreshes; returns how many."""
        self.tick(now)
        shortest = min(self._ttl, default=math.inf)
        if shortest == math.inf:
            return 0
        # A blob whose oldest location is younger than the shortest TTL has nothing to expire.
        safe = max(0, math.ceil(now - shortest)) << _SEEN_SHIFT
        removed = 0
        emptied: list[bytes] = []
        for h, arr in self._held.items():
            if min(arr[1:]) >= safe:
                continue
            keep = [w for w in arr[1:] if self._live(w)]
            removed += len(arr) - 1 - len(keep)
            if keep:
                arr[1:] = array("Q", keep)
            else:
                emptied.append(h)
        for h in emptied:
            del self._held[h]
        self._count -= removed
        return removed

    # --- lookups ---------------------------------------------------------------------------

    def holders(self, h: bytes) -> list[str]:
        """The live holders of ``h``, sorted."""
        arr = self._held.get(h)
        if arr is None:
            return []
        dids = self._dids
        return sorted(dids[w & _ID_MASK] for w in arr[1:] if self._live(w))

    def entries(self, h: bytes) -> list[tuple[str, float]]:
        """``(holder, seconds since it was last heard)`` for each live holder, by DID."""
        arr = self._held.get(h)
        if arr is None:
            return []
        now, dids = self._now, self._dids
        return sorted(
            (dids[w & _ID_MASK], max(0.0, now - (w >> _SEEN_SHIFT)))
            for w in arr[1:]
            if self._live(w)
        )

    def size(self, h: bytes) -> int | None:
        """The size of ``h`` while a live location names it."""
        arr = self._held.get(h)
        if arr is None or not any(self._live(arr[i]) for i in range(1, len(arr))):
            return None
        return int(arr[0])

    def lookup(self, h: bytes) -> tuple[int, frozenset[str]] | None:
        """``(size, holders)`` of ``h``, or None when no live location names it (the shape of
        :attr:`BlobRegistry.lookup`)."""
        arr = self._held.get(h)
        if arr is None:
            return None
        now, ttl, dids = self._now, self._ttl, self._dids
        hs = frozenset(
            dids[w & _ID_MASK] for w in arr[1:] if now - (w >> _SEEN_SHIFT) <= ttl[w & _ID_MASK]
        )
        return (int(arr[0]), hs) if hs else None

    def summary(self, limit: int) -> list[tuple[bytes, int, int]]:
        """``(blob, size, live holders)`` for the first ``limit`` blobs by hash."""
        out = []
        for h in heapq.nsmallest(limit, self._held):
            arr = self._held[h]
            n = sum(1 for w in arr[1:] if self._live(w))
            if n:
                out.append((h, int(arr[0]), n))
        return out

    def blobs(self) -> Iterator[bytes]:
        """Every blob with a location (expired ones until the next :meth:`expire`)."""
        return iter(self._held)

    def __len__(self) -> int:
        """(blob, holder) locations recorded (expired ones until the next :meth:`expire`)."""
        return self._count

    @property
    def blob_count(self) -> int:
        return len(self._held)

    # --- for placement ---------------------------------------------------------------------

    def view(self) -> LiveBlobRegistry:
        """The :class:`BlobRegistry` placement reads: live, always the same object."""
        if self._view is None:
            self._view = LiveBlobRegistry(self)
        return self._view

    snapshot = view
    """What the compute service calls; the live view (an immutable copy is :meth:`frozen`)."""

    def frozen(self) -> BlobRegistry:
        """An immutable copy of the live locations (O(N): for tests and tools)."""
        locs: list[BlobLocation] = []
        for h in self._held:
            e = self.lookup(h)
            if e is not None:
                locs.extend(BlobLocation(h, did, e[0]) for did in e[1])
        return BlobRegistry(locs)


class _LiveEntries(Mapping[bytes, tuple[int, frozenset[str]]]):
    """The locations as the mapping :class:`BlobRegistry` keeps its entries in."""

    __slots__ = ("_locs", "get")

    def __init__(self, locs: BlobLocations) -> None:
        self._locs = locs
        self.get = locs.lookup  # type: ignore[method-assign,assignment]

    def __getitem__(self, h: bytes) -> tuple[int, frozenset[str]]:
        e = self._locs.lookup(h)
        if e is None:
            raise KeyError(h)
        return e

    def __iter__(self) -> Iterator[bytes]:
        return (h for h in list(self._locs.blobs()) if self._locs.lookup(h) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LiveBlobRegistry(BlobRegistry):
    """A :class:`BlobRegistry` whose lookups read a :class:`BlobLocations` table live.

    ``lookup``, ``size`` and ``holders`` cost one dict lookup and a pass over the blob's few
    holders; ``len``, ``locations()`` and the document walk the whole table.
    """

    __slots__ = ("_locs",)

    def __init__(self, locs: BlobLocations) -> None:
        self._locs = locs
        # BlobRegistry reads its entries through this mapping (size, holders, locations, ==).
        self._entries = _LiveEntries(locs)  # type: ignore[assignment]
        self._count = 0
        self.lookup = locs.lookup  # type: ignore[assignment]

    def __len__(self) -> int:
        n = 0
        for h in list(self._locs.blobs()):
            e = self._locs.lookup(h)
            if e is not None:
                n += len(e[1])
        return n

    def __repr__(self) -> str:
        return f"LiveBlobRegistry(locations={len(self._locs)})"
