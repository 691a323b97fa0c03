"""SubmitterCore, one transition at a time, on numbers for time."""

from __future__ import annotations

import random

import pytest
from builders import (
    SUB,
    capacity,
    counted,
    did,
    fanouts,
    kinds,
    observed,
    of,
    one_fanout,
    one_sent,
    result,
    sent,
    spec,
)

from icn_node.compute.effects import (
    FUEL_USED,
    OFFERS_RECEIVED,
    PLACEMENT_DURATION,
    TASKS_FINISHED,
    TASKS_SUBMITTED,
    Count,
    Ignored,
    Observe,
    Persist,
    Publish,
    Send,
    StateChanged,
)
from icn_node.compute.records import TaskRecord
from icn_node.compute.registry import ExecutorRegistry
from icn_node.compute.submitter import SubmitterCore
from icn_node.errors import ConfigError, LocalProtocolError
from icn_node.scheduler import (
    DefaultPlacementPolicy,
    LocalityContext,
    NodeState,
    PlacementOffer,
    PlacementRequest,
    ResourceProfile,
)
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.tasks import TaskState
from icn_node.wire import (
    ClaimMsg,
    GrantMsg,
    Message,
    PlacementRequestMsg,
    RefuseMsg,
    ResultAckMsg,
    TaskCancelMsg,
    TaskClaimedMsg,
    TaskSubmittedMsg,
)

A, B, C = did("A"), did("B"), did("C")
TRUST = {A: 0.9, B: 0.8, C: 0.7}
SPEC = spec()
TH = SPEC.task_hash
S = TaskState


def core(execs=(A, B), trust=None, **kw) -> SubmitterCore:
    reg = ExecutorRegistry(10.0)
    for d in execs:
        reg.announce(ExecutorInfo(did=d, capacity=capacity()), 0.0)
    table = dict(trust or TRUST)
    kw.setdefault("retry_backoff_s", (1.0, 2.0))
    return SubmitterCore(SUB, lambda x: table.get(x, 0.0), reg, **kw)


def offer(ex: str, s=SPEC, *, trust_claim: float = 0.5, now: float = 0.1) -> PlacementOffer:
    req = PlacementRequest(s.task_hash, s.profile or ResourceProfile.minimal(), s.submitter)
    o = DefaultPlacementPolicy().score(
        req, NodeState(ex, capacity()), trust_claim, LocalityContext.empty(), now
    )
    assert isinstance(o, PlacementOffer)
    return o


def negotiating(c: SubmitterCore, s=SPEC, now=0.0):
    return c.submit(s, now)


def claiming(c: SubmitterCore, *execs, now=0.5):
    negotiating(c)
    acts = []
    for e in execs:
        acts += c.on_offer(offer(e), e, 1, now)
    acts += c.on_timer(1.0)
    return acts


def running(c: SubmitterCore, ex=A):
    claiming(c, ex)
    acts = c.on_claim_reply(TH, ex, 1, True, "", 1.1)
    c.on_timer(1.1)  # the other asked executor's notice goes out (no request came for it)
    return acts


def state(c: SubmitterCore, th=TH) -> TaskState:
    return c.record(th).state


# -- submission ------------------------------------------------------------------------------


def test_submit_persists_before_publishing():
    c = core()
    acts = c.submit(SPEC, 5.0)
    # A and B are expected: the request goes to each of them directly, in DID order.
    assert kinds(acts) == [
        "Persist",
        "StateChanged",
        "Send:placement_request",
        "Send:placement_request",
        "Count:tasks_submitted",
    ]
    rec = acts[0].record
    assert rec.state is S.NEGOTIATING and rec.attempt == 1 and rec.submitted_at == 5.0
    ch = acts[1]
    assert ch.old is None and ch.new is S.NEGOTIATING and ch.record == rec
    assert [e.to for e in sent(acts, PlacementRequestMsg)] == [A, B]
    pub = one_fanout(acts, PlacementRequestMsg).msg
    assert pub.attempt == 1 and pub.window_s == 1.0 and pub.excluded == ()
    assert pub.request.task_hash == TH and pub.request.profile == SPEC.profile
    assert pub.request.submitter == SUB and pub.request.requested_at == 5.0
    assert acts[4] == Count(TASKS_SUBMITTED, "placement")
    assert c.expected(TH) == {A, B}
    assert c.next_deadline() == 6.0


