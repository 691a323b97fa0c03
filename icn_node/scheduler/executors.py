"""What an executor announces about itself (``executor_announce``): :class:`ExecutorInfo`.

Carried on the wire and kept by every submitter's executor registry; validates itself on
construction (a bad field raises :class:`~icn_node.scheduler.tasks.TaskError` naming it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Annotated

from icn_node.codec import OMIT_DEFAULT
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.cluster_metrics import NodeMetrics
from icn_node.scheduler.coordinates import Coordinate
from icn_node.scheduler.locality import MAX_DID_LEN, MAX_REGION_LEN
from icn_node.scheduler.policy import MAX_QUEUE_DEPTH, RUNTIMES
from icn_node.scheduler.resources import NodeCapacity, ResourceProfile
from icn_node.scheduler.tasks import TaskDocument, TaskError, _task_errors

__all__ = ["ExecutorInfo"]


@dataclass(frozen=True, slots=True, eq=False)
class ExecutorInfo(TaskDocument):
    """One executor's announcement. ``capacity`` carries its current available figures (live
    capacity minus its reservations); the registry keeps its own snapshot of it. ``coordinate``
    is its network coordinate, so submitters can estimate RTTs to it (None: not known yet)."""

    did: str
    capacity: NodeCapacity
    queue_depth: int = 0
    metrics: NodeMetrics | None = None
    region: str | None = None
    announced_at: float = 0.0
    runtimes: tuple[str, ...] = ("wasm",)
    # Its network coordinate (netmap); left out of the document when unknown, so an
    # announcement without one reads exactly as before.
    coordinate: Annotated[Coordinate | None, OMIT_DEFAULT] = None
    # Seconds until its next announcement: the interval grows with the cooperative so that
    # announcements stay a fixed load on every node (None: the receiver's own interval).
    interval_s: Annotated[float | None, OMIT_DEFAULT] = None
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
            if self.coordinate is not None and not isinstance(self.coordinate, Coordinate):
                raise TaskError("executor_info.coordinate: expected a Coordinate or None")
            if self.interval_s is not None:
                s(
                    self,
                    "interval_s",
                    chk.number(
                        "executor_info.interval_s", self.interval_s, lo=0.0, hi=1e6, lo_open=True
                    ),
                )
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
        return bool(self.to_dict() == other.to_dict())

    __hash__ = None  # type: ignore[assignment]
