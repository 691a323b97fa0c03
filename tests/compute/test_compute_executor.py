"""ExecutorCore, one transition at a time, on numbers for time."""

from __future__ import annotations

import pytest
from builders import (
    SUB,
    capacity,
    counted,
    did,
    kinds,
    observed,
    of,
    one,
    one_sent,
    result,
    sent,
    spec,
)

from icn_node.compute.effects import (
    LOSSES,
    OFFERS_PREEMPTED,
    OFFERS_SENT,
    REQUESTS_RECEIVED,
    SCORE,
    WINS,
    Count,
    Ignored,
    Observe,
    Persist,
    Send,
    StartRun,
    StopRun,
)
from icn_node.compute.executor import ExecutorCore
from icn_node.compute.records import JobRecord, JobState
from icn_node.errors import ConfigError, LocalProtocolError
from icn_node.scheduler import (
    AvoidDid,
    DefaultPlacementPolicy,
    PlacementRequest,
    ResourceProfile,
)
from icn_node.scheduler.tasks import TaskState
from icn_node.wire import (
    AbandonMsg,
    ClaimReplyMsg,
    ClaimRequestMsg,
    DeclineMsg,
    PlacementOfferMsg,
    TaskHeartbeatMsg,
    TaskResultMsg,
)

EX = did("Exec")
SPEC = spec()
TH = SPEC.task_hash


def core(trust=0.9, cap=None, **kw) -> ExecutorCore:
    return ExecutorCore(
        EX,
        cap or capacity(),
        DefaultPlacementPolicy(),
        trust if callable(trust) else (lambda _d: trust),
        **kw,
    )


def request(s=SPEC) -> PlacementRequest:
    return PlacementRequest(s.task_hash, s.profile, s.submitter, s.hints, s.max_cost)


def offered(e: ExecutorCore, s=SPEC, attempt=1, now=0.0):
    acts = e.on_request(request(s), attempt, now)
    return acts


def accepted(e: ExecutorCore, s=SPEC, attempt=1, now=0.0):
    offered(e, s, attempt, now)
    return e.on_claim(s.task_hash, SUB, attempt, s, now + 0.1)


# -- requests ----------------------------------------------------------------------------------


def test_request_offers_at_once_and_reserves():
    e = core()
    acts = offered(e)
    assert kinds(acts) == [
        "Count:requests_received",
        "Observe:score",
        "Observe:locality_score",
        "Observe:network_score",
        "Send:placement_offer",
        "Count:offers_sent",
    ]
    o = one_sent(acts, PlacementOfferMsg)
    assert o.to == SUB and o.msg.attempt == 1 and o.msg.offer.executor == EX
    assert observed(acts, SCORE) == [Observe(SCORE, o.msg.offer.score)]
    assert counted(acts, OFFERS_SENT) == [Count(OFFERS_SENT)]
    assert e.held_profiles() == [SPEC.profile]
    assert e.capacity.cpu_cores_available == 6.0
    # The reservation lasts the window plus the grace.
    assert e.next_deadline() == pytest.approx(1.0 + 2.0)


def test_deliberation_delays_the_offer_until_the_timer():
    e = core(deliberation_s=0.5)
    acts = offered(e)
    assert not sent(acts, PlacementOfferMsg) and e.held_profiles() == [SPEC.profile]
    assert not counted(acts, OFFERS_SENT)
    assert e.next_deadline() == 0.5
    assert e.on_timer(0.49) == []
    acts = e.on_timer(0.5)
    assert kinds(acts) == ["Send:placement_offer", "Count:offers_sent"]
    assert acts[0].to == SUB and acts[0].msg.offer.offered_at == 0.5
    assert e.on_timer(0.6) == []  # sent once


def test_request_window_from_the_message_sets_the_reservation_expiry():
    e = core(reservation_grace_s=0.5)
    e.on_request(request(), 1, 10.0, window_s=3.0)
    assert e.next_deadline() == 13.5