def test_submit_legacy_publishes_task_submitted():
    c = core()
    s = spec("legacy", profile=None)
    acts = c.submit(s, 0.0)
    pub = one_sent(acts, TaskSubmittedMsg)
    assert isinstance(pub, Publish) and pub.msg.spec == s
    assert acts[-1] == Count(TASKS_SUBMITTED, "legacy")


def test_submit_misuse():
    c = core()
    c.submit(SPEC, 0.0)
    with pytest.raises(LocalProtocolError, match="already"):
        c.submit(SPEC, 0.0)
    with pytest.raises(LocalProtocolError, match="submitter"):
        c.submit(spec("x", submitter=A), 0.0)


def test_expected_executors_are_live_trusted_and_could_fit():
    reg = ExecutorRegistry(1.0)
    reg.announce(ExecutorInfo(did=A, capacity=capacity()), 0.0)
    reg.announce(ExecutorInfo(did=B, capacity=capacity(cores=1)), 0.0)  # cannot fit
    reg.announce(ExecutorInfo(did=C, capacity=capacity()), 0.0)  # untrusted
    reg.announce(ExecutorInfo(did=did("Old"), capacity=capacity()), -10.0)  # expired
    c = SubmitterCore(SUB, lambda x: 0.1 if x == C else 0.9, reg)
    c.submit(SPEC, 2.0)
    assert c.expected(TH) == {A}
    assert c.expected(spec("other").task_hash) == frozenset()


# -- offers and the window -------------------------------------------------------------------


def test_window_closes_early_when_every_expected_executor_answered():
    c = core()
    negotiating(c)
    assert kinds(c.on_offer(offer(A), A, 1, 0.3)) == ["Count:offers_received"]
    acts = c.on_decline(TH, B, 1, "no_capacity", 0.4)
    assert state(c) is S.CLAIMING
    # B declined, so it holds nothing for the task and is told nothing.
    assert kinds(acts) == ["Persist", "StateChanged", "Send:claim"]
    assert one_sent(acts, ClaimMsg).to == A
    assert c.record(TH).claimed_at == 0.4
    assert not sent(c.on_timer(1.0), TaskClaimedMsg)


def test_window_closes_at_the_deadline_with_whatever_came():
    c = core(execs=(A, B, C))
    negotiating(c)
    c.on_offer(offer(B), B, 1, 0.3)
    assert c.on_timer(0.99) == []
    assert state(c) is S.NEGOTIATING
    acts = c.on_timer(1.0)
    assert one_sent(acts, ClaimMsg).to == B and state(c) is S.CLAIMING


def test_no_early_close_when_nobody_is_expected():
    c = core(execs=())
    negotiating(c)
    c.on_offer(offer(A), A, 1, 0.1)  # unexpected executors may still offer
    assert state(c) is S.NEGOTIATING
    c.on_timer(1.0)
    assert c.record(TH).executor == A


def test_ranking_uses_the_submitters_trust_not_the_executors_claim():
    c = core(trust={A: 0.4, B: 0.95})
    negotiating(c)
    c.on_offer(offer(A, trust_claim=1.0), A, 1, 0.1)
    c.on_offer(offer(B, trust_claim=0.3), B, 1, 0.1)
    rec = c.record(TH)
    assert rec.executor == B
    assert [o.executor for o in rec.offers] == [B, A]
    assert rec.offers[0].score > rec.offers[1].score


def test_untrusted_offers_are_ranked_out():
    c = core(trust={A: 0.1, B: 0.9})
    negotiating(c)
    c.on_offer(offer(A), A, 1, 0.1)
    c.on_timer(1.0)
    assert state(c) is S.PENDING  # A's offer was rejected: no executor this round


