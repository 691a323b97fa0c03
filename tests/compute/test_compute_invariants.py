"""Properties under arbitrary interleavings.

- One executor, any sequence of requests, claims, grants, TaskClaimed, cancels, refusals, run
  ends, acks, capacity changes and timer ticks: reservations never exceed capacity, and no task
  is ever started twice.
- A whole network losing messages at random and with executors crashing and restarting: every
  task ends in exactly one final state, recorded once, and no capacity stays held.
"""

from __future__ import annotations

import math
import random

from harness import SUB, Network, capacity, did, spec
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from icn_node.compute import ExecutorCore, Send, StartRun
from icn_node.scheduler import DefaultPlacementPolicy, PlacementRequest, ResourceProfile
from icn_node.scheduler.tasks import TaskResult, TaskState
from icn_node.wire import ClaimReplyMsg

EX = did("Exec")
SPECS = [
    spec("p0", profile=ResourceProfile.compute_heavy(2.0, 4096)),
    spec("p1", profile=ResourceProfile.compute_heavy(3.0, 2048)),
    spec("p2", profile=ResourceProfile.minimal()),
    spec("p3", profile=ResourceProfile.compute_heavy(1.0, 6000)),
    spec("l0", profile=None),
    spec("l1", profile=None),
]
task = st.integers(0, len(SPECS) - 1)
attempt = st.integers(1, 3)
dt = st.floats(0.0, 3.0)
FINAL = [TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED]


class ExecutorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.totals = capacity(cores=4, mem=8192)
        self.e = ExecutorCore(
            EX,
            self.totals,
            DefaultPlacementPolicy(),
            lambda _d: 0.9,
            deliberation_s=0.5,
            heartbeat_interval_s=1.0,
            result_resend_s=1.0,
        )
        self.now = 0.0
        self.running: dict[bytes, int] = {}  # task -> attempt, runs in flight
        self.started: dict[bytes, int] = {}  # task -> StartRun count, ever

    def _apply(self, acts) -> None:
        for a in acts:
            if isinstance(a, StartRun):
                th = a.spec.task_hash
                assert th not in self.running, "started while already running"
                self.started[th] = self.started.get(th, 0) + 1
                assert self.started[th] == 1, "a task was started twice"
                self.running[th] = a.attempt
                want = a.spec.profile or ResourceProfile.minimal()
                assert a.reservation.profile == want
        for a in acts:
            if isinstance(a, Send) and isinstance(a.msg, ClaimReplyMsg) and a.msg.accepted:
                assert a.msg.task in self.started, "accepted a claim it never ran"

    def _tick(self, d: float) -> None:
        self.now += d

    @rule(i=task, n=attempt, d=dt)
    def request(self, i, n, d):
        self._tick(d)
        s = SPECS[i]
        if s.profile is None:
            self._apply(self.e.on_task_submitted(s, n, self.now))
        else:
            req = PlacementRequest(s.task_hash, s.profile, s.submitter)
            self._apply(self.e.on_request(req, n, self.now))

    @rule(i=task, n=attempt, d=dt)
    def claim(self, i, n, d):
        self._tick(d)
        s = SPECS[i]
        f = self.e.on_claim if s.profile is not None else self.e.on_grant
        self._apply(f(s.task_hash, SUB, n, s, self.now))

    @rule(i=task, n=attempt, ours=st.booleans())
    def task_claimed(self, i, n, ours):
        self._apply(
            self.e.on_task_claimed(SPECS[i].task_hash, EX if ours else did("Other"), n, self.now)
        )

    @rule(i=task, n=attempt)
    def refuse(self, i, n):
        self._apply(self.e.on_refuse(SPECS[i].task_hash, SUB, n, self.now))

    @rule(i=task)
    def cancel(self, i):
        self._apply(self.e.on_cancel(SPECS[i].task_hash, SUB, self.now))

    @rule(i=task, state=st.sampled_from(FINAL), d=dt)
    def finish(self, i, state, d):
        th = SPECS[i].task_hash
        if th not in self.running:
            return
        self._tick(d)
        n = self.running.pop(th)
        r = TaskResult(state=state, executor=EX, attempt=n, started_at=0.0, finished_at=self.now)
        self._apply(self.e.on_run_finished(th, r, self.now))

    @rule(i=task)
    def ack(self, i):
        self._apply(self.e.on_result_ack(SPECS[i].task_hash, SUB, self.now))

    @rule(cores=st.sampled_from([2, 4, 8]), mem=st.sampled_from([4096, 8192, 16384]))
    def host_changes(self, cores, mem):
        self.totals = capacity(cores=cores, mem=mem)
        self._apply(self.e.update_capacity(self.totals, self.now))

    @rule(d=dt)
    def timer(self, d):
        self._tick(d)
        nd = self.e.next_deadline()
        acts = self.e.on_timer(self.now)
        self._apply(acts)
        if nd is not None and nd <= self.now:
            nd2 = self.e.next_deadline()
            assert nd2 is None or nd2 > self.now, "a deadline stayed in the past"

    @invariant()
    def never_over_capacity(self):
        held = self.e.held_profiles()
        cpu = math.fsum(p.cpu_cores or 0.0 for p in held)
        mem = sum(p.memory_mb or 0 for p in held)
        if not self.e.overcommitted:
            assert cpu <= self.totals.cpu_cores_total + 1e-9
            assert mem <= self.totals.memory_mb_total
            cap = self.e.capacity
            assert math.isclose(
                cap.cpu_cores_available, self.totals.cpu_cores_total - cpu, abs_tol=1e-9
            )
        else:
            assert not self.e.tentative(), "tentative reservations while over-committed"

    @invariant()
    def runs_hold_their_reservation(self):
        firm = [j for j in self.e.jobs().values() if j.state.value in ("reserved", "running")]
        assert {j.task_hash for j in firm} == set(self.running)
        assert self.e.queue_depth == len(self.running)
        assert len(self.e.held_profiles()) == len(firm) + len(self.e.tentative())