def test_duplicate_and_late_requests_are_ignored():
    e = core()
    offered(e, attempt=2)
    assert kinds(offered(e, attempt=2)) == ["Ignored"]
    assert kinds(offered(e, attempt=1)) == ["Ignored"]
    assert len(e.held_profiles()) == 1


def test_a_newer_round_supersedes_the_older_reservation():
    e = core()
    offered(e, attempt=1)
    acts = offered(e, attempt=2)
    assert one_sent(acts, PlacementOfferMsg).msg.attempt == 2
    assert e.tentative() == {TH: (2, SPEC.profile)} and len(e.held_profiles()) == 1


def test_declines_say_why():
    low = core(trust=0.2)
    d = one_sent(offered(low), DeclineMsg)
    assert (d.to, d.msg.task, d.msg.attempt, d.msg.reason) == (SUB, TH, 1, "low_trust")
    assert low.held_profiles() == []

    ex = core()
    d = one_sent(ex.on_request(request(), 1, 0.0, excluded=[EX]), DeclineMsg)
    assert d.msg.reason == "excluded"

    small = core(cap=capacity(cores=1))
    d = one_sent(offered(small), DeclineMsg)
    assert d.msg.reason == "no_capacity" and "cpu_cores" in d.msg.detail

    avoid = spec("avoid", hints=(AvoidDid(EX),))
    d = one_sent(core().on_request(request(avoid), 1, 0.0), DeclineMsg)
    assert d.msg.reason == "avoided"
    # Every request counts as received, offered or not.
    assert counted(offered(core(trust=0.1)), REQUESTS_RECEIVED)


def test_an_executor_never_offers_more_than_it_has():
    e = core(cap=capacity(cores=4, mem=8192))
    specs = [spec(f"t{i}") for i in range(3)]
    answers = [offered(e, s) for s in specs]
    assert [bool(sent(a, PlacementOfferMsg)) for a in answers] == [True, True, False]
    assert one_sent(answers[2], DeclineMsg).msg.reason == "no_capacity"


def test_a_submitter_over_its_fair_share_of_offers_yields_to_another():
    # A flooder's unclaimed offers fill the host; another submitter's request still gets an
    # offer: the flooder's newest holds beyond half the host are released for it.
    flooder = did("Flood")
    e = core(cap=capacity(cores=4, mem=8192))
    flood = [spec(f"f{i}", submitter=flooder) for i in range(2)]
    assert all(sent(offered(e, s), PlacementOfferMsg) for s in flood)
    assert e.capacity.cpu_cores_available == 0.0
    acts = offered(e, spec("honest"))
    assert one_sent(acts, PlacementOfferMsg).to == SUB
    assert counted(acts, OFFERS_PREEMPTED) == [Count(OFFERS_PREEMPTED, n=1)]
    assert set(e.tentative()) == {flood[0].task_hash, spec("honest").task_hash}
    # Within its share now, the flooder's next request is declined, not given the honest hold.
    again = offered(e, spec("f2", submitter=flooder))
    assert one_sent(again, DeclineMsg).msg.reason == "no_capacity"
    assert not counted(again, OFFERS_PREEMPTED)
    # A claim for the released offer re-reserves if it can, else is refused: nothing is lost.
    reply = e.on_claim(flood[1].task_hash, flooder, 1, flood[1], 0.1)
    assert one_sent(reply, ClaimReplyMsg).msg.reason == "no_capacity"


def test_a_lone_submitter_may_hold_everything_and_keeps_its_share_under_contention():
    e = core(cap=capacity(cores=4, mem=8192))
    mine = [spec(f"t{i}") for i in range(2)]
    assert all(sent(offered(e, s), PlacementOfferMsg) for s in mine)  # work-conserving
    other = did("Other")
    acts = offered(e, spec("o", submitter=other))
    # SUB held all of it: one hold goes back, and SUB keeps its half.
    assert sent(acts, PlacementOfferMsg) and counted(acts, OFFERS_PREEMPTED)
    acts = offered(e, spec("o2", submitter=did("Third")))
    assert one_sent(acts, DeclineMsg).msg.reason == "no_capacity"
    assert not counted(acts, OFFERS_PREEMPTED)