def test_offers_that_do_not_belong_are_ignored():
    c = core(execs=(A, B, C))
    negotiating(c)
    cases = [
        (offer(A), B, 1),  # names another executor
        (offer(A), A, 2),  # another round
        (offer(A, spec("unknown")), A, 1),  # unknown task
    ]
    for o, sender, attempt in cases:
        assert kinds(c.on_offer(o, sender, attempt, 0.2)) == ["Ignored"]
    c.on_offer(offer(A), A, 1, 0.2)
    assert kinds(c.on_offer(offer(A), A, 1, 0.3)) == ["Ignored"]  # duplicate
    assert kinds(c.on_decline(TH, A, 1, "x", 0.3)) == ["Ignored"]  # already answered
    c.on_decline(TH, B, 1, "x", 0.3)
    assert kinds(c.on_decline(TH, B, 1, "x", 0.3)) == ["Ignored"]
    assert kinds(c.on_decline(TH, C, 3, "x", 0.3)) == ["Ignored"]
    c.on_timer(1.0)
    assert kinds(c.on_offer(offer(C), C, 1, 1.1)) == ["Ignored"]  # late
    legacy = spec("legacy", profile=None)
    c.submit(legacy, 0.0)
    assert kinds(c.on_offer(offer(A, legacy), A, 1, 0.1)) == ["Ignored"]
    assert not counted(c.on_offer(offer(C), C, 1, 1.2), OFFERS_RECEIVED)


# -- claims ----------------------------------------------------------------------------------


def test_accepted_claim_runs_with_a_lease_and_observes_the_duration():
    c = core(lease_timeout_s=20.0)
    claiming(c, A)
    acts = c.on_claim_reply(TH, A, 1, True, "", 1.25)
    assert kinds(acts) == ["Persist", "StateChanged", "Observe:placement_duration"]
    assert observed(acts, PLACEMENT_DURATION) == [Observe(PLACEMENT_DURATION, 1.25)]
    rec = c.record(TH)
    assert rec.state is S.RUNNING and rec.started_at == 1.25 and rec.executor == A
    # First the loser's notice (no request came to carry it), then the lease.
    assert c.next_deadline() == pytest.approx(1.1)
    assert one_fanout(c.on_timer(1.1), TaskClaimedMsg).to == {B}
    assert c.next_deadline() == 21.25


def test_rejected_claim_falls_to_the_next_offer_then_to_a_new_round():
    c = core()
    claiming(c, A, B)
    assert c.record(TH).executor == A
    acts = c.on_claim_reply(TH, A, 1, False, "no_capacity", 1.1)
    assert one_sent(acts, ClaimMsg).to == B
    # A, which may still hold its offer, is told B won (on its own: no request came); B is
    # not told A won (that notice, not sent yet, is dropped: B has its claim).
    notices = sent(c.on_timer(1.1 + 0.1), TaskClaimedMsg)
    assert [(n.to, n.msg.winner) for n in notices] == [(A, B)]
    assert c.record(TH).claimed == (A, B) and c.record(TH).excluded == ()
    acts = c.on_claim_reply(TH, B, 1, False, "no_capacity", 1.2)
    assert state(c) is S.PENDING and c.record(TH).retries == 1
    assert c.next_deadline() == pytest.approx(2.2)
    acts = c.on_timer(2.2)
    assert one_fanout(acts, PlacementRequestMsg).msg.attempt == 2 and state(c) is S.NEGOTIATING


def test_claim_replies_that_do_not_belong_are_ignored():
    c = core()
    claiming(c, A, B)
    assert kinds(c.on_claim_reply(TH, B, 1, True, "", 1.1)) == ["Ignored"]
    assert kinds(c.on_claim_reply(TH, A, 2, True, "", 1.1)) == ["Ignored"]
    c.on_claim_reply(TH, A, 1, True, "", 1.1)
    assert kinds(c.on_claim_reply(TH, A, 1, True, "", 1.2)) == ["Ignored"]  # duplicate


def test_claim_timeout_cancels_excludes_and_moves_on():
    c = core(claim_timeout_s=3.0)
    claiming(c, A, B)  # every expected executor offered: claimed at 0.5
    assert c.next_deadline() == 3.5
    acts = c.on_timer(3.5)
    # A silent claimed executor is lost (not penalised: a slow reply may be the network).
    assert kinds(acts)[:1] == ["Send:task_cancel"] and acts[0].to == A
    assert c.effective_trust(A, 3.5) == c.trust(A)
    assert one_sent(acts, ClaimMsg).to == B and c.record(TH).excluded == (A,)


