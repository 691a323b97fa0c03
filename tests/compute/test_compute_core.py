"""ComputeCore: the routing, origin checks, self-delivery, announcements, task locations and
forgetting that used to live in the driver, tested on the pure core."""

from __future__ import annotations

import pytest
from harness import SUB, Network, capacity, did, kinds, result, spec

from icn_node.compute import ComputeCore, ExecutorRegistry, Publish, Rejected, Send, SubmitterCore
from icn_node.compute import core as core_mod
from icn_node.scheduler import PlacementRequest, ResourceProfile
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.wire import (
    ClaimMsg,
    ClaimReplyMsg,
    ExecutorAnnounceMsg,
    PlacementRequestMsg,
    TaskClaimedMsg,
    TaskSubmittedMsg,
)

A, B = did("A"), did("B")


def lone_submitter() -> ComputeCore:
    reg = ExecutorRegistry(10.0)
    return ComputeCore(SUB, submitter=SubmitterCore(SUB, lambda _d: 0.9, reg), registry=reg)


def test_messages_that_speak_for_another_node_are_rejected():
    net = Network()
    net.add_executor(A)
    core = net.core(A)
    s = spec()
    req = PlacementRequest(s.task_hash, s.profile, SUB)
    forged = [
        PlacementRequestMsg(req, 1, 1.0),
        TaskSubmittedMsg(spec(profile=None), 1, 1.0),
        ExecutorAnnounceMsg(ExecutorInfo(did=A, capacity=capacity())),
    ]
    for msg in forged:
        (effect,) = core.receive(B, msg, 0.0)
        assert isinstance(effect, Rejected) and effect.sender == B and effect.tag == msg.TAG
    assert core.registry.get(A) is None and core.executor.tentative() == {}


def test_a_node_without_an_executor_answers_a_claim_with_a_rejection():
    core = lone_submitter()
    s = spec()
    (effect,) = core.receive(A, ClaimMsg(s.task_hash, 1, s), 0.0)
    assert effect == Send(A, ClaimReplyMsg(s.task_hash, 1, False, "not_an_executor"))


def test_a_submitter_with_its_own_executor_places_on_itself_without_the_network():
    net = Network()
    net.add_submitter()
    net.add_executor(SUB)
    net.announce_all()
    th = net.submit(spec())
    # Everything between the node's two halves happened inside the core: nothing was sent.
    assert not [e for _, _, e in net.log if isinstance(e, Send)]
    net.settle()
    rec = net.record(th)
    assert rec.state.value == "completed" and rec.executor == SUB


def test_self_delivery_is_breadth_first_not_reentrant():
    """The request the submitter sends itself is handled after every effect of the submit
    (Persist, StateChanged, the count), not in the middle of them."""
    net = Network()
    net.add_submitter()
    net.add_executor(SUB)
    net.announce_all()
    effects = net.core(SUB).submit(spec(), 0.0)
    k = kinds(effects)
    assert k[:3] == ["Persist", "StateChanged", "Count:tasks_submitted"]
    assert k[3:5] == ["Count:requests_received", "Observe:score"]


def test_executors_announce_on_their_interval_early_on_change_and_when_peers_join():
    net = Network()
    e = net.add_executor(A, cap=capacity(cores=8))
    core = net.core(A)
    assert core.next_deadline() == -float("inf")  # never announced: at once
    (pub,) = [x for x in core.on_timer(0.0) if isinstance(x, Publish)]
    assert isinstance(pub.msg, ExecutorAnnounceMsg) and pub.msg.info.did == A
    assert core.registry.get(A) is not None  # its own announcement reached its registry
    assert core.next_deadline() == 10.0  # the interval (the registry's)
    core.peers_changed(1, 2.0)  # a peer joined: announce again, a second after the last
    assert core.next_deadline() == core_mod.MIN_ANNOUNCE_GAP_S
    core.on_timer(2.0)
    assert core.next_deadline() == 12.0
    # Most of the host taken (by others): an early announcement, at most one per half interval.
    busy = capacity(cores=8)
    busy.reserve(ResourceProfile.compute_heavy(7.0, 12_000))
    e.update_capacity(busy, 3.0)
    assert e.significant_change()
    assert core.next_deadline() == 2.0 + 5.0


def test_the_announce_interval_grows_with_the_cooperative_and_receivers_honour_it():
    net = Network()
    net.add_executor(A, cap=capacity(cores=8))
    core = net.core(A)
    core.on_timer(0.0)  # its first announcement, into its own registry too
    assert core.announce_interval() == 10.0  # 1 executor known: the configured interval
    # 999 others known: at 10 s they would make 100 announcements/s; the budget is 5/s.
    for i in range(999):
        core.registry.announce(ExecutorInfo(did=did(f"X{i}"), capacity=capacity()), 0.0)
    assert core.announce_interval() == pytest.approx(1000 / 5)  # 999 and its own
    assert core.next_deadline() == pytest.approx(200.0)
    (pub,) = [x for x in core.on_timer(200.0) if isinstance(x, Publish)]
    assert pub.msg.info.interval_s == pytest.approx(200.0)
    assert core.next_deadline() == pytest.approx(400.0)
    # A receiver keeps that entry alive for three of *its* intervals, not three of its own.
    reg = ExecutorRegistry(10.0)
    reg.announce(pub.msg.info, 100.0)
    reg.announce(ExecutorInfo(did=B, capacity=capacity()), 100.0)
    assert {i.did for i in reg.live(100.0 + 31.0)} == {A}
    assert reg.next_expiry() == 130.0
    assert reg.expire(131.0) == [B]
    assert reg.next_expiry() == 700.0
    assert reg.expire(701.0) == [A]