def test_a_submitter_over_its_own_share_takes_nothing_from_others():
    # Two submitters, each with half the host in offers; neither may take the other's.
    e = core(cap=capacity(cores=4, mem=8192))
    other = did("Other")
    assert sent(offered(e, spec("t0")), PlacementOfferMsg)
    assert sent(offered(e, spec("o0", submitter=other)), PlacementOfferMsg)
    for s in (spec("t1"), spec("o1", submitter=other)):
        acts = offered(e, s)
        assert one_sent(acts, DeclineMsg).msg.reason == "no_capacity"
        assert not counted(acts, OFFERS_PREEMPTED)


def test_tentative_reservation_expires_without_a_count():
    e = core()
    offered(e)
    assert e.on_timer(2.9) == [] and e.held_profiles()
    assert e.on_timer(3.0) == []
    assert e.held_profiles() == [] and e.tentative() == {}


# -- TaskClaimed -----------------------------------------------------------------------------


def test_task_claimed_for_another_releases_and_counts_a_loss():
    e = core()
    offered(e)
    acts = e.on_task_claimed(TH, did("Other"), 1, 0.5)
    assert kinds(acts) == ["Count:losses"]
    assert e.held_profiles() == []
    assert kinds(e.on_task_claimed(TH, did("Other"), 1, 0.6)) == ["Ignored"]  # counted once


def test_released_on_a_request_frees_only_the_senders_own_offers():
    e = core()
    offered(e)
    assert e.on_released(did("Other"), [(TH, 1)], 0.5) == []  # not the submitter: nothing
    assert e.tentative()
    assert e.on_released(SUB, [(TH, 2)], 0.5) == []  # another round: nothing
    assert e.on_released(SUB, [(TH, 1)], 0.5) == [Count(LOSSES)]
    assert e.tentative() == {} and e.capacity.cpu_cores_available == 8.0


def test_task_claimed_while_deliberating_releases_without_a_loss():
    e = core(deliberation_s=0.5)
    offered(e)
    assert kinds(e.on_task_claimed(TH, did("Other"), 1, 0.2)) == []
    assert e.held_profiles() == [] and e.on_timer(0.5) == []


def test_task_claimed_for_us_keeps_the_reservation_for_the_claim():
    e = core(reservation_grace_s=2.0)
    offered(e)
    assert e.on_task_claimed(TH, EX, 1, 2.5) == []
    assert e.next_deadline() == 4.5
    assert kinds(e.on_task_claimed(TH, EX, 7, 2.5)) == ["Ignored"]


# -- claims ----------------------------------------------------------------------------------


def test_claim_with_a_held_reservation_is_accepted_and_started():
    e = core()
    offered(e)
    acts = e.on_claim(TH, SUB, 1, SPEC, 0.5)
    assert kinds(acts) == ["Persist", "Send:claim_reply", "Count:wins", "StartRun"]
    assert acts[1].msg.accepted and acts[1].to == SUB
    assert acts[1].msg.task == TH and acts[1].msg.attempt == 1
    job = acts[0].record
    assert job.state is JobState.RESERVED and job.attempt == 1 and job.reservation is not None
    run = one(acts, StartRun)
    assert run.spec == SPEC and run.reservation == job.reservation
    assert e.queue_depth == 1 and len(e.held_profiles()) == 1  # the same reservation, firmed


def test_duplicate_claim_is_answered_again_and_never_starts_twice():
    e = core()
    accepted(e)
    acts = e.on_claim(TH, SUB, 1, SPEC, 0.6)
    assert kinds(acts) == ["Send:claim_reply"] and acts[0].msg.accepted
    assert len(e.held_profiles()) == 1


def test_claim_for_another_round_of_an_accepted_task_is_rejected():
    e = core()
    accepted(e)
    r = one_sent(e.on_claim(TH, SUB, 2, SPEC, 0.6), ClaimReplyMsg).msg
    assert not r.accepted and r.reason == "busy"