def test_no_offers_retry_with_backoff_then_fail():
    c = core(execs=(), retry_backoff_s=(1.0, 2.0))
    negotiating(c)
    c.on_timer(1.0)
    assert state(c) is S.PENDING and c.next_deadline() == 2.0
    assert "retrying" in c.record(TH).reason
    c.on_timer(2.0)
    assert c.record(TH).attempt == 2
    c.on_timer(3.0)
    assert c.next_deadline() == 5.0
    c.on_timer(5.0)
    acts = c.on_timer(6.0)
    rec = c.record(TH)
    assert rec.state is S.FAILED and rec.reason == "no_executor" and rec.attempt == 3
    assert counted(acts, TASKS_FINISHED) == [Count(TASKS_FINISHED, S.FAILED.value)]
    assert c.next_deadline() is None


def test_backoff_jitter_comes_from_the_injected_rng():
    c = core(execs=(), rng=random.Random(7), retry_backoff_s=(10.0,))
    negotiating(c)
    c.on_timer(1.0)
    d = c.next_deadline()
    assert 11.0 <= d <= 12.0
    c2 = core(execs=(), rng=random.Random(7), retry_backoff_s=(10.0,))
    negotiating(c2)
    c2.on_timer(1.0)
    assert c2.next_deadline() == d


# -- running: heartbeats, leases, abandon ------------------------------------------------------


def test_heartbeat_extends_only_the_current_lease():
    c = core(lease_timeout_s=10.0)
    running(c)
    assert c.on_heartbeat(TH, A, 1, 5.0) == []
    assert c.next_deadline() == 15.0
    assert kinds(c.on_heartbeat(TH, B, 1, 6.0)) == ["Ignored"]  # never claimed
    assert c.next_deadline() == 15.0
    assert kinds(c.on_heartbeat(spec("x").task_hash, A, 1, 6.0)) == ["Ignored"]


def test_heartbeat_from_an_executor_no_longer_used_is_answered_with_cancel():
    c = core()
    claiming(c, A, B)
    c.on_claim_reply(TH, A, 1, False, "no_capacity", 1.1)
    assert c.on_heartbeat(TH, A, 1, 2.0) == [Send(A, TaskCancelMsg(TH, 1))]


def test_heartbeat_while_claiming_stands_for_the_lost_claim_reply():
    c = core()
    claiming(c, A)
    acts = c.on_heartbeat(TH, A, 1, 2.0)
    assert state(c) is S.RUNNING and observed(acts, PLACEMENT_DURATION)


def test_lease_lapse_replaces_excluding_the_lost_executor():
    c = core(execs=(A, B), lease_timeout_s=10.0, max_attempts=2)
    running(c)
    acts = c.on_timer(11.1)
    assert acts[0] == Count("executor_penalties", "lost")
    assert acts[1] == Send(A, TaskCancelMsg(TH, 1))
    req = one_fanout(acts, PlacementRequestMsg)
    assert req.msg.attempt == 2 and req.msg.excluded == (A,) and req.to == {B}
    assert c.expected(TH) == {B}
    rec = c.record(TH)
    assert rec.state is S.NEGOTIATING and rec.excluded == (A,) and rec.executor is None
    # An offer from the excluded executor is not taken.
    assert kinds(c.on_offer(offer(A), A, 2, 11.2)) == ["Ignored"]
    c.on_offer(offer(B), B, 2, 11.2)
    c.on_claim_reply(TH, B, 2, True, "", 11.3)
    acts = c.on_timer(21.3)
    rec = c.record(TH)
    assert rec.state is S.FAILED and rec.reason == "max_attempts" and rec.excluded == (A, B)
    assert not sent(acts, PlacementRequestMsg)


def test_abandon_replaces_at_once():
    c = core()
    running(c)
    assert kinds(c.on_abandon(TH, B, 1, "x", 2.0)) == ["Ignored"]
    assert kinds(c.on_abandon(TH, A, 2, "x", 2.0)) == ["Ignored"]
    acts = c.on_abandon(TH, A, 1, "executor restarted", 2.0)
    assert one_fanout(acts, PlacementRequestMsg).msg.excluded == (A,)


# -- results ---------------------------------------------------------------------------------


