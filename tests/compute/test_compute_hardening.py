"""Members cannot lie their way to work, overrunning runs are re-placed, a lost link is acted
on within a grace: the submitter's checks, on real ComputeCores in the harness."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from harness import SUB, Network, capacity, did, spec

from icn_node.compute.reputation import Reputation
from icn_node.scheduler import DefaultPlacementPolicy, ResourceProfile
from icn_node.scheduler.policy import PlacementOffer, ScoreComponents
from icn_node.scheduler.tasks import TaskState
from icn_node.wire import PlacementOfferMsg

A, B, C = did("a"), did("b"), did("c")


class InflatingPolicy(DefaultPlacementPolicy):
    """A lying executor: scores honestly, then claims the best figure for every component it
    controls (the seed's "every component at 1.0, cost 0")."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.components = dict(capacity=1.0, queue=1.0, locality=1.0, network=1.0, jitter=1.0)

    region_lie = False

    def score(self, request, node, trust, context, now):
        if self.region_lie:  # offer wherever the task must run
            context = dataclasses.replace(context, region="us")
        res = super().score(request, node, trust, context, now)
        if not isinstance(res, PlacementOffer):
            return res
        c = dataclasses.replace(res.components, **self.components)
        return dataclasses.replace(res, components=c, score=1.0, cost=0)


def network(liar_components=None, **sub_kw) -> Network:
    net = Network(latency=0.02)
    net.add_submitter(**sub_kw)
    for d in (A, B, C):
        net.add_executor(d, trust=0.9, seed=ord(d[-1]))
    if liar_components is not None:
        pol = InflatingPolicy()
        pol.components = liar_components
        net.executor(C).policy = pol
    net.announce_all()
    return net


@pytest.mark.parametrize(
    "lie",
    [
        dict(capacity=1.0, queue=1.0, locality=1.0, network=1.0, jitter=1.0),
        dict(locality=1.0),  # no hint and no data: locality is neutral for everyone
        dict(jitter=1.0),  # not a draw in [0, 1)
    ],
    ids=["everything", "locality", "jitter"],
)
def test_a_liar_wins_nothing_and_loses_trust(lie):
    net = network(lie)
    placed = []
    for k in range(12):
        th = net.submit(spec(f"t{k}"))
        net.settle(60)
        rec = net.record(th)
        assert rec.state is TaskState.COMPLETED
        placed.append(rec.executor)
    assert C not in placed  # refused each time, never won
    assert net.metrics["executor_penalties:lie"] >= 1
    sub = net.submitter
    assert sub.effective_trust(C, net.now) < 0.9 * 0.5
    assert sub.effective_trust(A, net.now) == pytest.approx(0.9)


def test_claims_are_checked_against_the_executors_announcement():
    """C announces the region eu; a task requires us: C's offer (a liar ignores the hint) is
    refused for contradicting its own announcement."""
    from icn_node.scheduler import RequireRegion

    net = Network(latency=0.02)
    net.add_submitter()
    for d, region in ((A, "us"), (B, "us"), (C, "eu")):
        net.add_executor(d, trust=0.9, seed=ord(d[-1]))
        net.core(d).region = region
    net.executor(C).policy = InflatingPolicy()
    net.executor(C).policy.components = dict(jitter=0.1)  # a plausible figure: only region lies
    net.executor(C).policy.region_lie = True
    net.announce_all()
    th = net.submit(spec(hints=(RequireRegion("us"),)))
    net.settle(60)
    assert net.record(th).executor in (A, B)
    assert net.metrics["executor_penalties:lie"] == 1
    (rejected,) = [e for _, s, e in net.log if type(e).__name__ == "Rejected" and e.sender == C]
    assert "announced region 'eu' is not the required ['us']" in rejected.reason


def _busy():
    cap = capacity(cores=8, mem=16384)
    cap.reserve(ResourceProfile.compute_heavy(7.5, 15_000))
    return cap


def test_honest_offers_are_never_refused():
    net = network()
    for k in range(10):
        th = net.submit(spec(f"h{k}", profile=ResourceProfile.compute_heavy(1.0, 1024)))
        net.settle(60)
        assert net.record(th).state is TaskState.COMPLETED
    assert net.metrics["executor_penalties:lie"] == 0
    assert len(net.sent(PlacementOfferMsg)) == 30


def test_a_run_that_overruns_its_deadline_is_replaced_and_penalised():
    net = Network(run_time=2.0)
    net.add_submitter(lease_timeout_s=10.0)
    for d in (A, B):
        net.add_executor(d, trust=0.9, heartbeat_interval_s=1.0)
    net.run_times[A] = None  # A accepts, heartbeats and never finishes
    net.executor(B).update_capacity(_busy(), 0.0)  # so A, with room, wins first
    net.announce_all()
    th = net.submit(spec(timeout_s=5.0))  # --duration 5: deadline 5 × 1.5 + 10 = 17.5 s
    net.run(10.0)
    assert net.record(th).executor == A and net.record(th).state is TaskState.RUNNING
    net.executor(B).update_capacity(capacity(), net.now)
    net.announce_all()
    net.settle(120)
    rec = net.record(th)
    assert rec.state is TaskState.COMPLETED and rec.executor == B and rec.excluded == (A,)
    assert net.metrics["executor_penalties:overrun"] == 1
    overrun_at = next(t for t, s, e in net.log if getattr(e, "label", "") == "overrun")
    assert 17.0 < overrun_at < 18.5  # held to its deadline, not left running


def test_a_lost_link_replaces_the_task_after_the_grace_not_the_lease():
    net = Network(run_time=None)
    net.add_submitter(lease_timeout_s=60.0, link_grace_s=3.0)
    for d in (A, B):
        net.add_executor(d, trust=0.9)
    net.announce_all()
    th = net.submit(spec())
    net.run(1.0)
    first = net.record(th).executor
    net.crash(first)
    net.link(SUB, first, up=False)
    down_at = net.now
    net.run(down_at + 2.9)
    assert net.record(th).executor == first  # within the grace
    net.run(down_at + 3.5)
    rec = net.record(th)
    assert rec.excluded == (first,) and rec.attempt == 2  # re-placed at 3 s, not at 60 s
    assert net.metrics["executor_penalties:lost"] == 1


def test_a_link_back_within_the_grace_keeps_the_task():
    net = Network(run_time=20.0)
    net.add_submitter(lease_timeout_s=60.0, link_grace_s=3.0)
    for d in (A, B):
        net.add_executor(d, trust=0.9)
    net.announce_all()
    th = net.submit(spec())
    net.run(1.0)
    first = net.record(th).executor
    net.link(SUB, first, up=False)
    net.run(2.5)
    net.link(SUB, first, up=True)
    net.settle(60)
    rec = net.record(th)
    assert rec.state is TaskState.COMPLETED and rec.executor == first and rec.attempt == 1


def test_penalties_decay():
    r = Reputation(half_life_s=600.0)
    r.penalize(A, "lie", 0.0)
    assert r.effective(A, 0.8, 0.0) == pytest.approx(0.4)
    assert r.effective(A, 0.8, 600.0) == pytest.approx(0.6)
    assert r.effective(A, 0.8, 6000.0) == pytest.approx(0.8, abs=0.001)
    assert r.penalised(6000.0) == {}


def test_the_score_components_of_an_honest_offer_are_within_the_checks():
    """Any offer the honest policy makes passes offer_lie against its own announcement."""
    from icn_node.compute.reputation import offer_lie
    from icn_node.scheduler import LocalityContext, NodeState, PlacementRequest, PreferLowLatency
    from icn_node.scheduler.executors import ExecutorInfo

    pol = DefaultPlacementPolicy(jitter=__import__("random").Random(3))
    for k in range(50):
        s = spec(f"x{k}", hints=(PreferLowLatency(50.0),) if k % 2 else ())
        req = PlacementRequest(s.task_hash, s.profile, SUB, s.hints)
        node = NodeState(A, capacity(), queue_depth=k % 12, load=(k % 10) / 10)
        offer = pol.score(req, node, 0.9, LocalityContext.empty(), 0.0)
        assert isinstance(offer, PlacementOffer)
        info = ExecutorInfo(did=A, capacity=capacity(), queue_depth=k % 12)
        assert offer_lie(offer, req, info) is None, offer.components
        assert isinstance(offer.components, ScoreComponents)


# -- verifiable results: replicas ---------------------------------------------------------------


def replicated(n: int, name: str = "r", **kw):
    """``n`` replicas of one task, as compute.submit builds them."""
    group = bytes([n]) * 16
    return [spec(f"{name}-{k}", group=group, replicas=n, **kw) for k in range(n)]


def replica_network(n_exec=4, bad: dict[str, int] | None = None, seed: int = 0) -> Network:
    net = Network(latency=0.02)
    net.add_submitter()
    for k in range(n_exec):
        net.add_executor(did(f"x{k}"), trust=0.9, seed=seed * 10 + k)
    net.fuel_by = bad or {}
    net.announce_all()
    return net


def test_replicas_run_on_distinct_executors_and_agree():
    net = replica_network()
    specs = replicated(3)
    for s in specs:
        net.submit(s)
    net.settle()
    recs = [net.record(s.task_hash) for s in specs]
    assert all(r.state is TaskState.COMPLETED for r in recs)
    assert len({r.executor for r in recs}) == 3  # three different executors
    assert net.metrics["replicas:agreed"] == 1 and net.metrics["executor_penalties:verify"] == 0


def test_a_wrong_result_is_outvoted_and_penalised():
    net = replica_network(4, bad={did("x0"): 999})  # x0 reports a different fuel figure
    specs = replicated(2)
    for s in specs:
        net.submit(s)
    net.settle()
    if net.metrics["replicas:extra"]:
        # x0 ran one of the two: they disagreed, a third replica settled it by majority.
        assert net.metrics["replicas:majority"] == 1
        assert net.metrics["executor_penalties:verify"] == 1
        assert net.submitter.effective_trust(did("x0"), net.now) < 0.9 * 0.6
    else:
        assert net.metrics["replicas:agreed"] == 1  # x0 was not among them


def test_replicas_settle_by_majority_whenever_the_liar_took_part():
    outcomes = Counter()
    for seed in range(8):
        net = replica_network(4, bad={did("x0"): 999}, seed=seed)
        for s in replicated(2, name=f"s{seed}"):
            net.submit(s)
        net.settle()
        outcomes.update(k for k in ("replicas:agreed", "replicas:majority") if net.metrics[k])
    assert outcomes["replicas:majority"] >= 1  # the liar took part at least once ...
    assert sum(outcomes.values()) == 8  # ... and every group settled on the honest result


def test_replicas_need_a_group():
    with pytest.raises(Exception, match="replicas need a group"):
        spec(replicas=2)


def test_the_verdict_rules():
    from icn_node.compute.records import TaskRecord
    from icn_node.compute.replicas import verdict
    from icn_node.scheduler.tasks import TaskResult

    def rec(k, fuel, state=TaskState.COMPLETED):
        s = spec(f"v{k}", group=b"g" * 16, replicas=2)
        res = TaskResult(state=state, executor=did(f"e{k}"), fuel_used=fuel, attempt=1)
        return TaskRecord(spec=s, state=state, result=res, executor=did(f"e{k}"))

    assert verdict(2, [rec(0, 5), rec(1, 5)], True).kind == "agreed"
    assert verdict(2, [rec(0, 5), rec(1, 6)], True).kind == "more"
    v = verdict(2, [rec(0, 5), rec(1, 6), rec(2, 5)], True)
    assert v.kind == "majority" and v.minority == (did("e1"),) and v.agree == 2
    assert verdict(2, [rec(0, 5), rec(1, 6), rec(2, 7), rec(3, 8)], False).kind == "no_agreement"
    failed = rec(1, 0, TaskState.FAILED)
    assert verdict(2, [rec(0, 5), failed], True).kind == "more"  # missing, not disagreeing


def test_lost_tasks_rank_an_executor_down_but_never_shut_it_out():
    r = Reputation()
    for k in range(20):
        r.penalize(A, "lost", float(k))
    assert r.effective(A, 0.9, 20.0) < 0.1  # ranked last
    assert r.honest(A, 0.9, 20.0) == 0.9  # still admissible
    r.penalize(B, "lie", 0.0)
    r.penalize(B, "lie", 0.0)
    assert r.honest(B, 0.9, 0.0) == 0.0  # a repeat liar is shut out
