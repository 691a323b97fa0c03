"""The executor registry: who announced itself as an executor, with what, and is it still live.

Fed by ``ExecutorAnnounce`` gossip (the driver also feeds this node's own announcements when it
runs an executor, so a submitter expects itself like any other executor). An entry is live
until three announce intervals pass without a newer announcement, measured on the *local*
clock at receipt (peers' clocks are not compared with ours; ``announced_at`` only orders two
announcements from the same executor).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from icn_node.scheduler import _checks as chk
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.resources import ResourceProfile
from icn_node.scheduler.tasks import _task_errors

__all__ = ["MISSED_INTERVALS", "ExecutorRegistry"]

MISSED_INTERVALS = 3
"""An entry expires after this many announce intervals without a newer announcement."""


class ExecutorRegistry:
    """Live executors by DID. ``interval_s`` is ``compute.announce_interval_s``."""

    __slots__ = ("interval_s", "_entries", "_order", "_index")

    def __init__(self, interval_s: float) -> None:
        with _task_errors():
            self.interval_s = chk.number(
                "compute.announce_interval_s", interval_s, lo=0.0, hi=1e9, lo_open=True
            )
        self._entries: dict[str, tuple[ExecutorInfo, float]] = {}
        # The DIDs in a list too (swap-removed), so that a random entry is one index away.
        self._order: list[str] = []
        self._index: dict[str, int] = {}

    @property
    def ttl_s(self) -> float:
        return MISSED_INTERVALS * self.interval_s

    def announce(self, info: ExecutorInfo, now: float) -> bool:
        """Record ``info``, received at ``now``. An announcement older than (or as old as) the
        one held is ignored; returns whether it was taken."""
        old = self._entries.get(info.did)
        if old is not None and old[0].announced_at >= info.announced_at:
            return False
        if old is None:
            self._index[info.did] = len(self._order)
            self._order.append(info.did)
        self._entries[info.did] = (info, now)
        return True

    def _drop(self, did: str) -> None:
        del self._entries[did]
        i = self._index.pop(did)
        last = self._order.pop()
        if last != did:
            self._order[i] = last
            self._index[last] = i

    def interval_for(self, budget_per_s: float) -> float:
        """The announce interval for a cooperative this registry sees: ``interval_s``, or longer
        once every executor announcing that often would make more than ``budget_per_s``
        announcements a second in all (every node receives every announcement, so this keeps
        that load flat as the cooperative grows)."""
        return max(self.interval_s, len(self._entries) / budget_per_s)

    def _ttl(self, info: ExecutorInfo) -> float:
        return MISSED_INTERVALS * (info.interval_s or self.interval_s)

    def _alive(self, entry: tuple[ExecutorInfo, float], now: float) -> bool:
        return now - entry[1] <= self._ttl(entry[0])

    def expire(self, now: float) -> list[str]:
        """Drop entries not renewed for three intervals; returns their DIDs, sorted."""
        gone = sorted(d for d, e in self._entries.items() if not self._alive(e, now))
        for d in gone:
            self._drop(d)
        return gone

    def next_expiry(self) -> float | None:
        """When the next entry expires (for the driver's timer), None when empty."""
        if not self._entries:
            return None
        return min(t + self._ttl(i) for i, t in self._entries.values())

    def live(self, now: float) -> list[ExecutorInfo]:
        """The live entries, sorted by DID."""
        return [e[0] for _, e in sorted(self._entries.items()) if self._alive(e, now)]

    def get(self, did: str) -> ExecutorInfo | None:
        e = self._entries.get(did)
        return None if e is None else e[0]

    def candidates(
        self,
        profile: ResourceProfile | None,
        now: float,
        exclude: Iterable[str] = (),
        runtime: str = "wasm",
    ) -> frozenset[str]:
        """Live executors, not in ``exclude``, that offer ``runtime`` and whose totals could fit
        ``profile`` (a legacy task, ``profile`` None: every such live executor)."""
        ex = frozenset(exclude)
        return frozenset(
            d
            for d in self._entries
            if d not in ex and self.candidate(d, profile, now, runtime) is not None
        )

    def probe(
        self,
        profile: ResourceProfile | None,
        now: float,
        want: int,
        salt: bytes,
        exclude: Iterable[str] = (),
        runtime: str = "wasm",
    ) -> list[ExecutorInfo]:
        """Up to ``want`` distinct candidates (as :meth:`candidates` would count them) found by
        looking at no more than ``4 * want`` entries picked by a hash of ``salt``: O(want),
        whatever the registry's size (Sparrow's and Nomad's random probing). Deterministic for
        a given salt and registry."""
        ex = frozenset(exclude)
        n = len(self._order)
        found: dict[str, ExecutorInfo] = {}
        for j in range(4 * want):
            if len(found) >= want or n == 0:
                break
            digest = hashlib.blake2b(salt + j.to_bytes(4, "big"), digest_size=8).digest()
            did = self._order[int.from_bytes(digest, "big") % n]
            if did in found or did in ex:
                continue
            info = self.candidate(did, profile, now, runtime)
            if info is not None:
                found[did] = info
        return list(found.values())

    def candidate(
        self, did: str, profile: ResourceProfile | None, now: float, runtime: str = "wasm"
    ) -> ExecutorInfo | None:
        """``did``'s entry if it is a live candidate for ``profile`` and ``runtime``."""
        entry = self._entries.get(did)
        if entry is None or not self._alive(entry, now):
            return None
        info = entry[0]
        if runtime not in info.runtimes or (profile is not None and not info.could_fit(profile)):
            return None
        return info

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, did: object) -> bool:
        return did in self._entries