TestExecutorMachine = ExecutorMachine.TestCase
TestExecutorMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0.0, 0.3),
    crash=st.booleans(),
    tasks=st.integers(1, 4),
)
def test_network_every_task_ends_exactly_once(seed, loss, crash, tasks):
    rnd = random.Random(seed)
    net = Network(latency=0.02, run_time=rnd.uniform(0.5, 8.0))
    net.add_submitter(
        lease_timeout_s=6.0,
        claim_timeout_s=2.0,
        max_attempts=4,
        retry_backoff_s=(1.0, 2.0, 4.0),
        rng=random.Random(seed),
    )
    names = ["a", "b", "c"]
    for k in names:
        net.add_executor(
            did(k),
            trust=0.9,
            seed=seed % 1000 + ord(k),
            deliberation_s=rnd.choice([0.0, 0.3]),
            heartbeat_interval_s=1.5,
            result_resend_s=1.0,
            cap=capacity(cores=4, mem=8192),
        )
    net.announce_all()
    net.drop = lambda a, s, d: rnd.random() < loss
    hashes = []
    for i in range(tasks):
        profile = None if rnd.random() < 0.3 else ResourceProfile.compute_heavy(2.0, 4096)
        hashes.append(net.submit(spec(f"t{i}", profile=profile)))
        net.run(net.now + rnd.uniform(0.0, 1.0))
    if crash:
        victim = did(rnd.choice(names))
        net.run(net.now + rnd.uniform(0.0, 5.0))
        net.crash(victim)
        net.run(net.now + rnd.uniform(0.0, 10.0))
        net.restart(victim)
    net.drop = lambda a, s, d: False  # the network heals; everything must converge
    net.settle(2000.0)
    for th in hashes:
        rec = net.record(th)
        assert rec.state.is_final, rec
        if rec.state is not TaskState.FAILED:
            assert rec.result is not None and rec.result.executor in rec.claimed
    assert sum(v for k, v in net.metrics.items() if k.startswith("tasks_finished:")) == len(hashes)
    for k in names:
        e = net.executor(did(k))
        assert e.held_profiles() == [], k
        assert e.queue_depth == 0
        # every result this executor produced was acknowledged
        assert all(j.result_acked for j in e.jobs().values() if j.state.value == "finished")