def test_a_small_cooperative_announces_as_before():
    net = Network()
    net.add_executor(A)
    (pub,) = [x for x in net.core(A).on_timer(0.0) if isinstance(x, Publish)]
    assert pub.msg.info.interval_s is None  # the document is unchanged: no interval_s field
    assert "interval_s" not in pub.msg.info.to_dict()


def test_task_locations_are_remembered_and_bounded(monkeypatch):
    monkeypatch.setattr(core_mod, "MAX_TASK_LOCATIONS", 3)
    core = lone_submitter()
    for i in range(5):
        core.receive(A, TaskClaimedMsg(bytes([i]) * 32, B, 1), 0.0)
    assert list(core.task_locations) == [bytes([i]) * 32 for i in (2, 3, 4)]
    assert set(core.task_locations.values()) == {B}


def test_a_finished_task_is_forgotten_by_the_core_and_kept_in_the_store():
    net = Network()
    net.add_submitter()
    net.add_executor(A)
    net.announce_all()
    th = net.submit(spec())
    net.settle()
    assert net.submitter.record(th) is None
    assert net.record(th).state.value == "completed"
    # cancelling a task that ended is a no-op, not an error
    assert kinds(net.core(SUB).cancel(th, net.now)) == ["Ignored"]


def test_results_from_a_node_for_a_task_it_never_ran_are_acknowledged_and_ignored():
    core = lone_submitter()
    from icn_node.wire import TaskResultMsg

    effects = core.receive(A, TaskResultMsg(bytes(32), 1, result(A)), 0.0)
    assert kinds(effects) == ["Send:result_ack", "Ignored"]


@pytest.mark.parametrize("executor", [False, True])
def test_from_config_builds_what_the_config_says(executor):
    from icn_node.config import load_config

    cfg = load_config(env={}, overrides={"compute": {"executor": executor}})
    import random

    core = ComputeCore.from_config(
        SUB, lambda _d: 0.5, cfg.compute, capacity=capacity(), rng=random.Random(1)
    )
    assert (core.executor is not None) is executor
    assert core.registry.interval_s == cfg.compute.announce_interval_s


def test_the_locality_context_reads_the_network_map():
    """RTT and bandwidth come from the providers the driver passes (the network map): with
    PreferHighBandwidth the executor scores its measured bandwidth to the submitter."""
    from icn_node.compute import ExecutorCore
    from icn_node.scheduler import DefaultPlacementPolicy, PreferHighBandwidth

    def executor_core(mbps):
        reg = ExecutorRegistry(10.0)
        ex = ExecutorCore(A, capacity(), DefaultPlacementPolicy(), lambda _d: 0.9)
        return ComputeCore(
            A,
            submitter=SubmitterCore(A, lambda _d: 0.9, reg),
            registry=reg,
            executor=ex,
            rtt_ms=lambda: {SUB: 4.0},
            bandwidth_mbps=lambda: {SUB: mbps} if mbps else {},
        )

    s = spec(hints=(PreferHighBandwidth(100.0),))
    req = PlacementRequest(s.task_hash, s.profile, SUB, s.hints)
    scores = {}
    for mbps in (None, 100.0, 200.0):
        (offer,) = [
            e.msg.offer
            for e in executor_core(mbps).receive(SUB, PlacementRequestMsg(req, 1, 1.0), 0.0)
            if isinstance(e, Send) and hasattr(e.msg, "offer")
        ]
        scores[mbps] = offer.components.network
    assert scores == {None: 0.0, 100.0: 0.5, 200.0: 1.0}


def test_a_member_flooding_requests_is_throttled_and_others_are_not():
    net = Network()
    e = net.add_executor(A)
    core = net.core(A)
    flooder, honest = did("Flood"), SUB
    accepted = 0
    for k in range(5000):  # 5,000 requests within one second from one member
        s = spec(f"f{k}", submitter=flooder)
        req = PlacementRequest(s.task_hash, s.profile, flooder)
        effects = core.receive(flooder, PlacementRequestMsg(req, 1, 1.0), k / 5000)
        accepted += not any(type(x).__name__ == "Count" and x.label == "request" for x in effects)
    # 300/s with a burst of 600: about 900 within the second, the rest dropped.
    assert 850 <= accepted <= 950
    s = spec("honest")
    req = PlacementRequest(s.task_hash, s.profile, honest)
    kinds_ = [type(x).__name__ for x in core.receive(honest, PlacementRequestMsg(req, 1, 1.0), 1.0)]
    assert "Send" in kinds_  # the honest submitter's request is still answered
    # ... and holds a reservation, though the flooder's unclaimed offers had filled the host
    assert s.task_hash in e.tentative()


def test_limited_log_shows_a_few_lines_then_a_count():
    from icn_node.logs import LimitedLog

    lines = []

    class Sink:
        def warning(self, event, **kw):
            lines.append((event, kw))

    t = [0.0]
    log = LimitedLog(Sink(), lambda: t[0], lines=3, window_s=10.0)
    for _ in range(1000):
        log.warning("dropped", reason="garbage")
    assert len(lines) == 3
    t[0] = 10.0
    log.warning("dropped", reason="garbage")
    assert len(lines) == 4 and lines[-1][1]["suppressed"] == 997