def test_claim_after_expiry_accepted_if_it_still_fits_and_rejected_if_not():
    e = core(cap=capacity(cores=2, mem=4096))
    offered(e)
    e.on_timer(10.0)  # expired
    assert e.held_profiles() == []
    assert one_sent(e.on_claim(TH, SUB, 1, SPEC, 10.1), ClaimReplyMsg).msg.accepted
    other = spec("other")
    acts = e.on_claim(other.task_hash, SUB, 1, other, 10.2)
    assert kinds(acts) == ["Send:claim_reply"] and acts[0].msg.reason == "no_capacity"


def test_claim_that_cannot_be_honoured_counts_the_loss():
    e = core()
    offered(e)
    e.update_capacity(capacity(cores=1, mem=1024), 0.2)  # the tentative reservation is gone
    acts = e.on_claim(TH, SUB, 1, SPEC, 0.3)
    assert kinds(acts) == ["Send:claim_reply", "Count:losses"] and not acts[0].msg.accepted


def test_claims_that_do_not_match_are_ignored_or_refused():
    e = core()
    offered(e)
    assert kinds(e.on_claim(TH, did("Mallory"), 1, SPEC, 0.1)) == ["Ignored"]
    assert kinds(e.on_claim(h := spec("x").task_hash, SUB, 1, SPEC, 0.1)) == ["Ignored"], h
    legacy = spec("legacy", profile=None)
    assert kinds(e.on_claim(legacy.task_hash, SUB, 1, legacy, 0.1)) == ["Ignored"]
    # a claim for a round older than one already seen
    offered(e, attempt=3)
    r = one_sent(e.on_claim(TH, SUB, 2, SPEC, 0.2), ClaimReplyMsg).msg
    assert not r.accepted and r.reason == "busy"


def test_claim_from_a_submitter_no_longer_trusted_is_rejected():
    trust = {"v": 0.9}
    e = core(trust=lambda _d: trust["v"])
    offered(e)
    trust["v"] = 0.1
    acts = e.on_claim(TH, SUB, 1, SPEC, 0.2)
    assert acts[0].msg.reason == "low_trust" and counted(acts, LOSSES)


def test_claim_without_an_offer_counts_a_win_only():
    e = core()
    acts = e.on_claim(TH, SUB, 1, SPEC, 0.0)
    assert counted(acts, WINS) and not counted(acts, LOSSES)


# -- running ---------------------------------------------------------------------------------


def test_heartbeats_every_interval_while_the_job_runs():
    e = core(heartbeat_interval_s=5.0)
    accepted(e)  # accepted at 0.1
    assert e.on_run_started(TH, 0.2) == [Persist(e.jobs()[TH])]
    assert e.jobs()[TH].state is JobState.RUNNING
    assert kinds(e.on_run_started(TH, 0.3)) == ["Ignored"]
    assert e.next_deadline() == pytest.approx(5.1)
    hb = e.on_timer(5.1)
    assert hb == [Send(SUB, TaskHeartbeatMsg(TH, 1))]
    assert e.next_deadline() == pytest.approx(10.1)


def test_finished_run_releases_persists_and_resends_until_acked():
    e = core(result_resend_s=5.0, forget_after_s=100.0)
    accepted(e)
    r = result(EX)
    acts = e.on_run_finished(TH, r, 3.0)
    assert kinds(acts) == ["Persist", "Send:task_result"]
    assert acts[0].record.state is JobState.FINISHED and acts[0].record.result == r
    assert acts[1] == Send(SUB, TaskResultMsg(TH, 1, r))
    assert e.held_profiles() == [] and e.queue_depth == 0
    assert e.on_timer(8.0) == [Send(SUB, TaskResultMsg(TH, 1, r))]  # no more heartbeats
    assert kinds(e.on_result_ack(TH, did("Mallory"), 9.0)) == ["Ignored"]
    assert kinds(e.on_result_ack(TH, SUB, 9.0, attempt=2)) == ["Ignored"]
    acts = e.on_result_ack(TH, SUB, 9.0, attempt=1)
    assert kinds(acts) == ["Persist"] and acts[0].record.result_acked
    assert e.on_result_ack(TH, SUB, 9.5) == []  # a duplicate ack
    assert e.on_timer(20.0) == []
    e.on_timer(109.0)
    assert TH not in e.jobs()
    # The task is remembered as done: a late duplicate claim does not run it again.
    r2 = one_sent(e.on_claim(TH, SUB, 1, SPEC, 110.0), ClaimReplyMsg)
    assert not r2.msg.accepted
    assert kinds(e.on_request(request(), 1, 110.0)) == ["Ignored"]