def test_result_from_the_current_executor_is_recorded_once_and_always_acked():
    c = core()
    running(c)
    r = result(A)
    acts = c.on_result(r, A, TH, 5.0)
    assert kinds(acts) == [
        "Persist",
        "StateChanged",
        "Count:tasks_finished",
        "Count:fuel_used",
        "Send:result_ack",
    ]
    assert acts[-1] == Send(A, ResultAckMsg(TH, 1))
    rec = c.record(TH)
    assert rec.state is S.COMPLETED and rec.result == r and rec.finished_at == 5.0
    assert counted(acts, TASKS_FINISHED) == [Count(TASKS_FINISHED, S.COMPLETED.value)]
    assert counted(acts, FUEL_USED) == [Count(FUEL_USED, n=42)]
    again = c.on_result(r, A, TH, 6.0)
    assert kinds(again) == ["Send:result_ack", "Ignored"]
    assert c.next_deadline() is None


@pytest.mark.parametrize("final", [S.FAILED, S.FUEL_EXHAUSTED, S.TIMED_OUT])
def test_every_final_outcome_of_the_current_executor_is_recorded(final):
    c = core()
    running(c)
    c.on_result(result(A, state=final), A, TH, 5.0)
    assert state(c) is final


def test_results_that_do_not_belong_are_not_recorded():
    c = core()
    running(c)
    assert kinds(c.on_result(result(B), A, TH, 5.0)) == ["Ignored"]  # names another
    assert kinds(c.on_result(result(B), B, TH, 5.0)) == ["Ignored"]  # never claimed: no ack
    acts = c.on_result(result(A), A, spec("unknown").task_hash, 5.0)
    assert kinds(acts) == ["Send:result_ack", "Ignored"]  # so the executor stops re-sending
    assert state(c) is S.RUNNING


def test_unrequested_cancelled_result_means_the_executor_is_lost():
    c = core()
    running(c)
    acts = c.on_result(result(A, state=S.CANCELLED), A, TH, 5.0)
    assert sent(acts, ResultAckMsg)
    assert one_fanout(acts, PlacementRequestMsg).msg.excluded == (A,)
    assert state(c) is S.NEGOTIATING


def test_a_completed_result_from_an_earlier_executor_is_not_wasted():
    c = core(lease_timeout_s=10.0)
    running(c)
    c.on_timer(11.1)  # A lost, round 2
    c.on_offer(offer(B), B, 2, 11.2)
    c.on_claim_reply(TH, B, 2, True, "", 11.3)
    # A was slow, not dead: its failure is acked and dropped, its completion is recorded.
    acts = c.on_result(result(A, state=S.FAILED), A, TH, 12.0)
    assert kinds(acts) == ["Send:result_ack", "Ignored"]
    acts = c.on_result(result(A), A, TH, 12.5)
    assert state(c) is S.COMPLETED and c.record(TH).result.executor == A
    assert Send(B, TaskCancelMsg(TH, 2)) in acts  # B's now useless run is stopped
    assert sent(acts, ResultAckMsg)


def test_a_completed_result_while_renegotiating_cancels_the_round():
    c = core(lease_timeout_s=10.0)
    running(c)
    c.on_timer(11.1)
    acts = c.on_result(result(A), A, TH, 12.0)
    assert state(c) is S.COMPLETED and Publish(TaskCancelMsg(TH, 2)) in acts


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_while_negotiating():
    c = core()
    negotiating(c)
    acts = c.cancel(TH, 0.5)
    assert kinds(acts) == ["Persist", "StateChanged", "Count:tasks_finished", "Publish:task_cancel"]
    rec = c.record(TH)
    assert rec.state is S.CANCELLED and rec.reason == "cancelled by user"
    assert c.next_deadline() is None
    assert c.cancel(TH, 0.6) == []
    assert kinds(c.on_offer(offer(A), A, 1, 0.7)) == ["Ignored"]


def test_cancel_while_claiming_tells_the_claimed_executor():
    c = core()
    claiming(c, A)
    acts = c.cancel(TH, 1.1)
    assert Publish(TaskCancelMsg(TH, 1)) in acts and Send(A, TaskCancelMsg(TH, 1)) in acts


def test_cancel_while_pending():
    c = core(execs=())
    negotiating(c)
    c.on_timer(1.0)
    acts = c.cancel(TH, 1.5)
    assert state(c) is S.CANCELLED and not sent(acts, Message)


