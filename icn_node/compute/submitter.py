"""The submitter side of placement and task execution, sans-IO.

:class:`SubmitterCore` owns every task this node submitted, from submission to exactly one final
state. Events come in as method calls with ``now`` (seconds, the driver's clock); the
:mod:`~icn_node.compute.effects` to execute come back as a list, in order. Every state change is
a new :class:`~icn_node.compute.records.TaskRecord` emitted as ``Persist`` then ``StateChanged``
*before* any message that depends on it. One timer per task; the driver re-arms a single timer
at :meth:`SubmitterCore.next_deadline` and calls :meth:`SubmitterCore.on_timer`.

Rounds: ``attempt`` numbers placement rounds, 1 at submission and +1 every time the task goes
back to negotiation (no offer, every claim rejected, an executor lost, a restart while
negotiating). Every message of a round carries it, so duplicates and late messages of an older
round are recognised and dropped. Two bounds end the task: ``retry_backoff_s`` (rounds in a row
without a running executor -> ``failed``/``no_executor``) and ``max_attempts`` (executors lost
-> ``failed``/``max_attempts``).

The transitions are tabled in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from icn_node.compute import sample
from icn_node.compute.data import (
    BLIND_WEIGHTS,
    Data,
    bytes_needed,
    placement_effects,
    run_limit_s,
    task_data,
)
from icn_node.compute.effects import (
    EXECUTOR_PENALTIES,
    FUEL_USED,
    OFFERS_RECEIVED,
    PLACEMENT_DURATION,
    TASKS_FINISHED,
    TASKS_SUBMITTED,
    Count,
    Effect,
    Ignored,
    Observe,
    Persist,
    Publish,
    Rejected,
    Send,
    StateChanged,
)
from icn_node.compute.records import OfferSummary, TaskRecord
from icn_node.compute.registry import ExecutorRegistry
from icn_node.compute.reputation import LIE, LOST, OVERRUN, Reputation, offer_lie
from icn_node.errors import ConfigError, LocalProtocolError, ResourceError
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.locality import BlobRegistry
from icn_node.scheduler.policy import MIN_TRUST_EXECUTE, PlacementOffer, PlacementRequest, Weights
from icn_node.scheduler.ranking import RankedOffer, rank_offers
from icn_node.scheduler.resources import ResourceProfile
from icn_node.scheduler.tasks import TaskResult, TaskSpec, TaskState
from icn_node.wire import (
    ClaimMsg,
    GrantMsg,
    PlacementRequestMsg,
    RefuseMsg,
    ResultAckMsg,
    TaskCancelMsg,
    TaskClaimedMsg,
    TaskSubmittedMsg,
)

__all__ = ["NO_EXECUTOR", "MAX_ATTEMPTS", "CANCELLED_BY_USER", "SubmitterCore"]

NO_EXECUTOR = "no_executor"
MAX_ATTEMPTS = "max_attempts"
CANCELLED_BY_USER = "cancelled by user"

S = TaskState
# A task in one of these states holds executors' attention (requests, reservations).
_PLACING = frozenset({S.NEGOTIATING, S.CLAIMING})


def _conf(key: str, value: float, *, lo_open: bool = True, hi: float = 1e9) -> float:
    try:
        return chk.number(key, value, lo=0.0, hi=hi, lo_open=lo_open)
    except ResourceError as e:
        raise ConfigError(str(e), key=key) from None


@dataclass(slots=True, eq=False)
class _Task:
    rec: TaskRecord
    deadline: float | None = None
    expected: frozenset[str] = frozenset()
    offers: dict[str, PlacementOffer] = field(default_factory=dict)
    declined: dict[str, str] = field(default_factory=dict)
    """Executors that declined this window (or whose offer was refused), with why."""
    backlog: list[RankedOffer] = field(default_factory=list)
    queued: bool = False
    data: Data = ()
    """The task's blobs (module, inputs) and their sizes, as sent in its requests."""
    blind_need: int | None = None
    """Bytes the locality-blind choice of the last window would have had to fetch."""
    request: PlacementRequest | None = None
    """The current round's request (what its offers are checked against)."""
    claim_until: float | None = None
    lease_until: float | None = None
    run_until: float | None = None
    """The run's deadline: past it the executor overran and the task is re-placed."""
    link_until: float | None = None
    """Set while the link to the executor is down: past it the executor is lost."""
    holding: frozenset[str] = frozenset()
    """Asked executors that did not decline the last window: they may hold an offer's
    reservation until told the task went elsewhere."""


PROBE_ABOVE = 8
"""A registry more than this many times the sample is probed at random, not scanned."""
MAX_WHY = 200
"""A decline's reason and detail are kept to this many characters."""
RELEASE_DELAY_S = 0.1
"""How long a loser's notice waits for a request to ride on before it goes on its own."""


