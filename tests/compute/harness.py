"""Builders and an in-memory network for the compute cores (like h11's ``ConnectionPair``).

:class:`Network` holds nodes (each with a :class:`SubmitterCore`, an :class:`ExecutorCore`, or
both, under one DID), a virtual clock, and a queue of messages in flight. It executes every
action a core returns the way the daemon's driver will: ``Persist`` into a per-node store,
gossip to every executor, direct messages to the core that handles them, ``StartRun`` into a
fake runner that finishes after ``run_time`` (or never, with ``run_time=None``), metrics into
counters. Time only moves in :meth:`Network.run`, to the next message or core timer.

Faults: ``latency`` per message, ``drop(action, src, dst) -> bool`` to lose messages,
:meth:`Network.crash` / :meth:`Network.restart` to kill a node and rebuild it from its store.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from icn_node.compute import (
    Action,
    CountLoss,
    CountOfferReceived,
    CountRequestReceived,
    CountTaskFinished,
    CountTaskSubmitted,
    CountWin,
    ExecutorCore,
    ExecutorInfo,
    ExecutorRegistry,
    Ignored,
    JobRecord,
    ObservePlacementDuration,
    ObserveScore,
    Persist,
    PublishCancel,
    PublishRequest,
    PublishTaskClaimed,
    PublishTaskSubmitted,
    SendAbandon,
    SendCancel,
    SendClaim,
    SendClaimReply,
    SendClaimRequest,
    SendDecline,
    SendGrant,
    SendHeartbeat,
    SendOffer,
    SendRefuse,
    SendResult,
    SendResultAck,
    StartRun,
    StateChanged,
    StopRun,
    SubmitterCore,
    TaskRecord,
    TaskResult,
    TaskSpec,
    TaskState,
)
from icn_node.scheduler import (
    DefaultPlacementPolicy,
    LocalityContext,
    NodeCapacity,
    ResourceProfile,
)

SUB = "did:key:z6MkSubmitter"
PROFILE = ResourceProfile.compute_heavy(2.0, 4096)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def did(name: str) -> str:
    return f"did:key:z6Mk{name}"


def spec(
    name: str = "task",
    *,
    profile: ResourceProfile | None = PROFILE,
    submitter: str = SUB,
    **kw: Any,
) -> TaskSpec:
    """A task spec named ``name`` (the name picks the nonce, so names give distinct hashes)."""
    return TaskSpec(
        code_blob=h("code"),
        submitter=submitter,
        fuel=kw.pop("fuel", 10_000),
        nonce=h(name)[:16],
        profile=profile,
        **kw,
    )


def capacity(cores: float = 8, mem: int = 16384) -> NodeCapacity:
    return NodeCapacity.from_totals(cores, mem, 100_000, 1000.0)


def result(
    executor: str,
    attempt: int = 1,
    state: TaskState = TaskState.COMPLETED,
    *,
    fuel: int = 42,
    t0: float = 0.0,
    t1: float = 1.0,
) -> TaskResult:
    return TaskResult(
        state=state,
        executor=executor,
        fuel_used=fuel,
        exit_code=0 if state is TaskState.COMPLETED else None,
        started_at=t0,
        finished_at=t1,
        attempt=attempt,
        stdout=b"ok\n",
    )


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def of(actions: list[Action], cls: type) -> list[Any]:
    return [a for a in actions if isinstance(a, cls)]


def one(actions: list[Action], cls: type) -> Any:
    found = of(actions, cls)
    assert len(found) == 1, f"expected one {cls.__name__} in {kinds(actions)}"
    return found[0]


@dataclass
class Node:
    did: str
    submitter: SubmitterCore | None = None
    executor: ExecutorCore | None = None
    store: dict[bytes, TaskRecord | JobRecord] = field(default_factory=dict)
    jobs: dict[bytes, JobRecord] = field(default_factory=dict)
    up: bool = True
    epoch: int = 0
    make_submitter: Callable[[], SubmitterCore] | None = None
    make_executor: Callable[[], ExecutorCore] | None = None


class Network:
    """Nodes joined by an in-memory network with a virtual clock (see the module docstring)."""

    def __init__(
        self, *, latency: float = 0.01, run_time: float | None = 2.0, fuel_used: int = 42
    ) -> None:
        self.now = 0.0
        self.latency = latency
        self.run_time = run_time
        self.fuel_used = fuel_used
        self.nodes: dict[str, Node] = {}
        self.drop: Callable[[Action, str, str], bool] = lambda a, s, d: False
        self.log: list[tuple[float, str, Action]] = []
        self.metrics: Counter[str] = Counter()
        self.starts: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        self.changes: list[StateChanged] = []
        self._q: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._runs: dict[tuple[str, bytes], int] = {}

    # -- building ---------------------------------------------------------------------------

    def add_executor(
        self,
        name_or_did: str,
        *,
        trust: Callable[[str], float] | float = 0.9,
        cap: NodeCapacity | None = None,
        seed: int | None = None,
        **kw: Any,
    ) -> ExecutorCore:
        d = name_or_did
        tr = trust if callable(trust) else (lambda _d, v=trust: v)

        def make() -> ExecutorCore:
            pol = DefaultPlacementPolicy(jitter=None if seed is None else random.Random(seed))
            return ExecutorCore(d, cap or capacity(), pol, tr, **kw)

        n = self.nodes.setdefault(d, Node(d))
        n.make_executor = make
        n.executor = make()
        return n.executor

    def add_submitter(
        self,
        d: str = SUB,
        *,
        trust: Callable[[str], float] | dict[str, float] | float = 0.9,
        interval_s: float = 10.0,
        **kw: Any,
    ) -> SubmitterCore:
        if isinstance(trust, dict):
            table = dict(trust)
            tr: Callable[[str], float] = lambda x: table.get(x, 0.0)  # noqa: E731
        elif callable(trust):
            tr = trust
        else:
            tr = lambda _x, v=trust: v  # noqa: E731
        registry = ExecutorRegistry(interval_s)
        n = self.nodes.setdefault(d, Node(d))
        n.make_submitter = lambda: SubmitterCore(d, tr, registry, **kw)
        n.submitter = n.make_submitter()
        return n.submitter

    def announce_all(self) -> None:
        """Every executor announces itself to every submitter's registry."""
        for n in self.nodes.values():
            if n.executor is None:
                continue
            info = n.executor.announce_info(self.now)
            for m in self.nodes.values():
                if m.submitter is not None:
                    m.submitter.registry.announce(ExecutorInfo.from_dict(info.to_dict()), self.now)

    @property
    def submitter(self) -> SubmitterCore:
        subs = [n.submitter for n in self.nodes.values() if n.submitter is not None]
        assert len(subs) == 1
        return subs[0]

    def executor(self, d: str) -> ExecutorCore:
        e = self.nodes[d].executor
        assert e is not None
        return e

    # -- driving ----------------------------------------------------------------------------

    def submit(self, s: TaskSpec) -> bytes:
        self.execute(s.submitter, self.nodes[s.submitter].submitter.submit(s, self.now))
        return s.task_hash

    def cancel(self, task_hash: bytes, d: str = SUB) -> list[Action]:
        acts = self.nodes[d].submitter.cancel(task_hash, self.now)
        self.execute(d, acts)
        return acts

    def record(self, task_hash: bytes, d: str = SUB) -> TaskRecord:
        r = self.nodes[d].submitter.record(task_hash)
        assert r is not None
        return r

    def _at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._q, (t, next(self._seq), fn))

    def _next_timer(self) -> tuple[float, Node, Any] | None:
        best = None
        for n in self.nodes.values():
            if not n.up:
                continue
            for core in (n.submitter, n.executor):
                if core is None:
                    continue
                dl = core.next_deadline()
                if dl is not None and (best is None or dl < best[0]):
                    best = (dl, n, core)
        return best

    def run(self, until: float, *, max_steps: int = 100_000) -> None:
        """Deliver messages and fire timers in time order up to ``until``."""
        for _ in range(max_steps):
            timer = self._next_timer()
            t_msg = self._q[0][0] if self._q else None
            t_timer = timer[0] if timer else None
            cands = [t for t in (t_msg, t_timer) if t is not None]
            if not cands or min(cands) > until:
                self.now = max(self.now, until)
                return
            if t_msg is not None and (t_timer is None or t_msg <= t_timer):
                t, _, fn = heapq.heappop(self._q)
                self.now = max(self.now, t)
                fn()
            else:
                assert timer is not None
                self.now = max(self.now, timer[0])
                self.execute(timer[1].did, timer[2].on_timer(self.now))
        raise AssertionError("the network did not settle (a timer in the past?)")

    def settle(self, horizon: float = 600.0) -> None:
        self.run(self.now + horizon)

    # -- crash and restart ------------------------------------------------------------------

    def crash(self, d: str) -> None:
        n = self.nodes[d]
        n.up = False
        n.epoch += 1
        for key in [k for k in self._runs if k[0] == d]:
            del self._runs[key]  # its sandboxes die with it

    def restart(self, d: str) -> list[Action]:
        n = self.nodes[d]
        n.up = True
        acts: list[Action] = []
        if n.make_submitter is not None:
            registry = n.submitter.registry
            n.submitter = n.make_submitter()
            n.submitter.registry = registry
            recs = [r for r in n.store.values() if isinstance(r, TaskRecord)]
            acts += n.submitter.restore(recs, self.now)
        if n.make_executor is not None:
            n.executor = n.make_executor()
            acts += n.executor.restore(list(n.jobs.values()), self.now)
        self.execute(d, acts)
        return acts

    # -- executing actions ------------------------------------------------------------------

    def _send(self, src: str, dst: str, a: Action, deliver: Callable[[Node], list[Action]]) -> None:
        if self.drop(a, src, dst):
            return

        def go() -> None:
            n = self.nodes.get(dst)
            if n is None or not n.up:
                return
            self.execute(dst, deliver(n))

        self._at(self.now + self.latency, go)

    def _gossip(self, src: str, a: Action, deliver: Callable[[ExecutorCore], list[Action]]) -> None:
        for d, n in sorted(self.nodes.items()):
            if n.executor is not None:
                # Our own gossip loops back at once, as the driver does.
                if d == src:
                    if n.up and not self.drop(a, src, d):
                        self.execute(d, deliver(n.executor))
                else:
                    self._send(src, d, a, lambda n, f=deliver: f(n.executor) if n.executor else [])

    def execute(self, src: str, actions: list[Action]) -> None:
        n = self.nodes[src]
        if not n.up:
            return
        for a in actions:
            self.log.append((self.now, src, a))
            self._one(src, n, a)

    def _one(self, src: str, n: Node, a: Action) -> None:  # noqa: C901
        now = lambda: self.now  # noqa: E731
        if isinstance(a, Persist):
            if isinstance(a.record, JobRecord):
                n.jobs[a.record.task_hash] = a.record
            else:
                n.store[a.record.task_hash] = a.record
        elif isinstance(a, StateChanged):
            self.changes.append(a)
        elif isinstance(a, Ignored):
            self.metrics["ignored"] += 1
        elif isinstance(a, PublishRequest):
            self._gossip(
                src,
                a,
                lambda e: e.on_request(
                    a.request,
                    a.attempt,
                    now(),
                    LocalityContext.empty(),
                    None,
                    window_s=a.window_s,
                    excluded=a.excluded,
                ),
            )
        elif isinstance(a, PublishTaskSubmitted):
            self._gossip(
                src,
                a,
                lambda e: e.on_task_submitted(
                    a.spec, a.attempt, now(), window_s=a.window_s, excluded=a.excluded
                ),
            )
        elif isinstance(a, PublishTaskClaimed):
            self._gossip(
                src, a, lambda e: e.on_task_claimed(a.task_hash, a.winner, a.attempt, now())
            )
        elif isinstance(a, PublishCancel):
            self._gossip(src, a, lambda e: e.on_cancel(a.task_hash, src, now(), a.attempt))
        elif isinstance(a, SendOffer):
            self._send(src, a.to, a, lambda m: m.submitter.on_offer(a.offer, src, a.attempt, now()))
        elif isinstance(a, SendDecline):
            self._send(
                src,
                a.to,
                a,
                lambda m: m.submitter.on_decline(a.task_hash, src, a.attempt, a.reason, now()),
            )
        elif isinstance(a, SendClaim):
            self._send(
                src,
                a.to,
                a,
                lambda m: m.executor.on_claim(a.task_hash, src, a.attempt, a.spec, now()),
            )
        elif isinstance(a, SendGrant):
            self._send(
                src,
                a.to,
                a,
                lambda m: m.executor.on_grant(a.task_hash, src, a.attempt, a.spec, now()),
            )
        elif isinstance(a, SendClaimReply):
            self._send(
                src,
                a.to,
                a,
                lambda m: m.submitter.on_claim_reply(
                    a.task_hash, src, a.attempt, a.accepted, a.reason, now()
                ),
            )
        elif isinstance(a, SendClaimRequest):
            self._send(
                src,
                a.to,
                a,
                lambda m: m.submitter.on_claim_request(a.task_hash, src, a.attempt, now()),
            )
        elif isinstance(a, SendRefuse):
            self._send(
                src, a.to, a, lambda m: m.executor.on_refuse(a.task_hash, src, a.attempt, now())
            )
        elif isinstance(a, SendHeartbeat):
            self._send(
                src, a.to, a, lambda m: m.submitter.on_heartbeat(a.task_hash, src, a.attempt, now())
            )
        elif isinstance(a, SendResult):
            self._send(
                src, a.to, a, lambda m: m.submitter.on_result(a.result, src, a.task_hash, now())
            )
        elif isinstance(a, SendResultAck):
            self._send(
                src, a.to, a, lambda m: m.executor.on_result_ack(a.task_hash, src, now(), a.attempt)
            )
        elif isinstance(a, SendCancel):
            self._send(
                src,
                a.to,
                a,
                lambda m: (
                    m.executor.on_cancel(a.task_hash, src, now(), a.attempt) if m.executor else []
                ),
            )
        elif isinstance(a, SendAbandon):
            self._send(
                src,
                a.to,
                a,
                lambda m: m.submitter.on_abandon(a.task_hash, src, a.attempt, a.reason, now()),
            )
        elif isinstance(a, StartRun):
            self._start_run(src, n, a)
        elif isinstance(a, StopRun):
            self._stop_run(src, n, a)
        elif isinstance(a, CountTaskSubmitted):
            self.metrics[f"submitted:{a.protocol}"] += 1
        elif isinstance(a, CountTaskFinished):
            self.metrics[f"finished:{a.state.value}"] += 1
            self.metrics["fuel"] += a.fuel_used
        elif isinstance(a, CountWin | CountLoss | CountOfferReceived | CountRequestReceived):
            self.metrics[f"{type(a).__name__}:{src}"] += 1
            self.metrics[type(a).__name__] += 1
        elif isinstance(a, ObserveScore | ObservePlacementDuration):
            self.metrics[type(a).__name__] += 1
        else:  # pragma: no cover - a new action the harness does not know
            raise AssertionError(f"unrouted action {a!r}")

    # -- the fake runner --------------------------------------------------------------------

    def _finish_run(
        self,
        d: str,
        epoch: int,
        run_id: int,
        th: bytes,
        attempt: int,
        state: TaskState,
        started: float,
    ) -> None:
        n = self.nodes[d]
        if not n.up or n.epoch != epoch or self._runs.get((d, th)) != run_id:
            return  # the sandbox died with its daemon, or the run was already reported
        del self._runs[(d, th)]
        r = TaskResult(
            state=state,
            executor=d,
            attempt=attempt,
            started_at=started,
            finished_at=self.now,
            fuel_used=self.fuel_used if state is TaskState.COMPLETED else 0,
            exit_code=0 if state is TaskState.COMPLETED else None,
        )
        self.execute(d, n.executor.on_run_finished(th, r, self.now))

    def _start_run(self, d: str, n: Node, a: StartRun) -> None:
        th = a.spec.task_hash
        assert (d, th) not in self._runs, "a task was started twice on one executor"
        self.starts[d].append((th, a.attempt))
        run_id = next(self._seq)
        self._runs[(d, th)] = run_id
        started = self.now
        self.execute(d, n.executor.on_run_started(th, self.now))
        if self.run_time is not None:
            ep = n.epoch
            self._at(
                self.now + self.run_time,
                lambda: self._finish_run(
                    d, ep, run_id, th, a.attempt, TaskState.COMPLETED, started
                ),
            )

    def _stop_run(self, d: str, n: Node, a: StopRun) -> None:
        run_id = self._runs.get((d, a.task_hash))
        if run_id is None:
            return
        ep = n.epoch
        self._at(
            self.now,
            lambda: self._finish_run(
                d, ep, run_id, a.task_hash, a.attempt, TaskState.CANCELLED, self.now
            ),
        )

    # -- looking at what happened -----------------------------------------------------------

    def sent(self, cls: type, src: str | None = None) -> list[Any]:
        return [a for _, s, a in self.log if isinstance(a, cls) and (src is None or s == src)]
