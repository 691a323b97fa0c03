"""Placement policies: how an executor decides whether, and how eagerly, to offer for a task.

A policy is anything with the :class:`PlacementPolicy` shape: given the request, this node's
state, this node's trust score, a :class:`~icn_node.scheduler.locality.LocalityContext` and the
current time, it returns a :class:`PlacementOffer` or a :class:`Decline` saying why not.

:class:`DefaultPlacementPolicy` runs, in order: the trust gate (``min_trust``), the hard filters
(:class:`AvoidDid`, :class:`RequireRegion`, resource fit, the :class:`MinimizeTransfer` limit,
the request's ``max_cost``), then scores in ``[0, 1]`` as the weighted sum of six components,
each in ``[0, 1]``: trust, capacity, queue, locality, network and jitter. The weights are
normalised to sum to 1. See docs/ARCHITECTURE.md (Scheduling) for every formula.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, runtime_checkable

from icn_node import codec
from icn_node.errors import ConfigError, ResourceError
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.locality import (
    BYTES_PER_MB,
    MAX_BLOB_BYTES,
    MAX_DID_LEN,
    MAX_HINT_BLOBS,
    AvoidDid,
    ColocateWith,
    DataLocality,
    LocalityContext,
    LocalityHint,
    MinimizeTransfer,
    PreferDid,
    PreferHighBandwidth,
    PreferLowLatency,
    PreferRegion,
    RequireRegion,
)
from icn_node.scheduler.resources import NodeCapacity, ResourceProfile

__all__ = [
    "COMPONENTS",
    "MAX_COST",
    "MIN_TRUST_EXECUTE",
    "WEIGHT_SETS",
    "Decline",
    "DeclineReason",
    "DefaultPlacementPolicy",
    "NodeState",
    "PlacementOffer",
    "PlacementPolicy",
    "PlacementRequest",
    "ScoreComponents",
    "Weights",
]

MIN_TRUST_EXECUTE = 0.3
MAX_COST = 2**53
MAX_QUEUE_DEPTH = 1_000_000
MAX_HINTS = 64
COMPONENTS = ("trust", "capacity", "queue", "locality", "network", "jitter")
NEUTRAL = 0.5
"""The locality/network component when no hint applies, and the jitter with no random source."""


def _unit(name: str, v: Any) -> float:
    return chk.number(name, v, lo=0.0, hi=1.0)


def _time(name: str, v: Any) -> float:
    return chk.number(name, v, lo=0.0, hi=math.inf)


# -- weights and components --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weights(codec.Document):
    """Relative weight of each score component. Any non-negative figures with a positive sum;
    :meth:`normalised` scales them to sum to 1 (the policy always scores with that)."""

    trust: Annotated[float, codec.Default(0.0)]
    capacity: Annotated[float, codec.Default(0.0)]
    queue: Annotated[float, codec.Default(0.0)]
    locality: float = 0.0
    network: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            object.__setattr__(
                self, name, chk.number(f"weights.{name}", getattr(self, name), lo=0.0, hi=1e6)
            )
        if self.total() <= 0.0:
            raise ResourceError("weights: at least one weight must be positive")

    def total(self) -> float:
        return math.fsum(self.as_tuple())

    def as_tuple(self) -> tuple[float, float, float, float, float, float]:
        """The weights in :data:`COMPONENTS` order."""
        return (self.trust, self.capacity, self.queue, self.locality, self.network, self.jitter)

    def normalised(self) -> Weights:
        t = self.total()
        return Weights(*(w / t for w in self.as_tuple()))

    @classmethod
    def named(cls, name: str) -> Weights:
        """One of :data:`WEIGHT_SETS` (``"phase16a"`` or ``"phase16c"``), normalised."""
        try:
            return WEIGHT_SETS[name].normalised()
        except KeyError:
            raise ConfigError(
                f"unknown weight set {name!r} (known: {', '.join(WEIGHT_SETS)})",
                key="scheduler.weights",
            ) from None


WEIGHT_SETS: Mapping[str, Weights] = {
    # Phase 16A: trust 40 %, capacity 30 %, queue 20 %, jitter 10 %.
    "phase16a": Weights(trust=0.4, capacity=0.3, queue=0.2, locality=0.0, network=0.0, jitter=0.1),
    # Phase 16C: the seed's figures sum to 1.05; the policy normalises them.
    "phase16c": Weights(
        trust=0.30, capacity=0.25, queue=0.15, locality=0.20, network=0.10, jitter=0.05
    ),
}


@dataclass(frozen=True, slots=True)
class ScoreComponents(codec.Document):
    """The six inputs of a score, each in ``[0, 1]``. Sent with an offer so the submitter can
    recompute the score with its own trust figure and weights."""

    trust: float
    capacity: float
    queue: float
    locality: float
    network: float
    jitter: float

    def __post_init__(self) -> None:
        t, c, q, lo, n, j = self.as_tuple()
        if (
            type(t) is float
            and type(c) is float
            and type(q) is float
            and type(lo) is float
            and type(n) is float
            and type(j) is float
            and 0.0 <= t <= 1.0
            and 0.0 <= c <= 1.0
            and 0.0 <= q <= 1.0
            and 0.0 <= lo <= 1.0
            and 0.0 <= n <= 1.0
            and 0.0 <= j <= 1.0
        ):
            return  # fast path for the scoring loop; NaN fails the comparisons
        for name in COMPONENTS:
            object.__setattr__(self, name, _unit(f"components.{name}", getattr(self, name)))

    def as_tuple(self) -> tuple[float, float, float, float, float, float]:
        return (self.trust, self.capacity, self.queue, self.locality, self.network, self.jitter)

    def weighted(self, weights: Weights) -> float:
        """Sum of component x weight with ``weights`` normalised, clamped to ``[0, 1]``."""
        t = weights.total()
        s = math.fsum(c * w for c, w in zip(self.as_tuple(), weights.as_tuple(), strict=True))
        return min(1.0, max(0.0, s / t))


# -- request, node state, offer, decline -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _HintPlan:
    """The hints of one request, sorted by what they do; built once per request."""

    avoid: frozenset[str]
    require_regions: frozenset[str]
    data_blobs: tuple[bytes, ...]
    sizes: Mapping[bytes, int]
    """Sizes the request states (the task's own data); others come from the blob registry."""
    transfer_limits: tuple[tuple[tuple[bytes, ...], int], ...]
    prefer_dids: frozenset[str]
    prefer_regions: frozenset[str]
    colocate: tuple[bytes, ...]
    max_rtt_ms: tuple[float, ...]
    min_mbps: tuple[float, ...]

    @classmethod
    def of(
        cls, hints: tuple[LocalityHint, ...], data: tuple[tuple[bytes, int], ...] = ()
    ) -> _HintPlan:
        """``data``: the task's own blobs (module, inputs) with their sizes. They count for
        locality like a :class:`DataLocality` hint, and a :class:`MinimizeTransfer` limit
        covers them as well as its own blobs."""
        avoid, req, prefer_d, prefer_r = set(), set(), set(), set()
        blobs: dict[bytes, None] = dict.fromkeys(h for h, _ in data)
        own = tuple(blobs)
        limits, colocate, rtt, mbps = [], [], [], []
        for h in hints:
            if isinstance(h, AvoidDid):
                avoid.add(h.did)
            elif isinstance(h, RequireRegion):
                req.add(h.region)
            elif isinstance(h, DataLocality):
                blobs.update(dict.fromkeys(h.blobs))
            elif isinstance(h, MinimizeTransfer):
                blobs.update(dict.fromkeys(h.blobs))
                limited = tuple(dict.fromkeys((*own, *h.blobs)))
                limits.append((limited, h.max_transfer_mb * BYTES_PER_MB))
            elif isinstance(h, PreferDid):
                prefer_d.add(h.did)
            elif isinstance(h, PreferRegion):
                prefer_r.add(h.region)
            elif isinstance(h, ColocateWith):
                colocate.append(h.task)
            elif isinstance(h, PreferLowLatency):
                rtt.append(h.max_rtt_ms)
            elif isinstance(h, PreferHighBandwidth):
                mbps.append(h.min_mbps)
        return cls(
            frozenset(avoid),
            frozenset(req),
            tuple(blobs),
            dict(data),
            tuple(limits),
            frozenset(prefer_d),
            frozenset(prefer_r),
            tuple(colocate),
            tuple(rtt),
            tuple(mbps),
        )


RUNTIMES = ("wasm", "exec")
"""How a task runs: in the WebAssembly sandbox, or as an operator-allowed host command."""


@dataclass(frozen=True, slots=True)
class PlacementRequest(codec.Document):
    """A submitter asks for a task to be placed."""

    task_hash: bytes
    profile: ResourceProfile
    submitter: str
    locality_hints: tuple[LocalityHint, ...] = ()
    max_cost: int | None = None
    """Credits per 1,000 fuel the submitter will pay at most (None: any)."""
    requested_at: float = 0.0
    runtime: Annotated[str, codec.OMIT_DEFAULT] = "wasm"
    """How the task runs: ``wasm`` (the sandbox) or ``exec`` (an operator-allowed host command);
    an executor that does not offer the runtime declines."""
    data: Annotated[tuple[tuple[bytes, int], ...], codec.OMIT_DEFAULT] = ()
    """The blobs the task reads — its module and inputs — with their sizes in bytes: data
    locality without any hint (compute goes to data), weighted by bytes."""
    _plan: _HintPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "task_hash", chk.hash32("placement_request.task_hash", self.task_hash))
        if self.runtime not in RUNTIMES:
            raise ResourceError(
                f"placement_request.runtime: one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            )
        if not isinstance(self.profile, ResourceProfile):
            raise ResourceError("placement_request.profile: expected a ResourceProfile")
        chk.text("placement_request.submitter", self.submitter, max_len=MAX_DID_LEN)
        hints = tuple(
            chk.sequence("placement_request.locality_hints", self.locality_hints, max_len=MAX_HINTS)
        )
        for i, h in enumerate(hints):
            if not isinstance(h, LocalityHint):
                raise ResourceError(
                    f"placement_request.locality_hints[{i}]: expected a "
                    f"LocalityHint, got {type(h).__name__}"
                )
        s(self, "locality_hints", hints)
        if self.max_cost is not None:
            chk.integer("placement_request.max_cost", self.max_cost, lo=0, hi=MAX_COST)
        s(self, "requested_at", _time("placement_request.requested_at", self.requested_at))
        data = tuple(chk.sequence("placement_request.data", self.data, max_len=MAX_HINT_BLOBS))
        for i, (h, size) in enumerate(data):
            chk.hash32(f"placement_request.data[{i}]", h)
            chk.integer(f"placement_request.data[{i}].size", size, lo=0, hi=MAX_BLOB_BYTES)
        s(self, "data", data)
        plan = _HintPlan.of(hints, data)
        if len(plan.data_blobs) > MAX_HINT_BLOBS:
            raise ResourceError(
                f"placement_request.locality_hints: more than {MAX_HINT_BLOBS} distinct blobs"
            )
        s(self, "_plan", plan)


@dataclass(frozen=True, slots=True)
class NodeState(codec.Document):
    """What the scoring node knows about itself.

    ``capacity`` should be a :meth:`NodeCapacity.snapshot` (the policy only reads it).
    ``load`` is the EWMA-smoothed CPU load in ``[0, 1]`` (see
    :class:`~icn_node.scheduler.cluster_metrics.ClusterMetrics`), None if not measured.
    ``queue_wait_s`` is the expected wait before a new task starts, if the node knows it;
    otherwise the policy estimates it from ``queue_depth``.
    """

    did: str
    capacity: NodeCapacity
    queue_depth: int = 0
    load: float | None = None
    queue_wait_s: float | None = None

    def __post_init__(self) -> None:
        chk.text("node_state.did", self.did, max_len=MAX_DID_LEN)
        if not isinstance(self.capacity, NodeCapacity):
            raise ResourceError("node_state.capacity: expected a NodeCapacity")
        chk.integer("node_state.queue_depth", self.queue_depth, lo=0, hi=MAX_QUEUE_DEPTH)
        if self.load is not None:
            object.__setattr__(self, "load", _unit("node_state.load", self.load))
        if self.queue_wait_s is not None:
            object.__setattr__(
                self, "queue_wait_s", _time("node_state.queue_wait_s", self.queue_wait_s)
            )


@dataclass(frozen=True, slots=True)
class PlacementOffer(codec.Document):
    """An executor's offer to run a task.

    ``score`` is the executor's own weighted score; submitters should not trust it and rank with
    :func:`~icn_node.scheduler.ranking.rank_offers`, which recomputes it from ``components``.
    ``cost`` is in credits per 1,000 fuel; ``estimated_start`` and ``offered_at`` are on the
    caller's clock.
    """

    task_hash: bytes
    executor: str
    score: float
    components: ScoreComponents
    cost: int
    estimated_start: float
    offered_at: float

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "task_hash", chk.hash32("placement_offer.task_hash", self.task_hash))
        chk.text("placement_offer.executor", self.executor, max_len=MAX_DID_LEN)
        s(self, "score", _unit("placement_offer.score", self.score))
        if not isinstance(self.components, ScoreComponents):
            raise ResourceError("placement_offer.components: expected ScoreComponents")
        chk.integer("placement_offer.cost", self.cost, lo=0, hi=MAX_COST)
        s(self, "estimated_start", _time("placement_offer.estimated_start", self.estimated_start))
        s(self, "offered_at", _time("placement_offer.offered_at", self.offered_at))


