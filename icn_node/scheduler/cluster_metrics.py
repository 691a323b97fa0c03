"""Cluster load metrics (after atomr-cluster-metrics): samples, smoothing and load-aware picks.

:class:`NodeMetrics` is one node's load sample; executors gossip it with their announcements.
:class:`ClusterMetrics` keeps the newest sample per node and, optionally, an :class:`Ewma` of
each node's CPU load, which the daemon feeds into :attr:`NodeState.load` (the capacity
component). :class:`AdaptiveLoadBalancer` picks the least-loaded node; :class:`WeightedRoutees`
picks with probability proportional to a :class:`MetricsSelector` weight, from a random draw
the caller passes in. Nothing here reads a clock: timestamps are the caller's.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from icn_node import codec
from icn_node.errors import ResourceError
from icn_node.scheduler import _checks as chk

__all__ = [
    "AdaptiveLoadBalancer",
    "ClusterMetrics",
    "Ewma",
    "MetricsSelector",
    "NodeMetrics",
    "WeightedRoutees",
]

MAX_BYTES = 2**62
UNKNOWN_WEIGHT = 0.5
"""The weight :class:`WeightedRoutees` gives a node it has no metrics for (as atomr does)."""


@dataclass(frozen=True, slots=True)
class NodeMetrics(codec.Document):
    """One load sample. ``cpu_load`` is in ``[0, 1]`` (1.0 = every core busy); memory in bytes."""

    address: str
    timestamp: float
    cpu_load: float
    memory_used: int
    memory_max: int

    def __post_init__(self) -> None:
        chk.text("node_metrics.address", self.address, max_len=512)
        object.__setattr__(
            self,
            "timestamp",
            chk.number("node_metrics.timestamp", self.timestamp, lo=0.0, hi=math.inf),
        )
        object.__setattr__(
            self, "cpu_load", chk.number("node_metrics.cpu_load", self.cpu_load, lo=0.0, hi=1.0)
        )
        chk.integer("node_metrics.memory_max", self.memory_max, lo=0, hi=MAX_BYTES)
        chk.integer("node_metrics.memory_used", self.memory_used, lo=0, hi=MAX_BYTES)
        if self.memory_used > self.memory_max:
            raise ResourceError(
                f"node_metrics.memory_used: {self.memory_used} exceeds memory_max {self.memory_max}"
            )

    def memory_usage(self) -> float:
        """Used memory as a fraction of max, in ``[0, 1]``; 0.0 when ``memory_max`` is 0."""
        return 0.0 if self.memory_max == 0 else self.memory_used / self.memory_max


@dataclass(frozen=True, slots=True)
class Ewma(codec.Document):
    """Exponentially weighted moving average. Immutable: :meth:`update` returns a new value.

    ``alpha`` in ``(0, 1]``: larger follows new samples more aggressively.
    """

    value: float
    alpha: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", chk.number("ewma.value", self.value, lo=-1e300, hi=1e300))
        object.__setattr__(
            self, "alpha", chk.number("ewma.alpha", self.alpha, lo=0.0, hi=1.0, lo_open=True)
        )

    @classmethod
    def from_half_life(cls, initial: float, half_life_samples: float) -> Ewma:
        """``alpha = 1 - 2**(-1/half_life)``: after ``half_life_samples`` samples the old value
        weighs exactly one half."""
        h = chk.number("ewma.half_life_samples", half_life_samples, lo=0.0, hi=1e9, lo_open=True)
        return cls(initial, 1.0 - 2.0 ** (-1.0 / h))

    def update(self, sample: float) -> Ewma:
        """Fold in ``sample``: ``alpha * sample + (1 - alpha) * value``."""
        x = chk.number("ewma.sample", sample, lo=-1e300, hi=1e300)
        return Ewma(self.alpha * x + (1.0 - self.alpha) * self.value, self.alpha)


class ClusterMetrics:
    """The newest :class:`NodeMetrics` per address, plus a smoothed CPU load per address.

    :meth:`publish` ignores a sample older than the one held (gossip may deliver out of order);
    with ``half_life_samples`` set, each accepted sample is folded into that node's EWMA (the
    first one starts it). Mutable, not thread-safe: one owner (the daemon's scheduler task).
    """

    __slots__ = ("_entries", "_smooth", "_half_life")

    def __init__(self, half_life_samples: float | None = None) -> None:
        self._entries: dict[str, NodeMetrics] = {}
        self._smooth: dict[str, Ewma] = {}
        self._half_life = (
            None
            if half_life_samples is None
            else chk.number(
                "cluster_metrics.half_life_samples", half_life_samples, lo=0.0, hi=1e9, lo_open=True
            )
        )

    def publish(self, m: NodeMetrics) -> bool:
        """Store ``m`` unless a newer sample for its address is held; True if stored."""
        if not isinstance(m, NodeMetrics):
            raise ResourceError("cluster_metrics.publish: expected NodeMetrics")
        prev = self._entries.get(m.address)
        if prev is not None and prev.timestamp > m.timestamp:
            return False
        self._entries[m.address] = m
        if self._half_life is not None:
            e = self._smooth.get(m.address)
            self._smooth[m.address] = (
                Ewma.from_half_life(m.cpu_load, self._half_life)
                if e is None
                else e.update(m.cpu_load)
            )
        return True

    def publish_all(self, ms: Iterable[NodeMetrics]) -> int:
        """Publish a batch; returns how many were stored."""
        return sum(self.publish(m) for m in ms)

    def get(self, address: str) -> NodeMetrics | None:
        return self._entries.get(address)

    def load(self, address: str) -> float | None:
        """The smoothed CPU load when smoothing is on, else the latest sample's; None if
        unknown. Always within ``[0, 1]``."""
        e = self._smooth.get(address)
        if e is not None:
            return min(1.0, max(0.0, e.value))
        m = self._entries.get(address)
        return None if m is None else m.cpu_load

    def snapshot(self) -> list[NodeMetrics]:
        """Every held sample, sorted by address."""
        return [self._entries[a] for a in sorted(self._entries)]

    def node_count(self) -> int:
        return len(self._entries)

    def remove(self, address: str) -> None:
        self._entries.pop(address, None)
        self._smooth.pop(address, None)

    def prune(self, older_than: float) -> list[str]:
        """Forget nodes whose newest sample is older than ``older_than``; returns their
        addresses, sorted."""
        gone = sorted(a for a, m in self._entries.items() if m.timestamp < older_than)
        for a in gone:
            self.remove(a)
        return gone


class MetricsSelector(enum.Enum):
    """Which dimension weighs a node: lower CPU load, lower memory use, or their mean."""

    CPU = "cpu"
    HEAP = "heap"
    MIX = "mix"

    # The seed's spellings.
    Cpu = "cpu"
    Heap = "heap"
    Mix = "mix"

    def weight(self, m: NodeMetrics) -> float:
        """In ``[0, 1]``; larger is a more attractive target."""
        cpu = min(1.0, max(0.0, 1.0 - m.cpu_load))
        heap = min(1.0, max(0.0, 1.0 - m.memory_usage()))
        if self is MetricsSelector.CPU:
            return cpu
        if self is MetricsSelector.HEAP:
            return heap
        return 0.5 * (cpu + heap)


class AdaptiveLoadBalancer:
    """Picks the candidate with the lowest load in a :class:`ClusterMetrics`.

    Unknown nodes count as fully loaded; ties (and the no-metrics case) go to the smallest
    address, so the pick is deterministic.
    """

    __slots__ = ("metrics",)

    def __init__(self, metrics: ClusterMetrics) -> None:
        self.metrics = metrics

    def pick(self, candidates: Sequence[str]) -> str | None:
        if not candidates:
            return None

        def key(a: str) -> tuple[float, str]:
            load = self.metrics.load(a)
            return (math.inf if load is None else load, a)

        return min(candidates, key=key)


class WeightedRoutees:
    """Picks a candidate with probability proportional to its selector weight.

    The random draw is an argument, so the pick is a pure function of (metrics, candidates,
    draw). A node without metrics weighs :data:`UNKNOWN_WEIGHT`; a node of weight 0 is never
    picked while any candidate has weight; if all weigh 0, the first candidate is returned.
    """

    __slots__ = ("metrics", "selector")

    def __init__(self, metrics: ClusterMetrics, selector: MetricsSelector = MetricsSelector.MIX):
        if not isinstance(selector, MetricsSelector):
            raise ResourceError("weighted_routees.selector: expected a MetricsSelector")
        self.metrics = metrics
        self.selector = selector

    def weights(self, candidates: Sequence[str]) -> list[float]:
        out = []
        for c in candidates:
            m = self.metrics.get(c)
            out.append(UNKNOWN_WEIGHT if m is None else self.selector.weight(m))
        return out

    def pick(self, candidates: Sequence[str], draw: float) -> str | None:
        """``draw`` is a random float in ``[0, 1)`` (for example ``rng.random()``)."""
        if not candidates:
            return None
        d = chk.number("weighted_routees.draw", draw, lo=0.0, hi=1.0)
        ws = self.weights(candidates)
        total = math.fsum(ws)
        if total <= 0.0:
            return candidates[0]
        target = d * total
        acc = 0.0
        last = None
        for c, w in zip(candidates, ws, strict=True):
            if w <= 0.0:
                continue
            acc += w
            last = c
            if target < acc:
                return c
        return last  # draw == 1.0, or rounding at the top end
