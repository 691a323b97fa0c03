"""Builders and an in-memory network of real ComputeCores (like h11's
``ConnectionPair``).

:class:`Network` hosts one :class:`ComputeCore` per DID (its submitter, and its executor when
the node runs one) under a virtual clock, and moves the effects they return the way the daemon's
driver does: ``Send`` to the one core it names and ``Publish`` to every other core, each after
``latency`` and through ``core.receive`` (so the tests run the daemon's own routing, origin
checks and self-delivery); ``Persist`` into a per-node store; ``StartRun`` into a fake runner
that reports ``run_started`` at once and ``run_finished`` after ``run_time`` (or never, with
``run_time=None``); metrics into counters. Time only moves in :meth:`Network.run`, to the next
message or core timer. Executors announce themselves on their own timers, as in the daemon.

Faults: ``drop(effect, src, dst) -> bool`` to lose messages, :meth:`Network.crash` /
:meth:`Network.restart` to kill a node and rebuild its core from its store.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from builders import PROFILE, SUB, capacity, did, h, kinds, result, spec  # noqa: F401

from icn_node.compute import (
    ComputeCore,
    Count,
    Effect,
    ExecutorCore,
    ExecutorRegistry,
    Ignored,
    JobRecord,
    Observe,
    Persist,
    Publish,
    Rejected,
    Send,
    StartRun,
    StateChanged,
    StopRun,
    SubmitterCore,
    TaskRecord,
)
from icn_node.scheduler import BlobRegistry, DefaultPlacementPolicy, NodeCapacity
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.tasks import TaskResult, TaskSpec, TaskState
from icn_node.wire import ExecutorAnnounceMsg, Message


@dataclass
class Node:
    did: str
    trust: Callable[[str], float] = lambda _d: 0.9
    interval_s: float = 10.0
    sub_kw: dict[str, Any] = field(default_factory=dict)
    exec_kw: dict[str, Any] | None = None
    core: ComputeCore | None = None
    store: dict[bytes, TaskRecord] = field(default_factory=dict)
    jobs: dict[bytes, JobRecord] = field(default_factory=dict)
    up: bool = True
    epoch: int = 0
    blobs: Callable[[], BlobRegistry] = BlobRegistry

    def build(self, registry: ExecutorRegistry | None = None) -> ComputeCore:
        registry = registry or ExecutorRegistry(self.interval_s)
        executor = None
        if self.exec_kw is not None:
            kw = dict(self.exec_kw)
            cap = kw.pop("cap", None) or capacity()
            seed = kw.pop("seed", None)
            trust = kw.pop("trust", self.trust)
            pol = DefaultPlacementPolicy(jitter=None if seed is None else random.Random(seed))
            executor = ExecutorCore(self.did, cap, pol, trust, **kw)
        self.core = ComputeCore(
            self.did,
            submitter=SubmitterCore(
                self.did, self.trust, registry, blobs=self.blobs, **self.sub_kw
            ),
            registry=registry,
            executor=executor,
            blob_registry=self.blobs,
        )
        return self.core


def _trust(trust: Callable[[str], float] | dict[str, float] | float) -> Callable[[str], float]:
    if isinstance(trust, dict):
        table = dict(trust)
        return lambda x: table.get(x, 0.0)
    if callable(trust):
        return trust
    return lambda _x, v=trust: v


class Network:
    """Nodes joined by an in-memory network with a virtual clock (see the module docstring)."""

    def __init__(
        self, *, latency: float = 0.01, run_time: float | None = 2.0, fuel_used: int = 42
    ) -> None:
        self.now = 0.0
        self.latency = latency
        self.run_time = run_time
        self.run_times: dict[str, float | None] = {}
        self.fuel_by: dict[str, int] = {}
        """Per-executor fuel reported (an executor that lies about its result)."""
        """Per-executor run times (None: its runs never end), overriding ``run_time``."""
        self.fuel_used = fuel_used
        self.nodes: dict[str, Node] = {}
        self.drop: Callable[[Effect, str, str], bool] = lambda e, s, d: False
        self.log: list[tuple[float, str, Effect]] = []
        self.metrics: Counter[str] = Counter()
        self.starts: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        self.changes: list[StateChanged] = []
        self._q: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._runs: dict[tuple[str, bytes], int] = {}
        self._submitter: str | None = None
        self.blobs = BlobRegistry()
        """Where blobs are, as every node knows it (assign a new registry to change it)."""

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
        n = self.nodes.setdefault(name_or_did, Node(name_or_did, blobs=lambda: self.blobs))
        n.exec_kw = {"cap": cap, "seed": seed, "trust": _trust(trust), **kw}
        core = n.build(n.core.registry if n.core else None)
        assert core.executor is not None
        return core.executor

    def add_submitter(
        self,
        d: str = SUB,
        *,
        trust: Callable[[str], float] | dict[str, float] | float = 0.9,
        interval_s: float = 10.0,
        **kw: Any,
    ) -> SubmitterCore:
        n = self.nodes.setdefault(d, Node(d, blobs=lambda: self.blobs))
        n.trust, n.interval_s, n.sub_kw = _trust(trust), interval_s, kw
        self._submitter = d
        return n.build().submitter

    def core(self, d: str) -> ComputeCore:
        c = self.nodes[d].core
        assert c is not None
        return c

    def announce_all(self) -> None:
        """Every executor announces itself to every node now (no latency, nothing lost)."""
        for d, n in sorted(self.nodes.items()):
            if n.core is None or n.core.executor is None:
                continue
            msg = ExecutorAnnounceMsg(
                ExecutorInfo.from_dict(n.core.announce_info(self.now).to_dict())
            )
            for m in self.nodes.values():
                if m.core is not None:
                    self.execute(m.did, m.core.receive(d, msg, self.now))

    @property
    def submitter(self) -> SubmitterCore:
        assert self._submitter is not None
        return self.core(self._submitter).submitter

    def executor(self, d: str) -> ExecutorCore:
        e = self.core(d).executor
        assert e is not None
        return e

    # -- driving ----------------------------------------------------------------------------

    def submit(self, s: TaskSpec) -> bytes:
        self.execute(s.submitter, self.core(s.submitter).submit(s, self.now))
        return s.task_hash

    def cancel(self, task_hash: bytes, d: str = SUB) -> list[Effect]:
        effects = self.core(d).cancel(task_hash, self.now)
        self.execute(d, effects)
        return effects

    def record(self, task_hash: bytes, d: str = SUB) -> TaskRecord:
        """The task's latest record as the submitter persisted it (the core forgets a task
        once it ends; the store keeps it, as the daemon's SQLite does)."""
        return self.nodes[d].store[task_hash]

    def _at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._q, (t, next(self._seq), fn))

    def _next_timer(self) -> tuple[float, Node] | None:
        best = None
        for n in self.nodes.values():
            if not n.up or n.core is None:
                continue
            dl = n.core.next_deadline()
            if dl is not None and (best is None or dl < best[0]):
                best = (dl, n)
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
                core = timer[1].core
                assert core is not None
                self.execute(timer[1].did, core.on_timer(self.now))
        raise AssertionError("the network did not settle (a timer in the past?)")

    def settle(self, horizon: float = 600.0) -> None:
        self.run(self.now + horizon)

    # -- crash and restart ------------------------------------------------------------------

    def link(self, a: str, b: str, up: bool) -> None:
        """The link between ``a`` and ``b`` goes down (or comes back): both cores are told,
        as the mesh's peer events tell the drivers. Messages still flow (a dead link in the
        daemon means a dead peer; here only the event matters)."""
        for x, y in ((a, b), (b, a)):
            n = self.nodes[x]
            if n.up and n.core is not None:
                event = n.core.link_up if up else n.core.link_down
                self.execute(x, event(y, self.now))

    def crash(self, d: str) -> None:
        n = self.nodes[d]
        n.up = False
        n.epoch += 1
        for key in [k for k in self._runs if k[0] == d]:
            del self._runs[key]  # its sandboxes die with it

    def restart(self, d: str) -> list[Effect]:
        """A fresh core from the node's store (its registry kept: announcements it heard
        before the crash are assumed heard again)."""
        n = self.nodes[d]
        n.up = True
        old = n.core
        core = n.build(old.registry if old is not None else None)
        tasks = [r for r in n.store.values() if not r.state.is_final]
        effects = core.restore(tasks, list(n.jobs.values()), self.now)
        self.execute(d, effects)
        return effects

    # -- executing effects ------------------------------------------------------------------

    def _deliver(self, src: str, dst: str, e: Send | Publish, msg: Message) -> None:
        if self.drop(e, src, dst):
            return

        def go() -> None:
            n = self.nodes.get(dst)
            if n is None or not n.up or n.core is None:
                return
            self.execute(dst, n.core.receive(src, msg, self.now))

        self._at(self.now + self.latency, go)

    def execute(self, src: str, effects: list[Effect]) -> None:
        n = self.nodes[src]
        if not n.up:
            return
        for e in effects:
            self.log.append((self.now, src, e))
            self._one(src, n, e)

    def _one(self, src: str, n: Node, e: Effect) -> None:
        match e:
            case Persist(record=JobRecord() as job):
                n.jobs[job.task_hash] = job
            case Persist(record=TaskRecord() as rec):
                n.store[rec.task_hash] = rec
            case StateChanged():
                self.changes.append(e)
            case Ignored() | Rejected():
                self.metrics[type(e).__name__.lower()] += 1
            case Send(to, msg):
                assert to != src, "the core delivers to itself"
                self._deliver(src, to, e, msg)
            case Publish(msg):
                for d in sorted(self.nodes):
                    if d != src:
                        self._deliver(src, d, e, msg)
            case StartRun():
                self._start_run(src, n, e)
            case StopRun():
                self._stop_run(src, n, e)
            case Count(metric, label, k):
                self.metrics[metric] += k
                self.metrics[f"{metric}:{label or src}"] += k
            case Observe(metric):
                self.metrics[metric] += 1
            case _:  # pragma: no cover - a new effect the harness does not know
                raise AssertionError(f"unrouted effect {e!r}")

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
            fuel_used=self.fuel_by.get(d, self.fuel_used) if state is TaskState.COMPLETED else 0,
            exit_code=0 if state is TaskState.COMPLETED else None,
        )
        self.execute(d, self.core(d).run_finished(th, r, self.now))

    def _start_run(self, d: str, n: Node, a: StartRun) -> None:
        th = a.spec.task_hash
        assert (d, th) not in self._runs, "a task was started twice on one executor"
        self.starts[d].append((th, a.attempt))
        run_id = next(self._seq)
        self._runs[(d, th)] = run_id
        started = self.now
        self.execute(d, self.core(d).run_started(th, self.now))
        run_time = self.run_times.get(d, self.run_time)
        if run_time is not None:
            ep = n.epoch
            self._at(
                self.now + run_time,
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

    def sent(self, cls: type[Message], src: str | None = None) -> list[Send | Publish]:
        """Every Send and Publish of a ``cls`` message (by ``src``), in order."""
        return [
            e
            for _, s, e in self.log
            if isinstance(e, Send | Publish)
            and isinstance(e.msg, cls)
            and (src is None or s == src)
        ]
