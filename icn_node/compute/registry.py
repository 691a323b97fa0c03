"""The executor registry: who announced itself as an executor, with what, and is it still live.

Fed by ``ExecutorAnnounce`` gossip (the driver also feeds this node's own announcements when it
runs an executor, so a submitter expects itself like any other executor). An entry is live
until three announce intervals pass without a newer announcement, measured on the *local*
clock at receipt (peers' clocks are not compared with ours; ``announced_at`` only orders two
announcements from the same executor).
"""

from __future__ import annotations

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

    __slots__ = ("interval_s", "_entries")

    def __init__(self, interval_s: float) -> None:
        with _task_errors():
            self.interval_s = chk.number(
                "compute.announce_interval_s", interval_s, lo=0.0, hi=1e9, lo_open=True
            )
        self._entries: dict[str, tuple[ExecutorInfo, float]] = {}

    @property
    def ttl_s(self) -> float:
        return MISSED_INTERVALS * self.interval_s

    def announce(self, info: ExecutorInfo, now: float) -> bool:
        """Record ``info``, received at ``now``. An announcement older than (or as old as) the
        one held is ignored; returns whether it was taken."""
        old = self._entries.get(info.did)
        if old is not None and old[0].announced_at >= info.announced_at:
            return False
        self._entries[info.did] = (info, now)
        return True

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
            del self._entries[d]
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
            i.did
            for i in self.live(now)
            if i.did not in ex
            and runtime in i.runtimes
            and (profile is None or i.could_fit(profile))
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, did: object) -> bool:
        return did in self._entries
