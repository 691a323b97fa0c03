"""The executor side of placement and task execution, sans-IO.

:class:`ExecutorCore` takes events as method calls (a request arrived, a claim arrived, the run
finished, the timer fired) with ``now`` in seconds on the driver's clock, and returns the
:mod:`~icn_node.compute.effects` to execute, in order. It reads no clock, does no I/O and draws
no random numbers. The driver re-arms one timer at :meth:`ExecutorCore.next_deadline` and calls
:meth:`ExecutorCore.on_timer` when it fires.

Capacity: the core owns the node's live :class:`NodeCapacity`. Every tentative reservation
(an offer or a legacy claim request in flight) and every firm one (an accepted job) is held in
its ledger, so the policy scores against live capacity minus reservations, and no interleaving
of requests, claims and timers can hold more than the capacity (``NodeCapacity.reserve`` refuses
what does not fit). A run is started only by a claim or grant accepted with a firm reservation,
and at most once per task.

The transitions are tabled in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from icn_node.compute.effects import (
    LOCALITY_SCORE,
    LOSSES,
    NETWORK_SCORE,
    OFFERS_PREEMPTED,
    OFFERS_SENT,
    REQUESTS_RECEIVED,
    SCORE,
    WINS,
    Count,
    Effect,
    Ignored,
    Observe,
    Persist,
    Send,
    StartRun,
    StopRun,
)
from icn_node.compute.ledger import Hold, Ledger
from icn_node.compute.records import JobRecord, JobState
from icn_node.errors import ConfigError, LocalProtocolError, ResourceError
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.cluster_metrics import NodeMetrics
from icn_node.scheduler.coordinates import Coordinate
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.locality import LocalityContext
from icn_node.scheduler.policy import (
    MIN_TRUST_EXECUTE,
    Decline,
    NodeState,
    PlacementOffer,
    PlacementPolicy,
    PlacementRequest,
)
from icn_node.scheduler.resources import NodeCapacity, ResourceProfile
from icn_node.scheduler.tasks import TaskResult, TaskSpec
from icn_node.wire import (
    AbandonMsg,
    ClaimReplyMsg,
    ClaimRequestMsg,
    DeclineMsg,
    PlacementOfferMsg,
    TaskHeartbeatMsg,
    TaskResultMsg,
)

__all__ = ["ExecutorCore"]

_ACTIVE = (JobState.RESERVED, JobState.RUNNING)
PLACEMENT = "placement"
LEGACY = "legacy"
FAIR_SHARE = 0.5
"""Under contention, one submitter's unclaimed offers may hold at most this fraction of the
host's CPU or memory (see ``ExecutorCore._make_room``)."""


def _conf(
    key: str, value: float, *, lo: float = 0.0, lo_open: bool = False, hi: float = 1e9
) -> float:
    try:
        return chk.number(key, value, lo=lo, hi=hi, lo_open=lo_open)
    except ResourceError as e:
        raise ConfigError(str(e), key=key) from None


@dataclass(slots=True, eq=False)
class _Tentative:
    """An offer (placement) or claim request (legacy) in flight, with its reservation."""

    task_hash: bytes
    attempt: int
    submitter: str
    protocol: str
    hold: Hold
    expires_at: float
    offer: PlacementOffer | None = None
    send_at: float | None = None
    """When the deliberation delay ends and the offer goes out; None once sent."""


@dataclass(slots=True, eq=False)
class _Job:
    record: JobRecord
    hold: Hold | None
    next_heartbeat: float | None = None
    resend_at: float | None = None
    forget_at: float | None = None
    stop_sent: bool = False