def test_run_finished_misuse_is_a_local_protocol_error():
    e = core()
    with pytest.raises(LocalProtocolError, match="no job"):
        e.on_run_finished(TH, result(EX), 1.0)
    accepted(e)
    with pytest.raises(LocalProtocolError, match="round"):
        e.on_run_finished(TH, result(did("Other")), 1.0)
    with pytest.raises(LocalProtocolError, match="round"):
        e.on_run_finished(TH, result(EX, attempt=2), 1.0)
    e.on_run_finished(TH, result(EX), 1.0)
    with pytest.raises(LocalProtocolError, match="not running"):
        e.on_run_finished(TH, result(EX), 1.0)
    with pytest.raises(LocalProtocolError):
        e.on_run_started(spec("nope").task_hash, 1.0)


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_releases_a_tentative_reservation():
    e = core()
    offered(e)
    assert e.on_cancel(TH, SUB, 0.2) == []
    assert e.held_profiles() == []
    assert kinds(e.on_task_claimed(TH, did("Other"), 1, 0.3)) == ["Ignored"]  # no loss


def test_cancel_stops_a_running_job_once():
    e = core()
    accepted(e)
    assert e.on_cancel(TH, SUB, 1.0) == [StopRun(TH, 1)]
    assert e.on_cancel(TH, SUB, 1.1) == []
    assert e.held_profiles()  # held until the runner reports
    e.on_run_finished(TH, result(EX, state=TaskState.CANCELLED), 1.2)
    assert e.held_profiles() == []


def test_cancel_from_a_stranger_or_for_another_round_is_ignored():
    e = core()
    accepted(e)
    assert kinds(e.on_cancel(TH, did("Mallory"), 1.0)) == ["Ignored"]
    assert kinds(e.on_cancel(TH, SUB, 1.0, attempt=5)) == ["Ignored"]


# -- legacy ----------------------------------------------------------------------------------


LEGACY = spec("legacy", profile=None)
LH = LEGACY.task_hash


def test_legacy_task_asks_to_claim_with_a_minimal_reservation():
    e = core()
    acts = e.on_task_submitted(LEGACY, 1, 0.0)
    assert acts == [Send(SUB, ClaimRequestMsg(LH, 1))]
    assert e.held_profiles() == [ResourceProfile.minimal()]
    assert kinds(e.on_task_submitted(LEGACY, 1, 0.1)) == ["Ignored"]  # duplicate


def test_legacy_grant_starts_and_refuse_releases():
    e = core()
    e.on_task_submitted(LEGACY, 1, 0.0)
    acts = e.on_grant(LH, SUB, 1, LEGACY, 0.1)
    assert kinds(acts) == ["Persist", "Send:claim_reply", "StartRun"]  # no win: not placement
    f = core()
    f.on_task_submitted(LEGACY, 1, 0.0)
    assert f.on_refuse(LH, SUB, 1, 0.1) == []
    assert f.held_profiles() == []
    assert kinds(f.on_refuse(LH, SUB, 1, 0.2)) == ["Ignored"]