def test_cancel_while_running_waits_for_the_result():
    c = core(cancel_timeout_s=10.0)
    running(c)
    acts = c.cancel(TH, 2.0)
    assert kinds(acts) == ["Persist", "Send:task_cancel"] and c.record(TH).cancel_requested
    assert state(c) is S.RUNNING and c.next_deadline() == 12.0
    assert c.cancel(TH, 2.5) == []
    c.on_heartbeat(TH, A, 1, 3.0)
    assert c.next_deadline() == 12.0  # heartbeats do not postpone the cancel deadline
    c.on_result(result(A, state=S.CANCELLED), A, TH, 4.0)
    assert state(c) is S.CANCELLED and c.record(TH).reason == "cancelled by user"


def test_cancel_while_running_gives_up_waiting():
    c = core(cancel_timeout_s=10.0)
    running(c)
    c.cancel(TH, 2.0)
    c.on_timer(12.0)
    rec = c.record(TH)
    assert rec.state is S.CANCELLED and "did not confirm" in rec.reason and rec.result is None


def test_cancel_then_abandon_ends_cancelled():
    c = core()
    running(c)
    c.cancel(TH, 2.0)
    c.on_abandon(TH, A, 1, "executor restarted", 3.0)
    assert state(c) is S.CANCELLED


def test_cancel_unknown_task_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="unknown"):
        core().cancel(TH, 0.0)


# -- legacy ----------------------------------------------------------------------------------


LEGACY = spec("legacy", profile=None)
LH = LEGACY.task_hash


def test_legacy_first_claim_request_is_granted_and_the_rest_refused():
    c = core()
    c.submit(LEGACY, 0.0)
    acts = c.on_claim_request(LH, B, 1, 0.1)
    assert kinds(acts) == ["Persist", "StateChanged", "Send:grant", "Publish:task_claimed"]
    assert one_sent(acts, GrantMsg).msg.spec == LEGACY and state(c, LH) is S.CLAIMING
    assert c.on_claim_request(LH, A, 1, 0.11) == [Send(A, RefuseMsg(LH, 1))]
    assert c.on_claim_request(LH, B, 1, 0.12) == [Send(B, GrantMsg(LH, 1, LEGACY))]  # duplicate
    assert c.on_claim_request(LH, C, 0, 0.12) == [Send(C, RefuseMsg(LH, 0))]
    c.on_claim_reply(LH, B, 1, True, "", 0.2)
    assert state(c, LH) is S.RUNNING
    assert c.on_claim_request(LH, A, 1, 0.3) == [Send(A, RefuseMsg(LH, 1))]
    assert c.on_claim_request(SPEC.task_hash, A, 1, 0.3) == [Send(A, RefuseMsg(SPEC.task_hash, 1))]


def test_legacy_without_claim_requests_retries():
    c = core()
    c.submit(LEGACY, 0.0)
    c.on_timer(1.0)
    assert state(c, LH) is S.PENDING
    acts = c.on_timer(2.0)
    pub = one_sent(acts, TaskSubmittedMsg)
    assert isinstance(pub, Publish) and pub.msg.attempt == 2


def test_legacy_grant_rejected_starts_a_new_round():
    c = core()
    c.submit(LEGACY, 0.0)
    c.on_claim_request(LH, B, 1, 0.1)
    c.on_claim_reply(LH, B, 1, False, "no_capacity", 0.2)
    assert state(c, LH) is S.PENDING


# -- restore ---------------------------------------------------------------------------------


def rec(state, s=SPEC, **kw) -> TaskRecord:
    return TaskRecord(spec=s, state=state, attempt=kw.pop("attempt", 3), **kw)