class DeclineReason(enum.Enum):
    """Why a policy will not offer."""

    LOW_TRUST = "low_trust"
    AVOIDED = "avoided"
    REGION = "region"
    NO_CAPACITY = "no_capacity"
    TRANSFER_LIMIT = "transfer_limit"
    COST = "cost"


@dataclass(frozen=True, slots=True)
class Decline(codec.Document):
    """A policy's "no", with a machine-readable reason and a human-readable detail."""

    reason: DeclineReason
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.reason, DeclineReason):
            raise ResourceError("decline.reason: expected a DeclineReason")
        chk.text("decline.detail", self.detail, max_len=1024, allow_empty=True)

    def __bool__(self) -> bool:
        # ``if result:`` reads as "did we get an offer?"
        return False


# -- policies --------------------------------------------------------------------------------


@runtime_checkable
class PlacementPolicy(Protocol):
    """The shape of a placement policy. Pure: no I/O, no clock (``now`` is given), and any
    randomness from a source injected at construction."""

    def score(
        self,
        request: PlacementRequest,
        node: NodeState,
        trust: float,
        context: LocalityContext,
        now: float,
    ) -> PlacementOffer | Decline:
        """Offer for ``request`` on ``node`` (whose own trust score is ``trust``), or decline."""
        ...