class ExecutorCore:
    """One node's executor. See the module docstring and docs/ARCHITECTURE.md.

    ``capacity``: the node's capacity (the core takes a ledger-free copy and owns it).
    ``policy``: scores requests. ``trust``: this node's trust in a DID, in ``[0, 1]``.
    ``min_trust``: submitters below it are declined (``low_trust``) before the policy runs.
    ``deliberation_s``: delay between scoring and sending an offer (``compute.deliberation_ms``).
    ``offer_window_s``: how long a tentative reservation lasts when the request does not say,
    plus ``reservation_grace_s`` for the claim to travel. ``heartbeat_interval_s``: heartbeat
    period of each accepted job. ``result_resend_s``: result re-send period until
    acknowledged. ``forget_after_s``: how long finished, acknowledged jobs are remembered (to
    answer duplicate claims). ``change_threshold``: change of the free-capacity ratio that
    :meth:`significant_change` reports.
    """

    def __init__(
        self,
        did: str,
        capacity: NodeCapacity,
        policy: PlacementPolicy,
        trust: Callable[[str], float],
        *,
        min_trust: float = MIN_TRUST_EXECUTE,
        deliberation_s: float = 0.0,
        offer_window_s: float = 1.0,
        reservation_grace_s: float = 2.0,
        heartbeat_interval_s: float = 5.0,
        result_resend_s: float = 5.0,
        forget_after_s: float = 3600.0,
        change_threshold: float = 0.1,
        runtimes: Iterable[str] = ("wasm",),
    ) -> None:
        chk.text("executor.did", did, max_len=512)
        self.runtimes = tuple(runtimes)
        """How this executor runs tasks: ``wasm`` always; ``exec`` when the operator allows
        host commands. A request for another runtime is declined (``runtime``)."""
        if not isinstance(capacity, NodeCapacity):
            raise ConfigError("expected a NodeCapacity", key="compute.capacity")
        self.did = did
        self.policy = policy
        self.trust = trust
        self.min_trust = _conf("compute.min_trust", min_trust, hi=1.0)
        self.deliberation_s = _conf("compute.deliberation_ms", deliberation_s)
        self.offer_window_s = _conf("compute.offer_window_ms", offer_window_s, lo_open=True)
        self.reservation_grace_s = _conf("compute.reservation_grace_s", reservation_grace_s)
        self.heartbeat_interval_s = _conf(
            "compute.heartbeat_interval_s", heartbeat_interval_s, lo_open=True
        )
        self.result_resend_s = _conf("compute.result_resend_s", result_resend_s, lo_open=True)
        self.forget_after_s = _conf("compute.forget_after_s", forget_after_s)
        self.change_threshold = _conf("compute.change_threshold", change_threshold, hi=1.0)
        self._ledger = Ledger(capacity)
        self._tentative: dict[bytes, _Tentative] = {}
        self._jobs: dict[bytes, _Job] = {}
        # Jobs with live timers (heartbeats, result re-sends), and retired jobs (acknowledged or
        # abandoned, only waiting to be forgotten) in the order they retired, which is the order
        # of their forget_at: timers never walk the hour of retired jobs.
        self._in_flight: set[bytes] = set()
        self._retiring: OrderedDict[bytes, None] = OrderedDict()
        # Kept in the order of its timestamps (every write moves the entry to the end; ``now``
        # never goes back), so the oldest entry is first: timers cost O(expired), not O(seen).
        self._seen: OrderedDict[bytes, tuple[int, float, bool]] = OrderedDict()
        """task hash -> (highest round seen, when, job forgotten): duplicate and late requests
        are dropped, and a claim for a job already run and forgotten is refused."""
        self._announced: tuple[float, int] | None = None
        self._offered: set[tuple[bytes, int]] = set()
        """(task hash, round) of offers sent whose outcome (win or loss) is not counted yet."""

    # -- views -----------------------------------------------------------------------------

    @property
    def capacity(self) -> NodeCapacity:
        """A snapshot of the live capacity minus every reservation held."""
        return self._ledger.capacity.snapshot()

    @property
    def queue_depth(self) -> int:
        """Jobs accepted and not finished (reserved or running)."""
        return sum(1 for j in self._jobs.values() if j.record.state in _ACTIVE)

    @property
    def overcommitted(self) -> bool:
        """True while the host's capacity is below what running jobs hold (new work declined)."""
        return self._ledger.overcommitted

    def jobs(self) -> dict[bytes, JobRecord]:
        """The jobs this core remembers, by task hash."""
        return {k: j.record for k, j in self._jobs.items()}

    def tentative(self) -> dict[bytes, tuple[int, ResourceProfile]]:
        """Tentative reservations: task hash -> (round, profile)."""
        return {k: (t.attempt, t.hold.profile) for k, t in self._tentative.items()}

    def held_profiles(self) -> list[ResourceProfile]:
        """The profile of every reservation held (tentative and firm)."""
        return self._ledger.profiles()

    # -- capacity --------------------------------------------------------------------------

    def update_capacity(self, capacity: NodeCapacity, now: float) -> list[Effect]:
        """The driver re-measured the host. ``capacity`` is what icnd may use (its available
        figures must not already subtract icnd's own tasks). Accepted jobs keep their
        reservations on the new figures, oldest first; one that no longer fits stays
        accounted as over-commitment and every new request is declined (``no_capacity``) until
        it fits again. Tentative reservations that no longer fit are dropped (their offer, if
        sent, is re-checked when a claim comes)."""
        if not isinstance(capacity, NodeCapacity):
            raise LocalProtocolError("update_capacity: expected a NodeCapacity")
        tentative = list(self._tentative.values())
        self._ledger.rebase(capacity, (j.hold for j in self._jobs.values() if j.hold is not None))
        for t in sorted(tentative, key=lambda t: t.task_hash):
            hold = self._ledger.reserve(t.hold.profile)
            if hold is None:
                del self._tentative[t.task_hash]
            else:
                t.hold = hold
        return []

    # -- announcements ---------------------------------------------------------------------

    def _free(self) -> tuple[float, int]:
        c = self._ledger.capacity
        return c.available_ratio(), sum(1 for d in c.gpu_devices if d.available)

    def announce_info(
        self,
        now: float,
        metrics: NodeMetrics | None = None,
        region: str | None = None,
        coordinate: Coordinate | None = None,
        interval_s: float | None = None,
    ) -> ExecutorInfo:
        """This executor's ``ExecutorAnnounce`` content; remembers it for
        :meth:`significant_change`."""
        self._announced = self._free()
        return ExecutorInfo(
            did=self.did,
            capacity=self._ledger.capacity,
            queue_depth=self.queue_depth,
            metrics=metrics,
            region=region,
            announced_at=now,
            runtimes=self.runtimes,
            coordinate=coordinate,
            interval_s=interval_s,
        )

    def significant_change(self) -> bool:
        """True when free capacity moved by more than ``change_threshold`` (as a fraction of the
        node) or a GPU was taken or freed since the last :meth:`announce_info` (or never
        announced): the driver then announces early."""
        if self._announced is None:
            return True
        ratio, gpus = self._free()
        base_ratio, base_gpus = self._announced
        return abs(ratio - base_ratio) > self.change_threshold or gpus != base_gpus

    # -- placement -------------------------------------------------------------------------

    def _retire(self, task_hash: bytes, j: _Job, now: float) -> None:
        """The job has no more timers but its forgetting: queue it (forget_at only grows)."""
        j.forget_at = now + self.forget_after_s
        self._in_flight.discard(task_hash)
        self._retiring[task_hash] = None
        self._retiring.move_to_end(task_hash)

    def _see(self, task_hash: bytes, attempt: int, now: float, forgotten: bool) -> None:
        self._seen[task_hash] = (attempt, now, forgotten)
        self._seen.move_to_end(task_hash)

    def _round_seen(self, task_hash: bytes, attempt: int, now: float) -> bool:
        """Record round ``attempt``; True when it (or a later round) was seen before."""
        prev = self._seen.get(task_hash)
        if prev is not None and (prev[0] >= attempt or prev[2]):
            return True
        self._see(task_hash, attempt, now, False)
        return False

    def _supersede(self, task_hash: bytes, attempt: int) -> None:
        t = self._tentative.get(task_hash)
        if t is not None and t.attempt < attempt:
            del self._tentative[task_hash]
            self._ledger.release(t.hold)

    def on_request(
        self,
        request: PlacementRequest,
        attempt: int,
        now: float,
        context: LocalityContext | None = None,
        load: float | None = None,
        *,
        window_s: float | None = None,
        excluded: Iterable[str] = (),
    ) -> list[Effect]:
        """A ``PlacementRequest`` for round ``attempt`` arrived (``window_s`` and ``excluded``
        from the message). Offer (after the deliberation delay) with a tentative reservation,
        or decline. A round seen before, or a task this node already runs, is ignored."""
        th = request.task_hash
        if th in self._jobs:
            return [Ignored("request for a task this node already accepted", th, request.submitter)]
        if self._round_seen(th, attempt, now):
            return [Ignored("duplicate or late request", th, request.submitter)]
        self._supersede(th, attempt)
        sub = request.submitter
        acts: list[Effect] = [Count(REQUESTS_RECEIVED)]

        def decline(reason: str, detail: str) -> list[Effect]:
            acts.append(Send(sub, DeclineMsg(th, attempt, reason, detail)))
            return acts

        if self.did in excluded:
            return decline("excluded", "this executor lost the task in an earlier attempt")
        if request.runtime not in self.runtimes:
            return decline("runtime", f"this executor does not run {request.runtime} tasks")
        trust = self.trust(sub)
        if trust < self.min_trust:
            return decline(
                "low_trust",
                f"trust {trust:g} in the submitter is below min_trust {self.min_trust:g}",
            )
        if self.overcommitted:
            return decline("no_capacity", "the host's capacity is below what running tasks hold")
        acts += self._make_room(sub, request.profile)
        node = NodeState(self.did, self._ledger.capacity.snapshot(), self.queue_depth, load)
        res = self.policy.score(request, node, trust, context or LocalityContext.empty(), now)
        if isinstance(res, Decline):
            return decline(res.reason.value, res.detail)
        hold = self._ledger.reserve(request.profile)
        if hold is None:
            return decline("no_capacity", "capacity was taken while scoring")
        window = self.offer_window_s if window_s is None else max(0.0, float(window_s))
        t = _Tentative(
            th,
            attempt,
            sub,
            PLACEMENT,
            hold,
            expires_at=now + max(window, self.deliberation_s) + self.reservation_grace_s,
            offer=res,
        )
        self._tentative[th] = t
        c = res.components
        acts += [
            Observe(SCORE, res.score),
            Observe(LOCALITY_SCORE, c.locality),
            Observe(NETWORK_SCORE, c.network),
        ]
        if self.deliberation_s > 0.0:
            t.send_at = now + self.deliberation_s
        else:
            self._offered.add((th, attempt))
            acts += [Send(sub, PlacementOfferMsg(res, attempt)), Count(OFFERS_SENT)]
        return acts

    def _make_room(self, sub: str, profile: ResourceProfile) -> list[Effect]:
        """Fair share under contention. When ``profile`` does not fit, and ``sub``'s own offers
        with it would stay within ``FAIR_SHARE`` of the host's CPU and memory, the tentative
        holds of other submitters that hold more than their share are released, newest first,
        until it fits or they are within their share.

        An offer is a promise until claimed (a claim for a released one re-reserves, or is
        refused ``no_capacity``), so this is safe; it is work-conserving (a lone submitter may
        still hold everything) and it means one member flooding requests for tasks that fit
        cannot keep everyone else's requests out with reservations it never claims."""
        cap = self._ledger.capacity
        if cap.can_fit(profile):
            return []
        cpu_share = FAIR_SHARE * cap.cpu_cores_total
        mem_share = FAIR_SHARE * cap.memory_mb_total
        others: dict[str, list[_Tentative]] = {}
        own_cpu, own_mem = profile.cpu_cores or 0.0, profile.memory_mb or 0
        for t in self._tentative.values():  # oldest first
            if t.submitter != sub:
                others.setdefault(t.submitter, []).append(t)
            else:
                own_cpu += t.hold.profile.cpu_cores or 0.0
                own_mem += t.hold.profile.memory_mb or 0
        if own_cpu > cpu_share or own_mem > mem_share:
            return []  # over its own share: it may not take from others (no ping-pong)
        released = 0
        for held in others.values():
            cpu = sum(t.hold.profile.cpu_cores or 0.0 for t in held)
            mem = sum(t.hold.profile.memory_mb or 0 for t in held)
            while held and (cpu > cpu_share or mem > mem_share):
                t = held.pop()
                del self._tentative[t.task_hash]
                self._ledger.release(t.hold)
                released += 1
                cpu -= t.hold.profile.cpu_cores or 0.0
                mem -= t.hold.profile.memory_mb or 0
                if cap.can_fit(profile):
                    return [Count(OFFERS_PREEMPTED, n=released)]
        return [Count(OFFERS_PREEMPTED, n=released)] if released else []

    def on_released(
        self, sender: str, released: Iterable[tuple[bytes, int]], now: float
    ) -> list[Effect]:
        """``sender`` placed these (task, round)s elsewhere: release what this node holds for
        them, counting a loss where it offered (the ``released`` of a placement request).
        Only ``sender``'s own tentative reservations are touched."""
        acts: list[Effect] = []
        for th, attempt in released:
            t = self._tentative.get(th)
            if t is None or t.submitter != sender or t.attempt != attempt:
                continue
            if (th, attempt) in self._offered:
                self._offered.discard((th, attempt))
                acts.append(Count(LOSSES))
            del self._tentative[th]
            self._ledger.release(t.hold)
        return acts

    def on_task_claimed(
        self, task_hash: bytes, winner: str, attempt: int, now: float
    ) -> list[Effect]:
        """``TaskClaimed`` gossip. Another winner: release the tentative reservation, and count
        a loss if an offer was sent for that round. This node: keep the reservation until the
        direct claim arrives (the win is counted when the claim is accepted)."""
        acts: list[Effect] = []
        if winner != self.did and (task_hash, attempt) in self._offered:
            self._offered.discard((task_hash, attempt))
            acts.append(Count(LOSSES))
        t = self._tentative.get(task_hash)
        if t is None or t.attempt != attempt:
            self._supersede(task_hash, attempt)
            return acts or [
                Ignored("TaskClaimed for a round this node holds nothing for", task_hash)
            ]
        if winner == self.did:
            t.expires_at = max(t.expires_at, now + self.reservation_grace_s)
        else:
            del self._tentative[task_hash]
            self._ledger.release(t.hold)
        return acts

    def on_claim(
        self, task_hash: bytes, sender: str, attempt: int, spec: TaskSpec, now: float
    ) -> list[Effect]:
        """The submitter claims this node for round ``attempt``: accept with a firm reservation
        (the tentative one, or a new one if the task still fits) and start the run, or reject
        (``no_capacity``, ``low_trust``, ``busy``). Idempotent for an accepted job."""
        return self._accept(task_hash, sender, attempt, spec, now, PLACEMENT)

    def on_cancel(
        self, task_hash: bytes, sender: str, now: float, attempt: int | None = None
    ) -> list[Effect]:
        """The submitter cancels (``task_cancel`` gossiped or sent directly; ``attempt``
        None matches any round): drop a tentative reservation, or stop an accepted run (its
        ``cancelled`` result is still reported)."""
        acts: list[Effect] = []
        t = self._tentative.get(task_hash)
        if t is not None and t.submitter == sender and attempt in (None, t.attempt):
            del self._tentative[task_hash]
            self._ledger.release(t.hold)
            self._offered.discard((task_hash, t.attempt))
            return acts
        j = self._jobs.get(task_hash)
        if (
            j is not None
            and j.record.submitter == sender
            and attempt in (None, j.record.attempt)
            and j.record.state in _ACTIVE
        ):
            if not j.stop_sent:
                j.stop_sent = True
                acts.append(StopRun(task_hash, j.record.attempt))
            return acts
        return [Ignored("cancel for nothing this node holds", task_hash, sender)]

    # -- legacy first-claim ----------------------------------------------------------------

    def on_task_submitted(
        self,
        spec: TaskSpec,
        attempt: int,
        now: float,
        *,
        window_s: float | None = None,
        excluded: Iterable[str] = (),
    ) -> list[Effect]:
        """Legacy ``TaskSubmitted``: with trust in the submitter and room for
        ``ResourceProfile.minimal()``, reserve it and ask to claim."""
        th = spec.task_hash
        sub = spec.submitter
        if spec.profile is not None:
            return [Ignored("TaskSubmitted for a task with a resource profile", th, sub)]
        if th in self._jobs:
            return [Ignored("TaskSubmitted for a task this node already accepted", th, sub)]
        if self._round_seen(th, attempt, now):
            return [Ignored("duplicate or late TaskSubmitted", th, sub)]
        self._supersede(th, attempt)
        if self.did in excluded:
            return [Ignored("this executor is excluded from the task", th, sub)]
        if spec.runtime not in self.runtimes:
            return [Ignored(f"this executor does not run {spec.runtime} tasks", th, sub)]
        if self.trust(sub) < self.min_trust:
            return [Ignored("submitter below min_trust", th, sub)]
        hold = self._ledger.reserve(ResourceProfile.minimal())
        if hold is None:
            return [Ignored("no spare capacity", th, sub)]
        window = self.offer_window_s if window_s is None else max(0.0, float(window_s))
        self._tentative[th] = _Tentative(
            th, attempt, sub, LEGACY, hold, expires_at=now + window + self.reservation_grace_s
        )
        return [Send(sub, ClaimRequestMsg(th, attempt))]

    def on_grant(
        self, task_hash: bytes, sender: str, attempt: int, spec: TaskSpec, now: float
    ) -> list[Effect]:
        """Legacy grant: as :meth:`on_claim` (the reply says accepted or rejected)."""
        return self._accept(task_hash, sender, attempt, spec, now, LEGACY)

    def on_refuse(self, task_hash: bytes, sender: str, attempt: int, now: float) -> list[Effect]:
        """Legacy refusal: release the tentative reservation."""
        t = self._tentative.get(task_hash)
        if t is None or t.submitter != sender or t.attempt != attempt:
            return [Ignored("refusal for nothing this node asked for", task_hash, sender)]
        del self._tentative[task_hash]
        self._ledger.release(t.hold)
        return []

    # -- claim, shared by both protocols ---------------------------------------------------

    def _accept(
        self, th: bytes, sender: str, attempt: int, spec: TaskSpec, now: float, protocol: str
    ) -> list[Effect]:
        if spec.task_hash != th or spec.submitter != sender:
            return [Ignored("claim does not match its spec or sender", th, sender)]
        if spec.protocol != protocol:
            return [Ignored(f"{protocol} claim for a {spec.protocol} task", th, sender)]
        j = self._jobs.get(th)
        if j is not None:
            ok = j.record.attempt == attempt and j.record.state is not JobState.ABANDONED
            return [Send(sender, ClaimReplyMsg(th, attempt, ok, "" if ok else "busy"))]
        seen = self._seen.get(th)
        if seen is not None and (seen[0] > attempt or seen[2]):
            return [Send(sender, ClaimReplyMsg(th, attempt, False, "busy"))]
        t = self._tentative.get(th)
        offered = (th, attempt) in self._offered
        self._offered.discard((th, attempt))
        if self.trust(sender) < self.min_trust or spec.runtime not in self.runtimes:
            why = "low_trust" if self.trust(sender) < self.min_trust else "runtime"
            acts: list[Effect] = [Send(sender, ClaimReplyMsg(th, attempt, False, why))]
            return acts + [Count(LOSSES)] if offered else acts
        profile = spec.profile or ResourceProfile.minimal()
        hold = None
        if t is not None:
            del self._tentative[th]
            if (
                t.attempt == attempt
                and t.submitter == sender
                and t.hold.profile == profile
                and t.hold.reservation is not None
            ):
                hold = t.hold
            else:
                self._ledger.release(t.hold)
        if hold is None:
            hold = self._ledger.reserve(profile)
        if hold is None:
            acts = [Send(sender, ClaimReplyMsg(th, attempt, False, "no_capacity"))]
            return acts + [Count(LOSSES)] if offered else acts
        self._see(th, max(attempt, seen[0] if seen else 0), now, False)
        assert hold.reservation is not None
        rec = JobRecord(
            spec=spec,
            attempt=attempt,
            state=JobState.RESERVED,
            reservation=hold.reservation,
            accepted_at=now,
            updated_at=now,
        )
        self._jobs[th] = _Job(rec, hold, next_heartbeat=now + self.heartbeat_interval_s)
        self._in_flight.add(th)
        acts = [Persist(rec), Send(sender, ClaimReplyMsg(th, attempt, True))]
        if protocol == PLACEMENT:
            acts.append(Count(WINS))
        acts.append(StartRun(spec, attempt, hold.reservation))
        return acts

    # -- running ---------------------------------------------------------------------------

    def _job(self, task_hash: bytes, what: str) -> _Job:
        j = self._jobs.get(task_hash)
        if j is None:
            raise LocalProtocolError(f"{what}: no job for task {task_hash.hex()}")
        return j

    def on_run_started(self, task_hash: bytes, now: float) -> list[Effect]:
        """The sandbox started (blobs fetched): ``reserved`` -> ``running``."""
        j = self._job(task_hash, "on_run_started")
        if j.record.state is not JobState.RESERVED:
            return [Ignored(f"run started in state {j.record.state.value}", task_hash)]
        j.record = j.record.evolve(state=JobState.RUNNING, updated_at=now)
        return [Persist(j.record)]

    def on_run_finished(self, task_hash: bytes, result: TaskResult, now: float) -> list[Effect]:
        """The run ended (also after StopRun, or when it could not start): release the
        reservation, persist the result, send it (re-sent until acknowledged)."""
        j = self._job(task_hash, "on_run_finished")
        if j.record.state not in _ACTIVE:
            raise LocalProtocolError(
                f"on_run_finished: job {task_hash.hex()} is {j.record.state.value}, not running"
            )
        if not isinstance(result, TaskResult):
            raise LocalProtocolError("on_run_finished: expected a TaskResult")
        if result.executor != self.did or result.attempt != j.record.attempt:
            raise LocalProtocolError(
                f"on_run_finished: result names executor {result.executor} round "
                f"{result.attempt}, the job is {self.did} round {j.record.attempt}"
            )
        self._ledger.release(j.hold)
        j.hold = None
        j.record = j.record.evolve(state=JobState.FINISHED, result=result, updated_at=now)
        j.next_heartbeat = None
        j.resend_at = now + self.result_resend_s
        return [
            Persist(j.record),
            Send(j.record.submitter, TaskResultMsg(task_hash, j.record.attempt, result)),
        ]

    def abandon(self, task_hash: bytes, reason: str, now: float) -> list[Effect]:
        """Give an accepted job back without a result, for a reason that is not the task's
        fault (its code or inputs could not be fetched): release the reservation, mark it
        ``abandoned`` and tell the submitter, which places it elsewhere at once. Every StartRun
        is still answered by exactly one of this or :meth:`on_run_finished`."""
        j = self._job(task_hash, "abandon")
        if j.record.state not in _ACTIVE:
            raise LocalProtocolError(
                f"abandon: job {task_hash.hex()} is {j.record.state.value}, not running"
            )
        self._ledger.release(j.hold)
        j.hold = None
        j.record = j.record.evolve(state=JobState.ABANDONED, updated_at=now)
        j.next_heartbeat = None
        self._retire(task_hash, j, now)
        return [
            Persist(j.record),
            Send(j.record.submitter, AbandonMsg(task_hash, j.record.attempt, reason)),
        ]

    def on_result_ack(
        self, task_hash: bytes, sender: str, now: float, attempt: int | None = None
    ) -> list[Effect]:
        """The submitter has the result: stop re-sending."""
        j = self._jobs.get(task_hash)
        if (
            j is None
            or j.record.submitter != sender
            or j.record.state is not JobState.FINISHED
            or attempt not in (None, j.record.attempt)
        ):
            return [Ignored("ack for no result of this node", task_hash, sender)]
        if j.record.result_acked:
            return []
        j.record = j.record.evolve(result_acked=True, updated_at=now)
        j.resend_at = None
        self._retire(task_hash, j, now)
        return [Persist(j.record)]

    # -- restart ---------------------------------------------------------------------------

    def restore(self, jobs: Iterable[JobRecord], now: float) -> list[Effect]:
        """Rebuild after a restart, on a fresh core. A job that was reserved or running died
        with the daemon: it is marked ``abandoned`` and the submitter is told at once
        (``abandon``), which re-places it; nothing is re-run here. Finished results not yet
        acknowledged are re-sent now."""
        if self._jobs or self._tentative:
            raise LocalProtocolError("restore: the core is not fresh")
        acts: list[Effect] = []
        for rec in sorted(jobs, key=lambda r: (r.accepted_at, r.task_hash)):
            th = rec.task_hash
            if th in self._jobs:
                raise LocalProtocolError(f"restore: task {th.hex()} given twice")
            self._see(th, rec.attempt, now, False)
            j = _Job(rec, None)
            self._jobs[th] = j
            self._in_flight.add(th)
            if rec.state in _ACTIVE:
                j.record = rec.evolve(state=JobState.ABANDONED, updated_at=now)
                self._retire(th, j, now)
                acts += [
                    Persist(j.record),
                    Send(rec.submitter, AbandonMsg(th, rec.attempt, "executor restarted")),
                ]
            elif rec.state is JobState.FINISHED and not rec.result_acked:
                assert rec.result is not None
                j.resend_at = now + self.result_resend_s
                acts.append(Send(rec.submitter, TaskResultMsg(th, rec.attempt, rec.result)))
            else:
                self._retire(th, j, now)
        return acts

    # -- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`on_timer` has work, or None."""
        best = math.inf
        for t in self._tentative.values():
            best = min(best, t.expires_at if t.send_at is None else min(t.send_at, t.expires_at))
        for th in self._in_flight:
            j = self._jobs[th]
            for d in (j.next_heartbeat, j.resend_at):
                if d is not None:
                    best = min(best, d)
        if self._retiring:
            first = self._jobs[next(iter(self._retiring))]
            assert first.forget_at is not None
            best = min(best, first.forget_at)
        if self._seen:
            oldest = next(iter(self._seen.values()))[1]
            best = min(best, oldest + self.forget_after_s)
        return None if best == math.inf else best

    def on_timer(self, now: float) -> list[Effect]:
        """Send offers whose deliberation ended, drop expired tentative reservations, send
        heartbeats, re-send unacknowledged results, forget old jobs."""
        acts: list[Effect] = []
        for th in sorted(self._tentative):
            t = self._tentative[th]
            if t.send_at is not None and t.send_at <= now:
                t.send_at = None
                assert t.offer is not None
                self._offered.add((th, t.attempt))
                offer = replace(t.offer, offered_at=now)
                acts += [Send(t.submitter, PlacementOfferMsg(offer, t.attempt)), Count(OFFERS_SENT)]
            if t.expires_at <= now:
                del self._tentative[th]
                self._ledger.release(t.hold)
        for th in sorted(self._in_flight):
            j = self._jobs[th]
            r = j.record
            if j.next_heartbeat is not None and j.next_heartbeat <= now:
                acts.append(Send(r.submitter, TaskHeartbeatMsg(th, r.attempt)))
                j.next_heartbeat = now + self.heartbeat_interval_s
            if j.resend_at is not None and j.resend_at <= now:
                assert r.result is not None
                acts.append(Send(r.submitter, TaskResultMsg(th, r.attempt, r.result)))
                j.resend_at = now + self.result_resend_s
        while self._retiring:
            th = next(iter(self._retiring))
            j = self._jobs[th]
            assert j.forget_at is not None
            if j.forget_at > now:
                break
            del self._retiring[th]
            del self._jobs[th]
            self._see(th, j.record.attempt, now, True)
        while self._seen:
            th, (n, at, done) = next(iter(self._seen.items()))
            if at + self.forget_after_s > now:
                break
            if th in self._jobs or th in self._tentative:
                self._see(th, n, now, done)
            else:
                del self._seen[th]
                for k in range(n + 1):
                    self._offered.discard((th, k))
        return acts