def test_restore_each_state():
    c = core(lease_timeout_s=10.0, claim_timeout_s=5.0, cancel_timeout_s=7.0)
    sp = {n: spec(n) for n in ("pending", "neg", "claim", "run", "cancel", "done")}
    sp["lclaim"] = spec("lclaim", profile=None)
    acts = c.restore(
        [
            rec(S.PENDING, sp["pending"], submitted_at=1),
            rec(S.NEGOTIATING, sp["neg"], submitted_at=2),
            rec(S.CLAIMING, sp["claim"], executor=A, claimed=(A,), submitted_at=3),
            rec(S.CLAIMING, sp["lclaim"], executor=A, claimed=(A,), submitted_at=3.5),
            rec(S.RUNNING, sp["run"], executor=B, claimed=(B,), submitted_at=4),
            rec(
                S.RUNNING,
                sp["cancel"],
                executor=B,
                claimed=(B,),
                cancel_requested=True,
                submitted_at=5,
            ),
            rec(
                S.COMPLETED,
                sp["done"],
                executor=B,
                claimed=(B,),
                result=result(B, 3),
                submitted_at=6,
            ),
        ],
        100.0,
    )
    reqs = fanouts(acts, PlacementRequestMsg)
    assert [(r.msg.request.task_hash, r.msg.attempt) for r in reqs] == [
        (sp["pending"].task_hash, 4),
        (sp["neg"].task_hash, 4),
    ]
    assert Send(A, ClaimMsg(sp["claim"].task_hash, 3, sp["claim"])) in acts
    assert one_sent(acts, GrantMsg).msg.task == sp["lclaim"].task_hash
    assert Send(B, TaskCancelMsg(sp["cancel"].task_hash, 3)) in acts
    assert c.record(sp["run"].task_hash).state is S.RUNNING
    assert c.record(sp["done"].task_hash).state is S.COMPLETED
    # running: a fresh lease; the result of the finished task is acked again if re-sent.
    c.on_heartbeat(sp["run"].task_hash, B, 3, 105.0)
    acts = c.on_result(result(B, 3), B, sp["done"].task_hash, 105.0)
    assert kinds(acts) == ["Send:result_ack", "Ignored"]
    with pytest.raises(LocalProtocolError):
        c.restore([], 0.0)


def test_restore_running_task_whose_executor_never_returns_is_replaced():
    c = core(lease_timeout_s=10.0)
    c.restore([rec(S.RUNNING, executor=A, claimed=(A,))], 100.0)
    assert c.next_deadline() == 110.0
    acts = c.on_timer(110.0)
    assert one_fanout(acts, PlacementRequestMsg).msg.attempt == 4
    assert c.record(TH).excluded == (A,)


def test_forget_only_final_tasks():
    c = core()
    negotiating(c)
    with pytest.raises(LocalProtocolError):
        c.forget(TH)
    c.cancel(TH, 1.0)
    c.forget(TH)
    assert c.record(TH) is None and c.records() == []


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="compute.max_attempts"):
        core(max_attempts=0)
    with pytest.raises(ConfigError, match="compute.offer_window_ms"):
        core(offer_window_s=0)


# -- ordering: the record is persisted before anything that depends on it ----------------------


def test_every_message_follows_the_persist_of_the_state_it_announces():
    c = core()
    batches = [
        c.submit(SPEC, 0.0),
        c.on_offer(offer(A), A, 1, 0.1),
        c.on_decline(TH, B, 1, "x", 0.2),
        c.on_claim_reply(TH, A, 1, True, "", 0.3),
        c.on_result(result(A), A, TH, 1.0),
    ]
    for acts in batches:
        idx = [i for i, a in enumerate(acts) if isinstance(a, Persist)]
        msgs = [
            i
            for i, a in enumerate(acts)
            if isinstance(a, Send | Publish) and not isinstance(a.msg, ResultAckMsg)
        ]
        ch = [i for i, a in enumerate(acts) if isinstance(a, StateChanged)]
        if ch:
            assert idx and all(i > idx[0] for i in msgs + ch)
    assert state(c) is S.COMPLETED
    assert not any(isinstance(a, Ignored) for acts in batches for a in acts)


# -- admission control -------------------------------------------------------------------------