def describe_misfit(profile: ResourceProfile, live: list[ExecutorInfo], runtime: str) -> str:
    """Why none of ``live`` could fit ``profile``, from their announced totals: what is
    missing first, then the largest executor known."""
    n = len(live)
    if not any(runtime in i.runtimes for i in live):
        return f"no executor of the {n} live runs {runtime} tasks"
    gpu = profile.gpu_spec
    if gpu is not None and not any(i.capacity.gpu_devices for i in live):
        what = "no executor has a GPU"
    elif gpu is not None:
        what = "no executor has a GPU that matches"
    else:
        what = "no executor is large enough"
    big = max(live, key=lambda i: (i.capacity.cpu_cores_total, i.capacity.memory_mb_total))
    c = big.capacity
    gpus = f", {len(c.gpu_devices)} GPU" if c.gpu_devices else ""
    return (
        f"{what} (asked {_ask(profile)}); largest of {n} live: {c.cpu_cores_total:g} cores, "
        f"{c.memory_mb_total / 1024:.1f} GB{gpus}"
    )


def _ask(profile: ResourceProfile) -> str:
    parts = []
    if profile.cpu_cores:
        parts.append(f"{profile.cpu_cores:g} cores")
    if profile.memory_mb:
        parts.append(f"{profile.memory_mb / 1024:.1f} GB")
    if profile.gpu_spec is not None:
        parts.append("a GPU")
    return ", ".join(parts) or "nothing"