def test_legacy_gates():
    assert kinds(core(trust=0.1).on_task_submitted(LEGACY, 1, 0.0)) == ["Ignored"]
    full = core(cap=capacity(cores=0.05))
    assert kinds(full.on_task_submitted(LEGACY, 1, 0.0)) == ["Ignored"]
    assert kinds(core().on_task_submitted(LEGACY, 1, 0.0, excluded=[EX])) == ["Ignored"]
    assert kinds(core().on_task_submitted(SPEC, 1, 0.0)) == ["Ignored"]


# -- capacity updates and announcements --------------------------------------------------------


def test_shrinking_host_declines_new_work_until_running_jobs_fit():
    e = core()
    accepted(e)
    e.update_capacity(capacity(cores=1, mem=1024), 1.0)
    assert e.overcommitted
    other = spec("other", profile=ResourceProfile.minimal())
    d = one_sent(e.on_request(request(other), 1, 1.1), DeclineMsg)
    assert d.msg.reason == "no_capacity"
    e.update_capacity(capacity(cores=8), 2.0)
    assert not e.overcommitted and e.capacity.cpu_cores_available == 6.0
    e.update_capacity(capacity(cores=1, mem=1024), 3.0)
    e.on_run_finished(TH, result(EX), 4.0)
    assert not e.overcommitted and e.capacity.cpu_cores_available == 1.0


def test_update_capacity_keeps_tentative_reservations_that_fit():
    e = core()
    offered(e)
    e.update_capacity(capacity(cores=16), 0.5)
    assert e.tentative() and e.capacity.cpu_cores_available == 14.0


def test_announce_info_and_significant_change():
    e = core()
    assert e.significant_change()
    info = e.announce_info(0.0, region="eu")
    assert info.did == EX and info.region == "eu" and info.queue_depth == 0
    assert not e.significant_change()
    accepted(e, spec("big", profile=ResourceProfile.compute_heavy(4.0, 8192)))
    assert e.significant_change()
    assert e.announce_info(2.0).queue_depth == 1
    assert not e.significant_change()


def test_bad_configuration_names_the_key():
    with pytest.raises(ConfigError, match="compute.heartbeat_interval_s"):
        core(heartbeat_interval_s=0)
    with pytest.raises(ConfigError, match="compute.min_trust"):
        core(min_trust=2)


# -- restore ---------------------------------------------------------------------------------


def job(state: JobState, s=SPEC, **kw) -> JobRecord:
    return JobRecord(spec=s, attempt=2, state=state, **kw)


def test_restore_abandons_interrupted_jobs_and_resends_unacked_results():
    e = core()
    r = result(EX, attempt=2)
    acts = e.restore(
        [
            job(JobState.RUNNING, spec("running")),
            job(JobState.RESERVED, spec("reserved")),
            job(JobState.FINISHED, spec("unacked"), result=r),
            job(JobState.FINISHED, spec("acked"), result=r, result_acked=True),
            job(JobState.ABANDONED, spec("abandoned")),
        ],
        100.0,
    )
    abandons = sent(acts, AbandonMsg)
    assert {a.msg.task for a in abandons} == {
        spec("running").task_hash,
        spec("reserved").task_hash,
    }
    assert all(
        a.to == SUB and a.msg.attempt == 2 and a.msg.reason == "executor restarted"
        for a in abandons
    )
    assert all(p.record.state is JobState.ABANDONED for p in of(acts, Persist))
    (res,) = sent(acts, TaskResultMsg)
    assert res.msg.task == spec("unacked").task_hash and res.msg.result == r
    assert e.held_profiles() == [] and e.queue_depth == 0
    # An abandoned job refuses a late claim; a duplicate request is ignored.
    rs = spec("running")
    assert not one_sent(e.on_claim(rs.task_hash, SUB, 2, rs, 101.0), ClaimReplyMsg).msg.accepted
    assert kinds(e.on_request(request(rs), 2, 101.0)) == ["Ignored"]
    with pytest.raises(LocalProtocolError):
        e.restore([], 101.0)
    with pytest.raises(LocalProtocolError):
        core().restore([job(JobState.RUNNING), job(JobState.RUNNING)], 0.0)