JitterSource = Callable[[], float] | random.Random


class DefaultPlacementPolicy:
    """Trust gate, hard filters, then a weighted score (see the module docstring).

    ``weights``: a :class:`Weights` or a name from :data:`WEIGHT_SETS` (default
    ``"phase16c"``). ``jitter``: a ``random.Random`` or a callable returning floats in
    ``[0, 1)``; without one the jitter component is a constant 0.5 (its mean), so scores are
    deterministic. ``base_cost``: credits per 1,000 fuel on an idle node; the cost rises
    linearly with queue depth to ``base_cost * max_cost_multiplier`` at ``queue_saturation``
    (the seed's 1.5x). ``mean_task_s``: the assumed run time of each queued task when the node
    does not report ``queue_wait_s``. ``default_rtt_ms``: the RTT assumed for an unmeasured
    peer (the seed's 100 ms).
    """

    __slots__ = (
        "weights",
        "min_trust",
        "base_cost",
        "max_cost_multiplier",
        "queue_saturation",
        "mean_task_s",
        "default_rtt_ms",
        "_draw",
        "_w",
    )

    def __init__(
        self,
        weights: Weights | str = "phase16c",
        *,
        min_trust: float = MIN_TRUST_EXECUTE,
        jitter: JitterSource | None = None,
        base_cost: int = 100,
        max_cost_multiplier: float = 1.5,
        queue_saturation: int = 10,
        mean_task_s: float = 60.0,
        default_rtt_ms: float = 100.0,
    ) -> None:
        def conf(key: str, fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except ResourceError as e:
                raise ConfigError(str(e), key=f"scheduler.{key}") from None

        if isinstance(weights, str):
            weights = Weights.named(weights)
        elif not isinstance(weights, Weights):
            raise ConfigError("expected a Weights or a weight set name", key="scheduler.weights")
        self.weights = weights.normalised()
        self._w = self.weights.as_tuple()
        self.min_trust: float = conf("min_trust", lambda: _unit("min_trust", min_trust))
        self.base_cost: int = conf(
            "base_cost", lambda: chk.integer("base_cost", base_cost, lo=0, hi=MAX_COST // 16)
        )
        self.max_cost_multiplier: float = conf(
            "max_cost_multiplier",
            lambda: chk.number("max_cost_multiplier", max_cost_multiplier, lo=1.0, hi=16.0),
        )
        self.queue_saturation: int = conf(
            "queue_saturation",
            lambda: chk.integer("queue_saturation", queue_saturation, lo=1, hi=MAX_QUEUE_DEPTH),
        )
        self.mean_task_s: float = conf(
            "mean_task_s", lambda: chk.number("mean_task_s", mean_task_s, lo=0.0, hi=1e9)
        )
        self.default_rtt_ms: float = conf(
            "default_rtt_ms", lambda: chk.number("default_rtt_ms", default_rtt_ms, lo=0.0, hi=3.6e6)
        )
        if jitter is None:
            self._draw: Callable[[], float] | None = None
        elif isinstance(jitter, random.Random):
            self._draw = jitter.random
        elif callable(jitter):
            self._draw = jitter
        else:
            raise ConfigError("expected a random.Random or a callable", key="scheduler.jitter")

    # -- the steps, public so that a cooperative's own policy can reuse them -----------------

    def queue_component(self, queue_depth: int) -> float:
        """1.0 for an empty queue, falling linearly to 0.0 at ``queue_saturation``."""
        return 1.0 - min(queue_depth / float(self.queue_saturation), 1.0)

    def cost(self, queue_depth: int) -> int:
        """Credits per 1,000 fuel: ``base_cost`` rising linearly with the queue to
        ``base_cost * max_cost_multiplier`` at saturation, rounded up."""
        pressure = min(queue_depth / self.queue_saturation, 1.0)
        return math.ceil(
            self.base_cost * (1.0 + (self.max_cost_multiplier - 1.0) * pressure) - 1e-9
        )

    @staticmethod
    def capacity_component(node: NodeState) -> float:
        """``available_ratio()``; with a measured ``load``, the mean of it and ``1 - load``."""
        ratio = node.capacity.available_ratio()
        if node.load is None:
            return ratio
        return 0.5 * (ratio + (1.0 - node.load))

    def jitter_component(self) -> float:
        if self._draw is None:
            return NEUTRAL
        j = self._draw()
        if not (0.0 <= j <= 1.0):  # also rejects NaN
            raise ResourceError(f"jitter: the random source returned {j!r}, outside [0, 1)")
        return j

    def score(
        self,
        request: PlacementRequest,
        node: NodeState,
        trust: float,
        context: LocalityContext,
        now: float,
    ) -> PlacementOffer | Decline:
        """See :class:`PlacementPolicy`. Hard filters run before anything is scored."""
        if not (0.0 <= trust <= 1.0):
            raise ResourceError(f"trust: must be in [0, 1], got {trust!r}")
        if trust < self.min_trust:
            return Decline(
                DeclineReason.LOW_TRUST, f"trust {trust:g} is below min_trust {self.min_trust:g}"
            )
        plan = request._plan
        did = node.did
        if did in plan.avoid:
            return Decline(DeclineReason.AVOIDED, f"{did} is on the task's avoid list")
        if plan.require_regions and (
            len(plan.require_regions) > 1 or context.region not in plan.require_regions
        ):
            return Decline(
                DeclineReason.REGION,
                f"region {context.region!r} not in required {sorted(plan.require_regions)}",
            )
        why = node.capacity.why_not(request.profile)
        if why is not None:
            return Decline(DeclineReason.NO_CAPACITY, why)

        locality, transfer_problem = self._locality(plan, did, context)
        if transfer_problem is not None:
            return Decline(DeclineReason.TRANSFER_LIMIT, transfer_problem)
        cost = self.cost(node.queue_depth)
        if request.max_cost is not None and cost > request.max_cost:
            return Decline(
                DeclineReason.COST, f"cost {cost} exceeds the request's max_cost {request.max_cost}"
            )

        comps = ScoreComponents(
            trust=trust,
            capacity=self.capacity_component(node),
            queue=self.queue_component(node.queue_depth),
            locality=locality,
            network=self._network(plan, did, request.submitter, context),
            jitter=self.jitter_component(),
        )
        w = self._w
        score = (
            comps.trust * w[0]
            + comps.capacity * w[1]
            + comps.queue * w[2]
            + comps.locality * w[3]
            + comps.network * w[4]
            + comps.jitter * w[5]
        )
        wait = (
            node.queue_wait_s
            if node.queue_wait_s is not None
            else node.queue_depth * self.mean_task_s
        )
        return PlacementOffer(
            task_hash=request.task_hash,
            executor=did,
            score=min(1.0, max(0.0, score)),
            components=comps,
            cost=cost,
            estimated_start=now + wait,
            offered_at=now,
        )

    def _locality(
        self, plan: _HintPlan, did: str, ctx: LocalityContext
    ) -> tuple[float, str | None]:
        """The locality component, and why a transfer limit excludes this node (or None).

        Parts, averaged: the fraction of the required blobs' *bytes* held here (the task's own
        data and :class:`DataLocality`/:class:`MinimizeTransfer` blobs; sizes from the request,
        else the blob registry; by count when no size is known), 1/0 per
        :class:`ColocateWith` task running here, 1/0 for a :class:`PreferDid` naming this node.
        No applicable part: 0.5.
        """
        parts: list[float] = []
        if plan.data_blobs:
            lookup = ctx.blobs.lookup
            sizes = plan.sizes
            total = local = n_local = 0
            here_map: dict[bytes, tuple[int | None, bool]] = {}
            for b in plan.data_blobs:
                e = lookup(b)
                stated = sizes.get(b)
                if e is None and stated is None:
                    here_map[b] = (None, False)
                    continue
                if stated is not None:
                    size = stated
                else:
                    assert e is not None
                    size = e[0]
                here = e is not None and did in e[1]
                here_map[b] = (size, here)
                total += size
                if here:
                    local += size
                    n_local += 1
            for blobs, limit in plan.transfer_limits:
                need = 0
                for b in blobs:
                    known, here = here_map[b]
                    if here:
                        continue
                    if known is None:
                        return 0.0, f"blob {b.hex()} is not held here and its size is unknown"
                    need += known
                if need > limit:
                    return 0.0, (
                        f"would transfer {need} bytes, limit is {limit // BYTES_PER_MB} MiB"
                    )
            parts.append(local / total if total > 0 else n_local / len(plan.data_blobs))
        if plan.colocate:
            tl = ctx.task_locations
            parts.extend(1.0 if tl.get(t) == did else 0.0 for t in plan.colocate)
        if plan.prefer_dids:
            parts.append(1.0 if did in plan.prefer_dids else 0.0)
        if not parts:
            return NEUTRAL, None
        return min(1.0, sum(parts) / len(parts)), None

    def _network(self, plan: _HintPlan, did: str, submitter: str, ctx: LocalityContext) -> float:
        """The network component: parts averaged, 0.5 when no network hint applies.

        :class:`PreferLowLatency` (max): 0 beyond ``max``, else ``1 - 0.5 * rtt / max``.
        :class:`PreferHighBandwidth` (min): 0 below ``min`` or unknown, else
        ``min(1, 0.5 + 0.5 * (bw - min) / min)``. :class:`PreferRegion`: 1 in a preferred
        region, else 0. RTT and bandwidth are to the submitter; the submitter itself is at 0 ms
        with unlimited bandwidth.
        """
        parts: list[float] = []
        if plan.max_rtt_ms:
            rtt = 0.0 if did == submitter else ctx.rtt_ms.get(submitter, self.default_rtt_ms)
            parts.extend(0.0 if rtt > m else 1.0 - 0.5 * rtt / m for m in plan.max_rtt_ms)
        if plan.min_mbps:
            bw = math.inf if did == submitter else ctx.bandwidth_mbps.get(submitter)
            parts.extend(
                0.0 if bw is None or bw < m else min(1.0, 0.5 + 0.5 * (bw - m) / m)
                for m in plan.min_mbps
            )
        if plan.prefer_regions:
            parts.append(1.0 if ctx.region in plan.prefer_regions else 0.0)
        if not parts:
            return NEUTRAL
        return min(1.0, max(0.0, sum(parts) / len(parts)))