class SubmitterCore:
    """This node's submitted tasks. See the module docstring and docs/ARCHITECTURE.md.

    ``trust``: this node's trust in a DID, ``[0, 1]`` (offers are ranked with it, never with the
    executor's claim). ``registry``: the executor registry, for the set of executors expected to
    answer a request. ``offer_window_s``: ``compute.offer_window_ms``. ``max_attempts``:
    executors a task may lose (lease lapse, claim timeout, abandon) before it fails.
    ``lease_timeout_s``: silence after which a running executor is lost (a few heartbeat
    intervals). ``claim_timeout_s``: wait for a claim reply. ``cancel_timeout_s``: wait for a
    cancelled run's result before recording ``cancelled`` anyway. ``retry_backoff_s``: delays
    before the 1st, 2nd, ... retry after a round without a running executor; when they run
    out the task fails with ``no_executor``. ``rng``: jitter of up to +10 % on each backoff
    (None: no jitter). ``weights``/``min_trust``: ranking weights and the minimum trust in an
    executor.
    """

    def __init__(
        self,
        did: str,
        trust: Callable[[str], float],
        registry: ExecutorRegistry,
        *,
        offer_window_s: float = 1.0,
        max_attempts: int = 3,
        lease_timeout_s: float = 20.0,
        claim_timeout_s: float = 5.0,
        cancel_timeout_s: float = 10.0,
        retry_backoff_s: Iterable[float] = (1.0, 2.0, 4.0),
        rng: random.Random | None = None,
        weights: Weights | str = "phase16c",
        min_trust: float = MIN_TRUST_EXECUTE,
        max_negotiating: int | None = None,
        blobs: Callable[[], BlobRegistry] | None = None,
        reputation: Reputation | None = None,
        avoid: Callable[[TaskSpec], frozenset[str]] | None = None,
        link_grace_s: float = 3.0,
        invite: int = 16,
    ) -> None:
        chk.text("submitter.did", did, max_len=512)
        self.did = did
        self.trust = trust
        self.registry = registry
        self.offer_window_s = _conf("compute.offer_window_ms", offer_window_s)
        try:
            self.max_attempts = chk.integer("compute.max_attempts", max_attempts, lo=1, hi=1000)
        except ResourceError as e:
            raise ConfigError(str(e), key="compute.max_attempts") from None
        self.lease_timeout_s = _conf("compute.lease_timeout_s", lease_timeout_s)
        self.claim_timeout_s = _conf("compute.claim_timeout_s", claim_timeout_s)
        self.cancel_timeout_s = _conf("compute.cancel_timeout_s", cancel_timeout_s)
        self.retry_backoff_s = tuple(
            _conf("compute.retry_backoff_s", b, lo_open=False) for b in retry_backoff_s
        )
        self.rng = rng
        self.weights = Weights.named(weights) if isinstance(weights, str) else weights
        self.blobs = blobs
        self.reputation = reputation or Reputation()
        """Penalties this submitter gave executors it caught out (effective trust)."""
        self.link_grace_s = _conf("compute.link_grace_s", link_grace_s)
        self.avoid = avoid
        """Executors a task must not run on beside those it lost (the other replicas')."""
        """Where blobs are and their sizes (this node's blob locations), for the data a
        request carries and the bytes a placement saves; None: tasks carry no data."""
        self.min_trust = chk.number("compute.min_trust", min_trust, lo=0.0, hi=1.0)
        try:
            self.invite = chk.integer("compute.invite", invite, lo=0, hi=1_000_000)
        except ResourceError as e:
            raise ConfigError(str(e), key="compute.invite") from None
        """Executors a placement invites (0: every candidate); doubled for each round nobody
        took, everyone in the last (see :mod:`icn_node.compute.sample`)."""
        self._tasks: dict[bytes, _Task] = {}
        if max_negotiating is not None:
            try:
                chk.integer("compute.max_negotiating", max_negotiating, lo=1, hi=1_000_000)
            except ResourceError as e:
                raise ConfigError(str(e), key="compute.max_negotiating") from None
        self.max_negotiating = max_negotiating
        # Tasks negotiating or claiming, and tasks queued (FIFO) until one of them leaves.
        self._placing: set[bytes] = set()
        self._waiting: deque[bytes] = deque()
        # Losers' notices not sent yet, per executor, and when each executor's are due alone.
        self._releases: dict[str, dict[bytes, TaskClaimedMsg]] = {}
        self._release_at: dict[str, float] = {}

    # -- views -----------------------------------------------------------------------------

    def record(self, task_hash: bytes) -> TaskRecord | None:
        t = self._tasks.get(task_hash)
        return None if t is None else t.rec

    def records(self) -> list[TaskRecord]:
        """Every task held, oldest submission first."""
        return [
            t.rec
            for t in sorted(
                self._tasks.values(), key=lambda t: (t.rec.submitted_at, t.rec.task_hash)
            )
        ]

    def expected(self, task_hash: bytes) -> frozenset[str]:
        """The executors expected to answer the current round (empty outside negotiation)."""
        t = self._tasks.get(task_hash)
        return frozenset() if t is None or t.rec.state is not S.NEGOTIATING else t.expected

    def forget(self, task_hash: bytes) -> None:
        """Drop a final task from memory (the driver keeps its row)."""
        t = self._tasks.get(task_hash)
        if t is not None and not t.rec.state.is_final:
            raise LocalProtocolError(f"forget: task {task_hash.hex()} is {t.rec.state.value}")
        self._tasks.pop(task_hash, None)

    # -- record changes --------------------------------------------------------------------

    def _set(
        self, t: _Task, now: float, acts: list[Effect], *, first: bool = False, **changes: object
    ) -> None:
        """Replace the record, then Persist and (on a state change) StateChanged. ``first``: the
        task's first record, whose StateChanged has no old state."""
        old = t.rec
        new = old.evolve(updated_at=now, **changes)
        t.rec = new
        freed = False
        if new.state in _PLACING:
            self._placing.add(new.task_hash)
        elif new.task_hash in self._placing:
            self._placing.discard(new.task_hash)
            freed = True
        acts.append(Persist(new))
        if new.state is not old.state or first:
            acts.append(StateChanged(new.task_hash, None if first else old.state, new.state, new))
            if new.state.is_final:
                t.deadline = None
                t.backlog.clear()
                acts.append(Count(TASKS_FINISHED, new.state.value))
                if new.result is not None and new.result.fuel_used:
                    acts.append(Count(FUEL_USED, n=new.result.fuel_used))
        if freed:
            self._admit(now, acts)

    def _admit(self, now: float, acts: list[Effect]) -> None:
        """Start queued tasks, oldest first, while fewer than ``max_negotiating`` are placing."""
        while self._waiting and (
            self.max_negotiating is None or len(self._placing) < self.max_negotiating
        ):
            t = self._tasks.get(self._waiting.popleft())
            if t is None or not t.queued or t.rec.state is not S.PENDING:
                continue  # cancelled or forgotten while it waited
            t.queued = False
            self._start_round(t, now, acts, attempt=t.rec.attempt)

    def _finish(
        self, t: _Task, now: float, acts: list[Effect], state: TaskState, reason: str
    ) -> None:
        self._set(t, now, acts, state=state, reason=reason, finished_at=now)

    # -- submission and rounds -------------------------------------------------------------

    def submit(self, spec: TaskSpec, now: float) -> list[Effect]:
        """Take a new task: Persist (``negotiating``), then publish the request (or legacy
        ``TaskSubmitted``) for round 1."""
        if not isinstance(spec, TaskSpec):
            raise LocalProtocolError("submit: expected a TaskSpec")
        if spec.submitter != self.did:
            raise LocalProtocolError(
                f"submit: the spec's submitter is {spec.submitter}, this node is {self.did}"
            )
        if spec.task_hash in self._tasks:
            raise LocalProtocolError(f"submit: task {spec.task_hash.hex()} already submitted")
        t = _Task(
            TaskRecord(spec=spec, state=S.PENDING, attempt=1, submitted_at=now, updated_at=now)
        )
        self._tasks[spec.task_hash] = t
        acts: list[Effect] = []
        self._start_round(t, now, acts, attempt=1, first=True)
        acts.append(Count(TASKS_SUBMITTED, spec.protocol))
        return acts

    def _start_round(
        self, t: _Task, now: float, acts: list[Effect], *, attempt: int, first: bool = False
    ) -> None:
        spec = t.rec.spec
        t.offers.clear()
        t.declined.clear()
        t.backlog.clear()
        if (
            self.max_negotiating is not None
            and t.rec.task_hash not in self._placing
            and len(self._placing) >= self.max_negotiating
        ):
            # Admission control: a burst waits its turn instead of flooding every executor
            # with requests whose tentative reservations crowd each other out.
            t.deadline = None
            t.queued = True
            self._waiting.append(t.rec.task_hash)
            self._set(
                t,
                now,
                acts,
                first=first,
                state=S.PENDING,
                attempt=attempt,
                executor=None,
                reason=f"queued: {len(self._placing)} placements in flight",
            )
            return
        # Executors lost earlier, and those running another replica of the same group.
        others = self.avoid(spec) - set(t.rec.excluded) if self.avoid is not None else set()
        excluded = t.rec.excluded + tuple(sorted(others))
        # One reading of the blob locations per round, for the task's data and its holders.
        locations = self.blobs() if self.blobs is not None and spec.profile is not None else None
        if not t.data and locations is not None:
            t.data = task_data(spec, locations)
        t.expected = self._invitees(t, now, excluded, attempt, locations)
        if not t.expected and spec.profile is not None:
            # Nobody to ask although executors are known: say why now rather than after
            # four rounds. (Nobody known at all: gossip the request, as below.)
            why = self._why_nobody(spec, now, excluded)
            if why is not None and spec.wait_for_capacity:
                t.deadline = now + self.retry_backoff_s[-1] if self.retry_backoff_s else now + 1
                self._set(
                    t, now, acts, first=first, state=S.PENDING, attempt=attempt,
                    executor=None, reason=f"waiting for capacity: {why}",
                )  # fmt: skip
                return
            if why is not None:
                self._set(t, now, acts, first=first, attempt=attempt, executor=None)
                self._finish(t, now, acts, S.FAILED, f"{NO_EXECUTOR}: {why}")
                return
        t.deadline = now + self.offer_window_s
        self._set(
            t,
            now,
            acts,
            first=first,
            state=S.NEGOTIATING,
            attempt=attempt,
            executor=None,
            offers=(),
            negotiation_started_at=now,
            claimed_at=None,
            started_at=None,
        )
        if spec.profile is None:
            acts.append(Publish(TaskSubmittedMsg(spec, attempt, self.offer_window_s, excluded)))
        else:
            req = PlacementRequest(
                spec.task_hash,
                spec.profile,
                spec.submitter,
                spec.hints,
                spec.max_cost,
                requested_at=now,
                runtime=spec.runtime,
                data=t.data,
            )
            t.request = req
            msg = PlacementRequestMsg(req, attempt, self.offer_window_s, excluded)
            # Straight to the executors expected to answer (announced, live, could fit) rather
            # than flooding every member; gossiped when nobody is expected.
            if t.expected:
                for d in sorted(t.expected):
                    pending = self._releases.pop(d, None)
                    if pending:
                        self._release_at.pop(d, None)
                        released = tuple((m.task, m.attempt) for m in pending.values())
                        acts.append(Send(d, replace(msg, released=released)))
                    else:
                        acts.append(Send(d, msg))
            else:
                acts.append(Publish(msg))

    def _invitees(
        self,
        t: _Task,
        now: float,
        excluded: tuple[str, ...],
        attempt: int,
        locations: BlobRegistry | None,
    ) -> frozenset[str]:
        """The executors this round asks: live, could fit, admissible; a sample of ``invite``
        of them when there are more (doubled per round nobody took, everyone in the last).

        In a registry much larger than the sample, the candidates are not scanned: ``2k`` are
        found by random probing and the data's holders are added, so the work per placement
        is O(k) whatever the cooperative's size."""
        spec = t.rec.spec
        salt = spec.task_hash + attempt.to_bytes(4, "big")
        # Doubled for each round nobody took; the last round before failing asks everyone.
        last = t.rec.retries >= len(self.retry_backoff_s)
        k = 0 if last or not self.invite else self.invite << min(t.rec.retries, 20)
        if k == 0 or len(self.registry) <= PROBE_ABOVE * k:
            found = [
                d
                for d in self.registry.candidates(spec.profile, now, excluded, spec.runtime)
                if self.admissible(d, now)
            ]
            if k == 0 or len(found) <= k:
                return frozenset(found)
            pool = [i for i in map(self.registry.get, found) if i is not None]
        else:
            pool = [
                i
                for i in self.registry.probe(spec.profile, now, 2 * k, salt, excluded, spec.runtime)
                if self.admissible(i.did, now)
            ]
        holders: set[str] = set()
        if t.data and locations is not None:
            for h, _ in t.data:
                holders |= locations.holders(h)
            known = {i.did for i in pool}
            for d in sorted(holders - known - set(excluded)):
                info = self.registry.candidate(d, spec.profile, now, spec.runtime)
                if info is not None and self.admissible(d, now):
                    pool.append(info)
        return sample.choose(
            pool,
            k,
            trust=lambda d: self.effective_trust(d, now),
            holders=holders,
            salt=salt,
        )

    def _why_nobody(self, spec: TaskSpec, now: float, excluded: tuple[str, ...]) -> str | None:
        """Why no live executor can be asked for ``spec``, in words, or None when no executor
        is known at all (then the request is gossiped to whoever hears it)."""
        live = self.registry.live(now)
        if not live:
            return None
        profile = spec.profile
        assert profile is not None
        fit = [i for i in live if i.could_fit(profile) and spec.runtime in i.runtimes]
        if not fit:
            return describe_misfit(profile, live, spec.runtime)
        usable = [i for i in fit if i.did not in excluded]
        if not usable:
            return f"the {len(fit)} live executors that could fit it all lost it before"
        trusted = [i for i in usable if self.admissible(i.did, now)]
        if not trusted:
            return (
                f"none of the {len(usable)} live executors that could fit it is trusted "
                f"at min_trust {self.min_trust:g} or more"
            )
        return None

    def _round_failed(self, t: _Task, now: float, acts: list[Effect]) -> None:
        """The round ended without a running executor: back off and retry, or give up."""
        retries = t.rec.retries + 1
        if retries > len(self.retry_backoff_s):
            t.rec = t.rec.evolve(retries=retries)
            self._finish(t, now, acts, S.FAILED, NO_EXECUTOR)
            return
        delay = self.retry_backoff_s[retries - 1]
        if self.rng is not None:
            delay *= 1.0 + 0.1 * self.rng.random()
        t.deadline = now + delay
        self._set(
            t,
            now,
            acts,
            state=S.PENDING,
            retries=retries,
            executor=None,
            reason=f"retrying: no executor took round {t.rec.attempt}",
        )

    def _lost(self, t: _Task, now: float, acts: list[Effect], executor: str) -> None:
        """``executor`` lost the task (lease lapse, claim timeout, abandon)."""
        acts.append(Send(executor, TaskCancelMsg(t.rec.task_hash, t.rec.attempt)))
        excluded = t.rec.excluded + ((executor,) if executor not in t.rec.excluded else ())
        t.rec = t.rec.evolve(excluded=excluded)
        if len(excluded) >= self.max_attempts:
            self._finish(t, now, acts, S.FAILED, MAX_ATTEMPTS)
        elif t.rec.state is S.CLAIMING:
            self._claim_next(t, now, acts)
        else:
            self._start_round(t, now, acts, attempt=t.rec.attempt + 1)

    # -- negotiation -----------------------------------------------------------------------

    def _current(
        self, task_hash: bytes, sender: str, attempt: int, state: TaskState
    ) -> _Task | Ignored:
        t = self._tasks.get(task_hash)
        if t is None:
            return Ignored("unknown task", task_hash, sender)
        if t.rec.state is not state:
            return Ignored(f"late: the task is {t.rec.state.value}", task_hash, sender)
        if attempt != t.rec.attempt:
            return Ignored(f"round {attempt} is not the current {t.rec.attempt}", task_hash, sender)
        return t

    def on_offer(
        self, offer: PlacementOffer, sender: str, attempt: int, now: float
    ) -> list[Effect]:
        """An offer for round ``attempt``. Taken only from the executor it names, while the
        round negotiates, once per executor; closes the window early when every expected
        executor has answered."""
        if offer.executor != sender:
            return [Ignored("the offer names another executor", offer.task_hash, sender)]
        t = self._current(offer.task_hash, sender, attempt, S.NEGOTIATING)
        if isinstance(t, Ignored):
            return [t]
        if t.rec.spec.profile is None:
            return [Ignored("offer for a legacy task", offer.task_hash, sender)]
        if sender in t.offers or sender in t.declined:
            return [Ignored("duplicate answer", offer.task_hash, sender)]
        if sender in t.rec.excluded:
            return [Ignored("offer from an excluded executor", offer.task_hash, sender)]
        acts: list[Effect] = []
        assert t.request is not None
        lie = offer_lie(offer, t.request, self.registry.get(sender))
        if lie is not None:
            # Caught out: the offer is refused (it still counts as the executor's answer) and
            # the executor's effective trust at this submitter drops.
            t.declined[sender] = f"offer refused: it lies ({lie})"[:MAX_WHY]
            acts += self.penalize(sender, LIE, now)
            acts.append(Rejected("placement_offer", sender, f"the offer lies: {lie}"))
        else:
            t.offers[sender] = offer
            acts.append(Count(OFFERS_RECEIVED))
        self._maybe_close_early(t, now, acts)
        return acts

    def on_decline(
        self,
        task_hash: bytes,
        sender: str,
        attempt: int,
        reason: str,
        now: float,
        detail: str = "",
    ) -> list[Effect]:
        """An executor will not offer for round ``attempt``; it counts as an answer."""
        t = self._current(task_hash, sender, attempt, S.NEGOTIATING)
        if isinstance(t, Ignored):
            return [t]
        if sender in t.offers or sender in t.declined:
            return [Ignored("duplicate answer", task_hash, sender)]
        t.declined[sender] = (f"{reason}: {detail}" if detail else reason)[:MAX_WHY]
        acts: list[Effect] = []
        self._maybe_close_early(t, now, acts)
        return acts

    def _maybe_close_early(self, t: _Task, now: float, acts: list[Effect]) -> None:
        if t.expected and t.expected <= (t.offers.keys() | t.declined.keys()):
            self._close_window(t, now, acts)

    def _close_window(self, t: _Task, now: float, acts: list[Effect]) -> None:
        spec = t.rec.spec
        if spec.profile is None:  # legacy: nobody asked to claim in the window
            self._round_failed(t, now, acts)
            return
        # The min_trust gate counts malice only; ranking uses every penalty.
        offers = [o for d, o in t.offers.items() if self.admissible(d, now)]
        trust = {d: self.effective_trust(d, now) for d in t.offers}
        ranking = rank_offers(
            offers,
            trust,
            weights=self.weights,
            min_trust=0.0,
            task_hash=spec.task_hash,
            max_cost=spec.max_cost,
        )
        if t.data and ranking.ranked:
            # What a locality-blind pick (the seed's 16A weights) would have moved.
            blind = rank_offers(
                [r.offer for r in ranking.ranked],
                trust,
                weights=BLIND_WEIGHTS,
                min_trust=0.0,
                task_hash=spec.task_hash,
                max_cost=spec.max_cost,
            )
            assert self.blobs is not None
            t.blind_need = bytes_needed(t.data, blind.ranked[0].offer.executor, self.blobs())
        t.holding = frozenset(t.expected - t.declined.keys())
        declines = tuple(sorted(t.declined.items()))
        t.offers.clear()
        t.declined.clear()
        t.backlog = list(ranking.ranked)
        t.rec = t.rec.evolve(
            declines=declines,
            offers=tuple(
                OfferSummary(r.offer.executor, r.score, r.offer.cost, r.offer.components, r.trust)
                for r in ranking.ranked
            ),
        )
        self._claim_next(t, now, acts)

    def _claim_next(self, t: _Task, now: float, acts: list[Effect]) -> None:
        """Claim the best remaining offer, or end the round."""
        while t.backlog:
            r = t.backlog.pop(0)
            ex = r.offer.executor
            if ex in t.rec.excluded or (self.avoid is not None and ex in self.avoid(t.rec.spec)):
                continue
            rec = t.rec
            t.deadline = t.claim_until = now + self.claim_timeout_s
            t.link_until = None
            claimed = rec.claimed + ((ex,) if ex not in rec.claimed else ())
            self._set(t, now, acts, state=S.CLAIMING, executor=ex, claimed=claimed, claimed_at=now)
            acts.append(Send(ex, ClaimMsg(rec.task_hash, rec.attempt, rec.spec)))
            claimed_msg = TaskClaimedMsg(rec.task_hash, ex, rec.attempt)
            if t.expected:
                # The winner learns from its claim. The others that may hold an offer learn on
                # the next request sent to them, or from this message alone if none goes
                # within RELEASE_DELAY_S; those that declined hold nothing and hear nothing.
                pending = self._releases.get(ex)
                if pending is not None:
                    pending.pop(rec.task_hash, None)  # a notice for an earlier pick
                    if not pending:
                        del self._releases[ex], self._release_at[ex]
                for d in sorted(t.holding - {ex}):
                    self._releases.setdefault(d, {})[rec.task_hash] = claimed_msg
                    self._release_at.setdefault(d, now + RELEASE_DELAY_S)
            else:
                acts.append(Publish(claimed_msg))
            return
        self._round_failed(t, now, acts)

    def on_claim_reply(
        self, task_hash: bytes, sender: str, attempt: int, accepted: bool, reason: str, now: float
    ) -> list[Effect]:
        """The claimed executor accepts (-> ``running``) or rejects (-> the next offer, or a new
        round). Also the reply to a legacy grant."""
        t = self._current(task_hash, sender, attempt, S.CLAIMING)
        if isinstance(t, Ignored):
            return [t]
        if sender != t.rec.executor:
            return [Ignored("claim reply from an executor not claimed", task_hash, sender)]
        acts: list[Effect] = []
        if accepted:
            self._running(t, now, acts)
        else:
            self._claim_next(t, now, acts)
        return acts

    def _running(self, t: _Task, now: float, acts: list[Effect]) -> None:
        t.lease_until = now + self.lease_timeout_s
        limit = run_limit_s(t.rec.spec, sum(size for _, size in t.data))
        t.run_until = None if limit is None else now + limit
        self._arm_running(t)
        started = t.rec.negotiation_started_at
        self._set(t, now, acts, state=S.RUNNING, started_at=now, retries=0, reason="")
        if started is not None:
            acts.append(Observe(PLACEMENT_DURATION, max(0.0, now - started)))
        if t.data and t.rec.executor is not None and self.blobs is not None:
            acts += placement_effects(t.data, t.rec.executor, t.blind_need, self.blobs())

    def _arm_running(self, t: _Task) -> None:
        """A running task's timer: the earliest of its lease, its run deadline and the grace
        of a lost link."""
        ds = [d for d in (t.lease_until, t.run_until, t.link_until) if d is not None]
        t.deadline = min(ds) if ds else None

    # -- what this submitter has seen of executors ----------------------------------------

    def effective_trust(self, did: str, now: float) -> float:
        """The configured trust in ``did`` less the penalties this submitter gave it."""
        return self.reputation.effective(did, self.trust(did), now)

    def admissible(self, did: str, now: float) -> bool:
        """Trusted enough to be asked and claimed: ``min_trust`` against the configured trust
        less malice (lies, wrong results, overruns; not lost tasks)."""
        return self.reputation.honest(did, self.trust(did), now) >= self.min_trust

    def penalize(self, did: str, reason: str, now: float) -> list[Effect]:
        self.reputation.penalize(did, reason, now)
        return [Count(EXECUTOR_PENALTIES, reason)]

    def link_down(self, did: str, now: float) -> list[Effect]:
        """The link to ``did`` closed: a task claimed by or running on it is lost unless the
        link comes back within ``link_grace_s`` (instead of waiting out the lease)."""
        for t in self._tasks.values():
            r = t.rec
            if r.executor == did and r.state in (S.CLAIMING, S.RUNNING) and not r.cancel_requested:
                t.link_until = now + self.link_grace_s
                t.deadline = min(t.deadline or math.inf, t.link_until)
        return []

    def link_up(self, did: str, now: float) -> list[Effect]:
        """The link to ``did`` is back: its tasks keep their lease and claim timers."""
        for t in self._tasks.values():
            if t.link_until is None or t.rec.executor != did:
                continue
            t.link_until = None
            if t.rec.state is S.RUNNING and not t.rec.cancel_requested:
                self._arm_running(t)
            elif t.rec.state is S.CLAIMING:
                t.deadline = t.claim_until
        return []

    # -- legacy first-claim ----------------------------------------------------------------

    def on_claim_request(
        self, task_hash: bytes, sender: str, attempt: int, now: float
    ) -> list[Effect]:
        """Legacy: the first executor to ask in the current round is granted (-> ``claiming``,
        awaiting its claim reply); every other request is refused so it releases."""
        t = self._tasks.get(task_hash)
        refuse: list[Effect] = [Send(sender, RefuseMsg(task_hash, attempt))]
        if t is None or t.rec.spec.profile is not None:
            return refuse
        rec = t.rec
        if attempt == rec.attempt and sender == rec.executor and rec.state is S.CLAIMING:
            return [Send(sender, GrantMsg(task_hash, attempt, rec.spec))]  # a duplicate request
        if rec.state is not S.NEGOTIATING or attempt != rec.attempt or sender in rec.excluded:
            return refuse
        acts: list[Effect] = []
        t.deadline = now + self.claim_timeout_s
        claimed = rec.claimed + ((sender,) if sender not in rec.claimed else ())
        self._set(t, now, acts, state=S.CLAIMING, executor=sender, claimed=claimed, claimed_at=now)
        acts.append(Send(sender, GrantMsg(task_hash, attempt, rec.spec)))
        acts.append(Publish(TaskClaimedMsg(task_hash, sender, attempt)))
        return acts

    # -- running ---------------------------------------------------------------------------

    def on_heartbeat(self, task_hash: bytes, sender: str, attempt: int, now: float) -> list[Effect]:
        """Renews the lease of the current executor and round. From a claimed executor it also
        stands for a lost claim reply. From an executor this task no longer uses, it is
        answered with a cancel."""
        t = self._tasks.get(task_hash)
        if t is None:
            return [Ignored("unknown task", task_hash, sender)]
        rec = t.rec
        current = sender == rec.executor and attempt == rec.attempt
        if current and rec.state is S.RUNNING:
            if not rec.cancel_requested:
                t.lease_until = now + self.lease_timeout_s
                self._arm_running(t)
            return []
        if current and rec.state is S.CLAIMING:
            acts: list[Effect] = []
            self._running(t, now, acts)
            return acts
        if sender in rec.claimed:
            return [Send(sender, TaskCancelMsg(task_hash, attempt))]
        return [Ignored("heartbeat from an executor never claimed", task_hash, sender)]

    def on_abandon(
        self, task_hash: bytes, sender: str, attempt: int, reason: str, now: float
    ) -> list[Effect]:
        """The current executor gives the task back: as a lapsed lease, without the wait."""
        t = self._tasks.get(task_hash)
        if (
            t is None
            or t.rec.state not in (S.CLAIMING, S.RUNNING)
            or sender != t.rec.executor
            or attempt != t.rec.attempt
        ):
            return [Ignored("abandon from an executor not running the task", task_hash, sender)]
        acts: list[Effect] = []
        if t.rec.cancel_requested:
            self._finish(t, now, acts, S.CANCELLED, CANCELLED_BY_USER)
        else:
            self._lost(t, now, acts, sender)
        return acts

    def on_result(
        self, result: TaskResult, sender: str, task_hash: bytes, now: float
    ) -> list[Effect]:
        """A run's final result. Acknowledged whenever it comes from an executor this task was
        claimed with (also duplicates), so it stops re-sending; recorded at most once.

        From the current executor any final state is recorded, except ``cancelled`` that nobody
        asked for (the executor stopped on its own: it is lost and the task re-placed). From an
        executor of an earlier round only ``completed`` is recorded (finished work is not
        wasted; its failures and cancellations are acknowledged and dropped), and the current
        executor, if any, is cancelled.
        """
        if result.executor != sender:
            return [Ignored("the result names another executor", task_hash, sender)]
        t = self._tasks.get(task_hash)
        ack = Send(sender, ResultAckMsg(task_hash, result.attempt))
        if t is None:
            return [ack, Ignored("result for an unknown task", task_hash, sender)]
        rec = t.rec
        if sender not in rec.claimed:
            return [Ignored("result from an executor never claimed", task_hash, sender)]
        if rec.state.is_final:
            return [ack, Ignored("duplicate result", task_hash, sender)]
        acts: list[Effect] = []
        current = (
            rec.state in (S.CLAIMING, S.RUNNING)
            and sender == rec.executor
            and result.attempt == rec.attempt
        )
        if current:
            if result.state is S.CANCELLED and not rec.cancel_requested:
                self._lost(t, now, acts, sender)
                return [ack, *acts]
        elif result.state is not S.COMPLETED:
            return [
                ack,
                Ignored(f"{result.state.value} result from an earlier round", task_hash, sender),
            ]
        else:
            if rec.state in (S.CLAIMING, S.RUNNING) and rec.executor is not None:
                acts.append(Send(rec.executor, TaskCancelMsg(task_hash, rec.attempt)))
            elif rec.state is S.NEGOTIATING:
                acts.append(Publish(TaskCancelMsg(task_hash, rec.attempt)))
        reason = CANCELLED_BY_USER if result.state is S.CANCELLED else ""
        self._set(
            t,
            now,
            acts,
            state=result.state,
            result=result,
            finished_at=now,
            executor=sender,
            reason=reason,
        )
        acts.append(ack)
        return acts

    # -- cancel ----------------------------------------------------------------------------

    def cancel(self, task_hash: bytes, now: float) -> list[Effect]:
        """Cancel a task (``icnctl compute cancel``). Negotiating or claiming: ``cancelled`` at
        once, and executors told to release. Running: the executor is told to stop and the task
        stays ``running`` (``cancel_requested``) until its result, or ``cancel_timeout_s``.
        A final task: nothing. An unknown task: :class:`LocalProtocolError`."""
        t = self._tasks.get(task_hash)
        if t is None:
            raise LocalProtocolError(f"cancel: unknown task {task_hash.hex()}")
        rec = t.rec
        acts: list[Effect] = []
        if rec.state.is_final:
            return acts
        if rec.state is S.RUNNING:
            if rec.cancel_requested:
                return acts
            assert rec.executor is not None
            t.deadline = now + self.cancel_timeout_s
            self._set(t, now, acts, cancel_requested=True, reason=CANCELLED_BY_USER)
            acts.append(Send(rec.executor, TaskCancelMsg(task_hash, rec.attempt)))
            return acts
        self._finish(t, now, acts, S.CANCELLED, CANCELLED_BY_USER)
        if rec.state in (S.NEGOTIATING, S.CLAIMING):
            acts.append(Publish(TaskCancelMsg(task_hash, rec.attempt)))
        if rec.state is S.CLAIMING and rec.executor is not None:
            acts.append(Send(rec.executor, TaskCancelMsg(task_hash, rec.attempt)))
        return acts

    # -- restart ---------------------------------------------------------------------------

    def restore(self, records: Iterable[TaskRecord], now: float) -> list[Effect]:
        """Resume after a restart, on a fresh core. Final tasks are only remembered. Pending
        and negotiating tasks start a new round (``attempt`` + 1). A claiming task re-sends its
        claim (idempotent on the executor) with a fresh claim timeout. A running task keeps its
        executor with a fresh lease (its heartbeats or result will come; if not, the lease
        lapses and it is re-placed); a pending cancel is sent again."""
        if self._tasks:
            raise LocalProtocolError("restore: the core is not fresh")
        acts: list[Effect] = []
        for rec in sorted(records, key=lambda r: (r.submitted_at, r.task_hash)):
            th = rec.task_hash
            if th in self._tasks:
                raise LocalProtocolError(f"restore: task {th.hex()} given twice")
            t = _Task(rec)
            self._tasks[th] = t
            if rec.state.is_final:
                continue
            if rec.state is S.RUNNING:
                assert rec.executor is not None
                if rec.cancel_requested:
                    t.deadline = now + self.cancel_timeout_s
                    acts.append(Send(rec.executor, TaskCancelMsg(th, rec.attempt)))
                else:
                    t.deadline = now + self.lease_timeout_s
            elif rec.state is S.CLAIMING and rec.executor is not None:
                self._placing.add(th)  # keeps its slot; the others are admitted afresh
                t.deadline = now + self.claim_timeout_s
                claim = ClaimMsg if rec.spec.profile is not None else GrantMsg
                acts.append(Send(rec.executor, claim(th, rec.attempt, rec.spec)))
            else:
                self._start_round(t, now, acts, attempt=rec.attempt + 1)
        return acts

    # -- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`on_timer` has work, or None."""
        ds = [t.deadline for t in self._tasks.values() if t.deadline is not None]
        if self._release_at:
            ds.append(min(self._release_at.values()))
        return min(ds) if ds else None

    def on_timer(self, now: float) -> list[Effect]:
        """Fire every task timer due at ``now``: close offer windows, time out claims, lapse
        leases, give up on unconfirmed cancels, start retry rounds."""
        due = sorted(
            (t.deadline, th)
            for th, t in self._tasks.items()
            if t.deadline is not None and t.deadline <= now
        )
        acts: list[Effect] = []
        for d in sorted(d for d, at in self._release_at.items() if at <= now):
            del self._release_at[d]
            acts.extend(Send(d, m) for m in self._releases.pop(d, {}).values())
        for _, th in due:
            t = self._tasks[th]
            t.deadline = None
            state = t.rec.state
            if state is S.NEGOTIATING:
                self._close_window(t, now, acts)
            elif state is S.CLAIMING:  # a slow reply is not penalised: it may be the network
                assert t.rec.executor is not None
                self._lost(t, now, acts, t.rec.executor)
            elif state is S.RUNNING:
                assert t.rec.executor is not None
                if t.rec.cancel_requested:
                    self._finish(
                        t,
                        now,
                        acts,
                        S.CANCELLED,
                        f"{CANCELLED_BY_USER} (the executor did not confirm)",
                    )
                else:
                    overran = t.run_until is not None and t.run_until <= now
                    acts += self.penalize(t.rec.executor, OVERRUN if overran else LOST, now)
                    self._lost(t, now, acts, t.rec.executor)
            elif state is S.PENDING:
                self._start_round(t, now, acts, attempt=t.rec.attempt + 1)
        return acts