def test_ignored_events_name_the_reason():
    e = core()
    (i,) = e.on_cancel(TH, SUB, 0.0)
    assert isinstance(i, Ignored) and i.task_hash == TH and i.sender == SUB and i.reason


def test_abandon_gives_the_job_back_and_frees_its_capacity():
    e = core()
    before = e.capacity.available_ratio()
    accepted(e)
    assert e.queue_depth == 1 and e.capacity.available_ratio() < before
    acts = e.abandon(TH, "blobs unavailable: no holder", 5.0)
    assert kinds(acts) == ["Persist", "Send:abandon"]
    ab = one_sent(acts, AbandonMsg)
    assert (ab.to, ab.msg.task, ab.msg.attempt) == (SUB, TH, 1)
    assert one(acts, Persist).record.state is JobState.ABANDONED
    assert e.queue_depth == 0 and e.held_profiles() == []
    assert e.capacity.available_ratio() == before
    with pytest.raises(LocalProtocolError, match="not running"):
        e.abandon(TH, "again", 6.0)


def test_seen_rounds_expire_oldest_first_without_scanning():
    e = core(forget_after_s=100.0)
    specs = [spec(f"t{i}") for i in range(50)]
    for i, s in enumerate(specs):
        e.on_request(request(s), 1, float(i))
        e.on_task_claimed(s.task_hash, did("Other"), 1, float(i) + 0.5)  # lost: nothing held
    assert e.next_deadline() == 100.0  # the oldest round, seen at t=0
    e.on_timer(124.9)  # rounds seen at t=0..24 are forgotten, the rest kept
    assert len(e._seen) == 25
    assert e.next_deadline() == 125.0
    # a forgotten round is new again: a request for it is answered
    assert kinds(e.on_request(request(specs[0]), 1, 130.0))[-2:] == [
        "Send:placement_offer",
        "Count:offers_sent",
    ]


def test_a_request_for_a_runtime_the_executor_lacks_is_declined():
    e = core()  # runtimes: wasm only
    exec_spec = spec("exec")
    req = PlacementRequest(exec_spec.task_hash, ResourceProfile.minimal(), SUB, runtime="exec")
    acts = e.on_request(req, 1, 0.0)
    assert one_sent(acts, DeclineMsg).msg.reason == "runtime" and e.held_profiles() == []
    allowed = core(runtimes=("wasm", "exec"))
    assert kinds(allowed.on_request(req, 1, 0.0))[-2:] == [
        "Send:placement_offer",
        "Count:offers_sent",
    ]
    assert allowed.announce_info(0.0).runtimes == ("wasm", "exec")


def test_acknowledged_jobs_are_forgotten_oldest_first_and_leave_the_timers_alone():
    e = core(forget_after_s=100.0, heartbeat_interval_s=5.0)
    specs = [spec(f"done{i}") for i in range(6)]
    for i, s in enumerate(specs):
        t = float(i)
        accepted(e, s, now=t)
        e.on_run_finished(s.task_hash, result(EX), t + 0.5)
        e.on_result_ack(s.task_hash, SUB, t + 0.6)
    running = spec("running")
    accepted(e, running, now=10.0)  # still running: its heartbeat is the next deadline
    assert e.next_deadline() == pytest.approx(10.1 + 5.0)
    assert e._in_flight == {running.task_hash}
    acts = e.on_timer(102.0)  # jobs acknowledged at 0.6, 1.6 are forgotten; 2.6.. kept
    assert set(e.jobs()) == {s.task_hash for s in specs[2:]} | {running.task_hash}
    assert kinds(acts).count("Send:task_heartbeat") == 1
    e.on_run_finished(running.task_hash, result(EX), 103.0)
    e.on_result_ack(running.task_hash, SUB, 103.5)
    e.on_timer(102.59)
    assert specs[2].task_hash in e.jobs()  # acknowledged at 2.6: forgotten at 102.6, not before
    e.on_timer(102.6)
    assert specs[2].task_hash not in e.jobs() and specs[3].task_hash in e.jobs()
