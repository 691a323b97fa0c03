"""The executor registry: who announced itself as an executor, with what, and is it still live.

Fed by ``ExecutorAnnounce`` gossip (the driver also feeds this node's own announcements when it
runs an executor, so a submitter expects itself like any other executor). An entry is live
until three announce intervals pass without a newer announcement, measured on the *local*
clock at receipt (peers' clocks are not compared with ours; ``announced_at`` only orders two
announcements from the same executor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from icn_node.compute.tasks import TaskError, _task_errors
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.cluster_metrics import NodeMetrics
from icn_node.scheduler.locality import MAX_DID_LEN, MAX_REGION_LEN
from icn_node.scheduler.policy import MAX_QUEUE_DEPTH, RUNTIMES
from icn_node.scheduler.resources import NodeCapacity, ResourceProfile

__all__ = ["MISSED_INTERVALS", "ExecutorInfo", "ExecutorRegistry"]

MISSED_INTERVALS = 3
"""An entry expires after this many announce intervals without a newer announcement."""


@dataclass(frozen=True, slots=True, eq=False)
class ExecutorInfo:
    """One executor's announcement. ``capacity`` carries its current available figures (live
    capacity minus its reservations); the registry keeps its own snapshot of it."""

    did: str
    capacity: NodeCapacity
    queue_depth: int = 0
    metrics: NodeMetrics | None = None
    region: str | None = None
    announced_at: float = 0.0
    runtimes: tuple[str, ...] = ("wasm",)
    _could_fit_cap: NodeCapacity = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = object.__setattr__
        with _task_errors():
            chk.text("executor_info.did", self.did, max_len=MAX_DID_LEN)
            if not isinstance(self.capacity, NodeCapacity):
                raise TaskError("executor_info.capacity: expected a NodeCapacity")
            s(self, "capacity", self.capacity.snapshot())
            chk.integer("executor_info.queue_depth", self.queue_depth, lo=0, hi=MAX_QUEUE_DEPTH)
            if self.metrics is not None and not isinstance(self.metrics, NodeMetrics):
                raise TaskError("executor_info.metrics: expected NodeMetrics or None")
            if self.region is not None:
                chk.text("executor_info.region", self.region, max_len=MAX_REGION_LEN)
            runtimes = tuple(chk.sequence("executor_info.runtimes", self.runtimes, max_len=8))
            for rt in runtimes:
                if rt not in RUNTIMES:
                    raise TaskError(f"executor_info.runtimes: unknown runtime {rt!r}")
            s(self, "runtimes", runtimes)
            s(
                self,
                "announced_at",
                chk.number("executor_info.announced_at", self.announced_at, lo=0.0, hi=math.inf),
            )
            c = self.capacity
            # "Could fit": the totals, with every GPU device counted (busy ones free up).
            s(
                self,
                "_could_fit_cap",
                NodeCapacity.from_totals(
                    c.cpu_cores_total,
                    c.memory_mb_total,
                    c.storage_mb_total,
                    c.network_mbps,
                    [replace(d, available=True) for d in c.gpu_devices],
                ),
            )

    def could_fit(self, profile: ResourceProfile) -> bool:
        """True when ``profile`` fits this executor's totals (it may be busy right now: then it
        declines quickly, which is why busy executors are still expected to answer)."""
        return self._could_fit_cap.can_fit(profile)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutorInfo):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self, *, json_safe: bool = False) -> dict[str, Any]:
        return {
            "did": self.did,
            "capacity": self.capacity.to_dict(),
            "queue_depth": self.queue_depth,
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
            "region": self.region,
            "announced_at": self.announced_at,
            "runtimes": list(self.runtimes),
        }

    @classmethod
    def from_dict(cls, d: Any) -> ExecutorInfo:
        with _task_errors():
            d = chk.mapping("executor_info", d)
            m = d.get("metrics")
            return cls(
                did=chk.field("executor_info", d, "did"),
                capacity=NodeCapacity.from_dict(chk.field("executor_info", d, "capacity")),
                queue_depth=d.get("queue_depth", 0),
                metrics=None if m is None else NodeMetrics.from_dict(m),
                region=d.get("region"),
                announced_at=d.get("announced_at", 0.0),
                runtimes=tuple(d.get("runtimes", ("wasm",))),
            )


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

    def _alive(self, received_at: float, now: float) -> bool:
        return now - received_at <= self.ttl_s

    def expire(self, now: float) -> list[str]:
        """Drop entries not renewed for three intervals; returns their DIDs, sorted."""
        gone = sorted(d for d, (_, t) in self._entries.items() if not self._alive(t, now))
        for d in gone:
            del self._entries[d]
        return gone

    def next_expiry(self) -> float | None:
        """When the next entry expires (for the driver's timer), None when empty."""
        if not self._entries:
            return None
        return min(t for _, t in self._entries.values()) + self.ttl_s

    def live(self, now: float) -> list[ExecutorInfo]:
        """The live entries, sorted by DID."""
        return [i for d, (i, t) in sorted(self._entries.items()) if self._alive(t, now)]

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
