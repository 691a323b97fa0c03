"""The compute wing's one pure core: :class:`ComputeCore`, the object the driver talks to.

Like wsproto's ``WSConnection`` over its sub-machines, it owns this node's
:class:`~icn_node.compute.submitter.SubmitterCore`, its
:class:`~icn_node.compute.executor.ExecutorCore` (when it runs one) and the
:class:`~icn_node.compute.registry.ExecutorRegistry`, and every decision between them:

* **routing** — :meth:`ComputeCore.receive` takes one decoded message from an authenticated
  sender and hands it to the sub-core method that handles it; a message that speaks for another
  node (a request whose submitter, or an announcement whose DID, is not its sender) is
  :class:`~icn_node.compute.effects.Rejected`;
* **delivery to itself** — a message the sub-cores address to this node (a request to its own
  executor, a gossip it publishes) is queued and handled after the effects that produced it,
  breadth first, inside the same call: never re-entrantly, and never through the driver;
* **announcements** — when this executor announces its capacity: every
  ``announce_interval_s``, early on a significant capacity change (at most once per half
  interval) and when a peer joins (at most once per second);
* **task locations** — which executor runs which task (from ``task_claimed``), bounded, for
  ``ColocateWith`` hints;
* **forgetting** — a task that reached its final state is dropped from the submitter core once
  its record is emitted (the driver keeps the row).

Everything is a method call with ``now``; the effects come back as a list, in order
(:mod:`icn_node.compute.effects`). Nothing here reads a clock, does I/O or imports trio.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from icn_node.compute.effects import (
    RATE_LIMITED,
    REPLICAS,
    Count,
    Effect,
    Ignored,
    Publish,
    Rejected,
    Send,
    StateChanged,
)
from icn_node.compute.executor import ExecutorCore
from icn_node.compute.records import JobRecord, TaskRecord
from icn_node.compute.registry import ExecutorRegistry
from icn_node.compute.replicas import Replicas
from icn_node.compute.reputation import VERIFY
from icn_node.compute.submitter import SubmitterCore
from icn_node.limits import RateLimiter
from icn_node.scheduler.cluster_metrics import NodeMetrics
from icn_node.scheduler.coordinates import Coordinate
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.locality import BlobRegistry, LocalityContext
from icn_node.scheduler.policy import DefaultPlacementPolicy
from icn_node.scheduler.resources import NodeCapacity
from icn_node.scheduler.tasks import TaskResult, TaskSpec
from icn_node.wire import (
    AbandonMsg,
    ClaimMsg,
    ClaimReplyMsg,
    ClaimRequestMsg,
    DeclineMsg,
    ExecutorAnnounceMsg,
    GrantMsg,
    Message,
    PlacementOfferMsg,
    PlacementRequestMsg,
    RefuseMsg,
    ResultAckMsg,
    TaskCancelMsg,
    TaskClaimedMsg,
    TaskHeartbeatMsg,
    TaskResultMsg,
    TaskSubmittedMsg,
)

if TYPE_CHECKING:
    from icn_node.config import ComputeSection

__all__ = ["MAX_TASK_LOCATIONS", "MIN_ANNOUNCE_GAP_S", "ComputeCore"]

MAX_TASK_LOCATIONS = 10_000
"""Task -> executor entries kept for ``ColocateWith`` (oldest dropped)."""
MIN_ANNOUNCE_GAP_S = 1.0
ANNOUNCES_PER_S = 2.0
ANNOUNCE_BURST = 10.0
"""An honest executor announces at most about once a second; more from one origin is a flood."""
"""Early announcements (capacity moved, a peer joined) are at least this far apart."""


class ComputeCore:
    """This node's compute protocol. See the module docstring.

    ``trust``: this node's trust in a DID. ``submitter``/``executor``/``registry``: the
    sub-cores (``executor`` None: this node only submits). ``region``: this node's region, for
    announcements and locality. ``blob_registry`` / ``rtt_ms`` / ``bandwidth_mbps``: what this
    node knows of where blobs are and of its round-trip times and bandwidths, read when an
    executor scores a request (the driver supplies them; a simulator supplies its own).
    ``coordinate``: this node's network coordinate, read into each announcement (None:
    announced without one).
    """

    def __init__(
        self,
        did: str,
        *,
        submitter: SubmitterCore,
        registry: ExecutorRegistry,
        executor: ExecutorCore | None = None,
        region: str | None = None,
        blob_registry: Callable[[], BlobRegistry] = BlobRegistry,
        rtt_ms: Callable[[], Mapping[str, float]] = dict,
        bandwidth_mbps: Callable[[], Mapping[str, float]] = dict,
        coordinate: Callable[[], Coordinate | None] | None = None,
        max_requests_per_s: float = 300.0,
        announce_budget_per_s: float = 5.0,
    ) -> None:
        self.did = did
        self.announce_budget_per_s = announce_budget_per_s
        """Announcements a second the whole cooperative should make: the interval grows past
        ``announce_interval_s`` once the executors known would make more (see
        :meth:`ExecutorRegistry.interval_for`)."""
        self.submitter = submitter
        self.executor = executor
        self.registry = registry
        self.region = region
        self._blob_registry = blob_registry
        self._rtt_ms = rtt_ms
        self._bandwidth_mbps = bandwidth_mbps
        self._coordinate = coordinate
        self.task_locations: OrderedDict[bytes, str] = OrderedDict()
        self.replicas = Replicas()
        submitter.avoid = self._replica_executors
        # Host readings, for announcements and scoring.
        self._metrics: NodeMetrics | None = None
        self._load: float | None = None
        # Announcements: when the last went out, and how many peers it could reach.
        self._request_limit = RateLimiter(max_requests_per_s, 2 * max_requests_per_s)
        self._announce_limit = RateLimiter(ANNOUNCES_PER_S, ANNOUNCE_BURST)
        self._announced_at = -math.inf
        self._announced_to = 0
        self._peers = 0

    @classmethod
    def from_config(
        cls,
        did: str,
        trust: Callable[[str], float],
        compute: ComputeSection,
        *,
        capacity: NodeCapacity | None,
        rng: random.Random,
        region: str | None = None,
        blob_registry: Callable[[], BlobRegistry] = BlobRegistry,
        rtt_ms: Callable[[], Mapping[str, float]] = dict,
        bandwidth_mbps: Callable[[], Mapping[str, float]] = dict,
        coordinate: Callable[[], Coordinate | None] | None = None,
    ) -> ComputeCore:
        """Build from the ``[compute]`` config section. The executor runs when
        ``compute.executor`` is set; ``capacity`` is its starting capacity."""
        window_s = compute.offer_window_ms / 1000.0
        registry = ExecutorRegistry(compute.announce_interval_s)
        submitter = SubmitterCore(
            did,
            trust,
            registry,
            offer_window_s=window_s,
            max_attempts=compute.max_attempts,
            max_negotiating=compute.max_negotiating,
            min_trust=compute.min_trust_execute,
            lease_timeout_s=compute.lease_timeout_s,
            claim_timeout_s=compute.claim_timeout_s,
            rng=rng,
            weights=compute.placement_weights,
            blobs=blob_registry,
            link_grace_s=compute.link_grace_s,
            invite=compute.invite,
        )
        executor = None
        if compute.executor:
            executor = ExecutorCore(
                did,
                capacity or NodeCapacity.from_totals(0.0, 0, 0, 0.0),
                DefaultPlacementPolicy(weights=compute.placement_weights, jitter=rng),
                trust,
                min_trust=compute.min_trust_execute,
                runtimes=("wasm", "exec") if compute.exec_allowlist else ("wasm",),
                deliberation_s=compute.deliberation_ms / 1000.0,
                offer_window_s=window_s,
                heartbeat_interval_s=compute.heartbeat_interval_s,
                result_resend_s=compute.result_resend_s,
            )
        return cls(
            did,
            submitter=submitter,
            registry=registry,
            executor=executor,
            region=region,
            blob_registry=blob_registry,
            rtt_ms=rtt_ms,
            bandwidth_mbps=bandwidth_mbps,
            coordinate=coordinate,
            max_requests_per_s=compute.max_requests_per_s,
            announce_budget_per_s=compute.announce_budget_per_s,
        )

    # -- events from the network -----------------------------------------------------------

    def receive(self, sender: str, msg: Message, now: float) -> list[Effect]:
        """One decoded message from ``sender`` (the authenticated origin, never a field)."""
        return self._settle(self._route(sender, msg, now), now)

    def _route(self, sender: str, msg: Message, now: float) -> list[Effect]:
        sub = self.submitter
        if sender != self.did:
            limited = self._rate_limited(sender, msg, now)
            if limited:
                return limited
        match msg:
            # Origin checks first: a message that speaks for another node is refused.
            case PlacementRequestMsg() if msg.request.submitter != sender:
                return [Rejected(msg.TAG, sender, "the request's submitter is not its sender")]
            case TaskSubmittedMsg() if msg.spec.submitter != sender:
                return [Rejected(msg.TAG, sender, "the task's submitter is not its sender")]
            case ExecutorAnnounceMsg() if msg.info.did != sender:
                return [Rejected(msg.TAG, sender, "an announcement for another node")]
            # To the submitter side (and the registry it reads).
            case ExecutorAnnounceMsg():
                self.registry.announce(msg.info, now)
                return []
            case PlacementOfferMsg():
                return sub.on_offer(msg.offer, sender, msg.attempt, now)
            case DeclineMsg():
                return sub.on_decline(
                    msg.task, sender, msg.attempt, msg.reason, now, detail=msg.detail
                )
            case ClaimReplyMsg():
                return sub.on_claim_reply(
                    msg.task, sender, msg.attempt, msg.accepted, msg.reason, now
                )
            case ClaimRequestMsg():
                return sub.on_claim_request(msg.task, sender, msg.attempt, now)
            case TaskHeartbeatMsg():
                return sub.on_heartbeat(msg.task, sender, msg.attempt, now)
            case TaskResultMsg():
                return sub.on_result(msg.result, sender, msg.task, now)
            case AbandonMsg():
                return sub.on_abandon(msg.task, sender, msg.attempt, msg.reason, now)
            case TaskClaimedMsg():
                self._locate(msg.task, msg.winner)
        return self._to_executor(sender, msg, now)

    def _rate_limited(self, sender: str, msg: Message, now: float) -> list[Effect]:
        """Per-origin limits on what a member can make every executor work on: placement
        requests (and legacy submissions) and announcements. Over the limit: dropped, counted."""
        if isinstance(msg, PlacementRequestMsg | TaskSubmittedMsg):
            limiter, what = self._request_limit, "request"
        elif isinstance(msg, ExecutorAnnounceMsg):
            limiter, what = self._announce_limit, "announce"
        else:
            return []
        if limiter.allow(sender, now):
            return []
        return [Count(RATE_LIMITED, what), Ignored(f"{what} rate limit", sender=sender)]

    def _to_executor(self, sender: str, msg: Message, now: float) -> list[Effect]:
        ex = self.executor
        if ex is None:
            if isinstance(msg, ClaimMsg):
                return [
                    Send(sender, ClaimReplyMsg(msg.task, msg.attempt, False, "not_an_executor"))
                ]
            return []
        match msg:
            case PlacementRequestMsg():
                released = ex.on_released(sender, msg.released, now) if msg.released else []
                return released + ex.on_request(
                    msg.request,
                    msg.attempt,
                    now,
                    self._context(),
                    self._load,
                    window_s=msg.window_s,
                    excluded=msg.excluded,
                )
            case TaskSubmittedMsg():
                return ex.on_task_submitted(
                    msg.spec, msg.attempt, now, window_s=msg.window_s, excluded=msg.excluded
                )
            case TaskClaimedMsg():
                return ex.on_task_claimed(msg.task, msg.winner, msg.attempt, now)
            case TaskCancelMsg():
                return ex.on_cancel(msg.task, sender, now, msg.attempt)
            case ClaimMsg():
                return ex.on_claim(msg.task, sender, msg.attempt, msg.spec, now)
            case GrantMsg():
                return ex.on_grant(msg.task, sender, msg.attempt, msg.spec, now)
            case RefuseMsg():
                return ex.on_refuse(msg.task, sender, msg.attempt, now)
            case ResultAckMsg():
                return ex.on_result_ack(msg.task, sender, now, msg.attempt)
        return [Ignored(f"not a compute message: {msg.TAG}", sender=sender)]

    def _settle(self, effects: list[Effect], now: float) -> list[Effect]:
        """Deliver what this node sends itself (breadth first, after the effects that sent it),
        then forget tasks that just ended. Returns the effects for the driver."""
        out: list[Effect] = []
        mine: deque[Message] = deque()

        def take(batch: Iterable[Effect]) -> None:
            for e in batch:
                if isinstance(e, Send) and e.to == self.did:
                    mine.append(e.msg)
                    continue
                if isinstance(e, Publish):
                    mine.append(e.msg)  # gossip reaches this node's own cores too
                out.append(e)

        take(effects)
        checked = 0
        while mine or checked < len(out):
            while mine:
                take(self._route(self.did, mine.popleft(), now))
            while checked < len(out):  # replicas settle as their tasks end
                e = out[checked]
                checked += 1
                if isinstance(e, StateChanged) and e.new.is_final and e.record.spec.group:
                    take(self._replica_done(e.record, now))
        for e in out:
            if isinstance(e, StateChanged) and e.new.is_final:
                rec = self.submitter.record(e.task_hash)
                if rec is not None and rec.state.is_final:
                    self.submitter.forget(e.task_hash)
        return out

    # -- replicas ----------------------------------------------------------------------------

    def _replica_executors(self, spec: TaskSpec) -> frozenset[str]:
        """Executors claimed for (or running) the other replicas of ``spec``'s group."""
        out: set[str] = set()
        for h in self.replicas.siblings(spec):
            assert spec.group is not None
            rec = self.submitter.record(h) or self.replicas.final(h, spec.group)
            if rec is not None:
                out.update(rec.claimed)
                if rec.executor:
                    out.add(rec.executor)
        return frozenset(out)

    def _replica_done(self, rec: TaskRecord, now: float) -> list[Effect]:
        assert rec.spec.group is not None
        self.replicas.finished(rec)
        v, extra = self.replicas.decide(rec.spec.group)
        if v.kind == "pending":
            return []
        if extra is not None:
            self.replicas.track(extra)
            return [Count(REPLICAS, "extra"), *self.submitter.submit(extra, now)]
        effects: list[Effect] = [Count(REPLICAS, v.kind)]
        for d in v.minority:
            effects += self.submitter.penalize(d, VERIFY, now)
        return effects

    def _context(self) -> LocalityContext:
        return LocalityContext.trusted(
            region=self.region,
            blobs=self._blob_registry(),
            rtt_ms=self._rtt_ms(),
            bandwidth_mbps=self._bandwidth_mbps(),
            task_locations=self.task_locations,
        )

    def _locate(self, task_hash: bytes, executor: str) -> None:
        self.task_locations[task_hash] = executor
        self.task_locations.move_to_end(task_hash)
        if len(self.task_locations) > MAX_TASK_LOCATIONS:
            self.task_locations.popitem(last=False)

    # -- events from the user ----------------------------------------------------------------

    def submit(self, spec: TaskSpec, now: float) -> list[Effect]:
        """A new task from this node's user (``compute.submit``); a replica joins its group."""
        self.replicas.track(spec)
        return self._settle(self.submitter.submit(spec, now), now)

    def cancel(self, task_hash: bytes, now: float) -> list[Effect]:
        """Cancel a task in flight; a task the core no longer holds (ended) is ignored."""
        if self.submitter.record(task_hash) is None:
            return [Ignored("cancel: the task is not in flight", task_hash)]
        return self._settle(self.submitter.cancel(task_hash, now), now)

    # -- events from the sandbox -------------------------------------------------------------

    def _executor(self, what: str) -> ExecutorCore:
        if self.executor is None:
            raise RuntimeError(f"{what}: this node runs no executor")
        return self.executor

    def run_started(self, task_hash: bytes, now: float) -> list[Effect]:
        """The sandbox started (the blobs are here)."""
        return self._settle(self._executor("run_started").on_run_started(task_hash, now), now)

    def run_finished(self, task_hash: bytes, result: TaskResult, now: float) -> list[Effect]:
        """The run ended (also when stopped, or when it failed to start)."""
        ex = self._executor("run_finished")
        return self._settle(ex.on_run_finished(task_hash, result, now), now)

    def run_abandoned(self, task_hash: bytes, reason: str, now: float) -> list[Effect]:
        """The run could not start for a reason that is not the task's fault (its blobs
        cannot be fetched): give it back so it is placed elsewhere."""
        return self._settle(self._executor("run_abandoned").abandon(task_hash, reason, now), now)

    # -- events from the host and the mesh ---------------------------------------------------

    def host_changed(
        self,
        capacity: NodeCapacity | None,
        metrics: NodeMetrics | None,
        load: float | None,
        now: float,
    ) -> list[Effect]:
        """A new reading of the host: capacity (None: unchanged), load metrics, smoothed CPU
        load. An early announcement follows through :meth:`next_deadline` if it moved much."""
        self._metrics = metrics
        self._load = load
        if capacity is not None and self.executor is not None:
            return self._settle(self.executor.update_capacity(capacity, now), now)
        return []

    def link_down(self, did: str, now: float) -> list[Effect]:
        """This node lost its link to ``did``: a task it claimed or runs for us is lost unless
        the link returns within the grace (``compute.link_grace_s``)."""
        return self._settle(self.submitter.link_down(did, now), now)

    def link_up(self, did: str, now: float) -> list[Effect]:
        """A link to ``did`` is (back) up."""
        return self._settle(self.submitter.link_up(did, now), now)

    def peers_changed(self, peers: int, now: float) -> list[Effect]:
        """The mesh now has ``peers`` peers. A peer that just joined has not heard this
        executor: it announces again (at most once per ``MIN_ANNOUNCE_GAP_S``)."""
        self._peers = peers
        if peers < self._announced_to:
            self._announced_to = peers
        return []

    # -- restart -----------------------------------------------------------------------------

    def restore(
        self,
        tasks: Iterable[TaskRecord],
        jobs: Iterable[JobRecord],
        now: float,
        replicas_done: Iterable[TaskRecord] = (),
    ) -> list[Effect]:
        """Resume after a restart, on a fresh core, from the records the driver stored:
        unfinished ``tasks``, this executor's ``jobs``, and the final records of replicas whose
        group is not settled (``replicas_done``)."""
        tasks = list(tasks)
        for rec in tasks:
            self.replicas.track(rec.spec)
        for rec in replicas_done:
            self.replicas.track(rec.spec)
            self.replicas.finished(rec)
        effects = self.submitter.restore(tasks, now)
        if self.executor is not None:
            effects += self.executor.restore(jobs, now)
        return self._settle(effects, now)

    # -- timers ------------------------------------------------------------------------------

    def _announce_at(self) -> float | None:
        ex = self.executor
        if ex is None:
            return None
        last = self._announced_at
        interval = self.announce_interval()
        due = last + interval
        if self._peers > self._announced_to:
            due = min(due, last + MIN_ANNOUNCE_GAP_S)
        if due > last + MIN_ANNOUNCE_GAP_S and ex.significant_change():
            # Submitters judge "could fit" against announced totals, so an early announcement
            # is a courtesy: at most one per half interval.
            due = min(due, last + max(MIN_ANNOUNCE_GAP_S, interval / 2))
        return due

    def announce_interval(self) -> float:
        """Seconds between this executor's announcements: the configured interval, longer in
        a cooperative large enough that everyone announcing that often would exceed
        ``announce_budget_per_s`` in all."""
        return self.registry.interval_for(self.announce_budget_per_s)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`on_timer` has work, or None."""
        ds = [
            self.submitter.next_deadline(),
            None if self.executor is None else self.executor.next_deadline(),
            self._announce_at(),
        ]
        return min((d for d in ds if d is not None), default=None)

    def on_timer(self, now: float) -> list[Effect]:
        """Fire whatever is due at ``now``: the sub-cores' timers and this executor's
        announcement."""
        effects = self.submitter.on_timer(now)
        if self.executor is not None:
            effects += self.executor.on_timer(now)
            at = self._announce_at()
            if at is not None and at <= now:
                effects.append(Publish(ExecutorAnnounceMsg(self.announce_info(now))))
        return self._settle(effects, now)

    def announce_info(self, now: float) -> ExecutorInfo:
        """This executor's announcement now (and the reference for the next early one)."""
        ex = self._executor("announce_info")
        self._announced_at = now
        self._announced_to = self._peers
        coordinate = self._coordinate() if self._coordinate is not None else None
        interval = self.announce_interval()
        return ex.announce_info(
            now,
            metrics=self._metrics,
            region=self.region,
            coordinate=coordinate,
            # Said only when it differs from the configured one (receivers' default).
            interval_s=interval if interval > self.registry.interval_s else None,
        )