def test_a_burst_beyond_max_negotiating_waits_in_order_and_is_admitted_as_slots_free():
    c = core(execs=(A,), max_negotiating=2)
    specs = [spec(f"burst{i}") for i in range(4)]
    acts = []
    for s in specs:
        acts += c.submit(s, 0.0)
    # two requests go out; the other two are persisted as pending, queued, and announced
    assert [p.msg.request.task_hash for p in fanouts(acts, PlacementRequestMsg)] == [
        specs[0].task_hash,
        specs[1].task_hash,
    ]
    queued = [c.record(s.task_hash) for s in specs[2:]]
    assert all(r.state is S.PENDING and r.reason.startswith("queued") for r in queued)
    assert [e.new for e in of(acts, StateChanged)][-2:] == [S.PENDING, S.PENDING]
    # task 0 gets an offer and is claimed: still placing, nobody admitted
    acts = c.on_offer(offer(A, specs[0]), A, 1, 0.1)
    assert sent(acts, PlacementRequestMsg) == []
    assert c.record(specs[0].task_hash).state is S.CLAIMING
    # its claim is accepted: a slot frees and the oldest queued task (2) starts its round
    acts = c.on_claim_reply(specs[0].task_hash, A, 1, True, "", 0.2)
    (req,) = fanouts(acts, PlacementRequestMsg)
    assert req.msg.request.task_hash == specs[2].task_hash and req.msg.attempt == 1
    assert c.record(specs[3].task_hash).state is S.PENDING


def test_a_queued_task_can_be_cancelled_and_is_never_published():
    c = core(execs=(A,), max_negotiating=1)
    first, second = spec("q0"), spec("q1")
    c.submit(first, 0.0)
    c.submit(second, 0.0)
    acts = c.cancel(second.task_hash, 0.1)
    assert c.record(second.task_hash).state is S.CANCELLED
    assert sent(acts, PlacementRequestMsg) == [] and sent(acts, TaskCancelMsg) == []
    # the slot frees at the first task's retry: the cancelled one is skipped
    acts = c.on_timer(1.0)  # window closes with no offer: first goes back to pending
    assert sent(acts, PlacementRequestMsg) == []


def test_restore_respects_max_negotiating():
    c = core(execs=(A,), max_negotiating=1)
    recs = [
        TaskRecord(spec=spec(f"r{i}"), state=S.NEGOTIATING, attempt=1, submitted_at=float(i))
        for i in range(3)
    ]
    acts = c.restore(recs, 10.0)
    assert len(fanouts(acts, PlacementRequestMsg)) == 1
    assert sorted(r.state.value for r in c.records()) == ["negotiating", "pending", "pending"]


def test_a_losers_notice_rides_on_the_next_request_to_it():
    c = core(execs=(A, B))
    negotiating(c)
    c.on_offer(offer(A), A, 1, 0.1)
    c.on_offer(offer(B), B, 1, 0.2)  # A wins; B holds an offer
    s2 = spec("second")
    acts = c.submit(s2, 0.25)
    to_b = [e for e in sent(acts, PlacementRequestMsg) if e.to == B]
    assert [m.msg.released for m in to_b] == [((TH, 1),)]
    assert [e.msg.released for e in sent(acts, PlacementRequestMsg) if e.to == A] == [()]
    assert not sent(c.on_timer(0.5), TaskClaimedMsg)  # nothing left to send alone


def test_max_negotiating_must_be_positive():
    with pytest.raises(ConfigError, match="compute.max_negotiating"):
        core(max_negotiating=0)


def test_requests_and_claimed_notices_name_their_direct_targets():
    c = core(execs=(A, B))
    req = one_fanout(negotiating(c), PlacementRequestMsg)
    assert req.to == {A, B}
    acts = c.on_offer(offer(A), A, 1, 0.1) + c.on_offer(offer(B), B, 1, 0.2)
    assert not sent(acts, TaskClaimedMsg)  # the loser's notice waits for a request to ride on
    assert c.next_deadline() == pytest.approx(0.3)
    claimed = one_fanout(c.on_timer(0.31), TaskClaimedMsg)
    assert claimed.msg.winner == A and claimed.to == {B}
    # nobody expected: both go to every member by gossip
    lone = core(execs=())
    assert one_fanout(lone.submit(spec("lone"), 0.0), PlacementRequestMsg).to is None


def test_declines_are_kept_with_their_reasons_for_status():
    c = core(execs=(A, B))
    negotiating(c)
    c.on_offer(offer(A), A, 1, 0.1)
    c.on_decline(TH, B, 1, "no_capacity", 0.2, detail="needs 2 cores, 0.5 free")
    rec = c.record(TH)
    assert rec.declines == ((B, "no_capacity: needs 2 cores, 0.5 free"),)
    assert TaskRecord.from_dict(rec.to_dict()) == rec  # stored and read back
    assert "declines" not in c.record(TH).evolve(declines=()).to_dict()  # left out when none
