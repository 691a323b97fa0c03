"""Invitations to a sample: who a placement asks (icn_node.compute.sample and the submitter)."""

from __future__ import annotations

from builders import SUB, capacity, did, spec
from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node.compute import sample
from icn_node.compute.registry import ExecutorRegistry
from icn_node.compute.submitter import SubmitterCore
from icn_node.scheduler import NodeCapacity, ResourceProfile
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.tasks import TaskState
from icn_node.wire import PlacementRequestMsg

EXECS = [did(f"E{i:03d}") for i in range(40)]


def info(d: str, free: float = 1.0, queue: int = 0) -> ExecutorInfo:
    cap = NodeCapacity(
        cpu_cores_total=8.0,
        memory_mb_total=16384,
        storage_mb_total=100_000,
        network_mbps=1000.0,
        cpu_cores_available=8.0 * free,
        memory_mb_available=int(16384 * free),
    )
    return ExecutorInfo(did=d, capacity=cap, queue_depth=queue)


def flat(_d: str) -> float:
    return 0.9


def test_everyone_when_there_are_at_most_k_or_k_is_zero():
    pool = [info(d) for d in EXECS[:8]]
    assert sample.choose(pool, 8, trust=flat) == set(EXECS[:8])
    assert sample.choose(pool, 0, trust=flat) == set(EXECS[:8])
    assert sample.choose([info(d) for d in EXECS], 0, trust=flat) == set(EXECS)


def test_holders_first_then_the_best_by_announcements_then_explored():
    # E000-E009 announce themselves busy; E010-E039 free, E039 with a long queue.
    pool = [
        info(d, free=0.1 if i < 10 else 1.0, queue=9 if i == 39 else 0) for i, d in enumerate(EXECS)
    ]
    chosen = sample.choose(pool, 8, trust=flat, holders={EXECS[3], "did:key:z6MkNotACandidate"})
    assert len(chosen) == 8
    assert EXECS[3] in chosen  # holds the data, though busy
    explored = sample.explore_places(8)
    assert explored == 1
    # 8 - 1 holder - 1 explored = 6 by the prior: the free ones, lowest DID first on ties.
    assert set(EXECS[10:16]) <= chosen
    assert len(chosen - {EXECS[3]} - set(EXECS[10:16])) == 1


def test_trust_ranks_the_sample():
    pool = [info(d) for d in EXECS]
    trusted = set(EXECS[30:37])
    chosen = sample.choose(pool, 8, trust=lambda d: 0.95 if d in trusted else 0.6)
    assert trusted <= chosen


def test_exploration_is_deterministic_per_salt_and_reaches_everyone_across_tasks():
    pool = [info(d) for d in EXECS]
    a = sample.choose(pool, 8, trust=flat, salt=b"task-1")
    assert a == sample.choose(pool, 8, trust=flat, salt=b"task-1")
    reached: set[str] = set()
    for i in range(400):
        reached |= sample.choose(pool, 8, trust=flat, salt=b"task-%d" % i)
    assert reached == set(EXECS)  # newcomers and stale announcements all get asked


def test_more_holders_than_places_keeps_the_best_holders():
    pool = [info(d, free=1.0 if i % 2 else 0.2) for i, d in enumerate(EXECS)]
    chosen = sample.choose(pool, 4, trust=flat, holders=set(EXECS[:10]))
    assert chosen == {EXECS[1], EXECS[3], EXECS[5], EXECS[7]}


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 60),
    k=st.integers(0, 70),
    holders=st.sets(st.integers(0, 59), max_size=10),
    salt=st.binary(max_size=8),
)
def test_the_sample_is_a_subset_of_size_k_holding_the_holders(n, k, holders, salt):
    pool = [info(EXECS[i % 40] if i < 40 else did(f"X{i}")) for i in range(n)]
    dids = [i.did for i in pool]
    held = {dids[h] for h in holders if h < n}
    chosen = sample.choose(pool, k, trust=flat, holders=held, salt=salt)
    assert chosen <= set(dids)
    assert len(chosen) == (n if k == 0 or n <= k else k)
    if len(held) <= k or k == 0:
        assert held <= chosen


# -- in the submitter --------------------------------------------------------------------------


def submitter(invite: int) -> SubmitterCore:
    reg = ExecutorRegistry(1000.0)
    for d in EXECS:
        reg.announce(ExecutorInfo(did=d, capacity=capacity()), 0.0)
    return SubmitterCore(SUB, flat, reg, invite=invite, retry_backoff_s=(1.0, 2.0))


def invited(effects) -> set[str]:
    return {e.to for e in effects if isinstance(getattr(e, "msg", None), PlacementRequestMsg)}


def test_a_placement_invites_k_and_widens_until_everyone_before_it_fails():
    sub = submitter(8)
    s = spec("wide")
    first = invited(sub.submit(s, 0.0))
    assert len(first) == 8
    assert sub.expected(s.task_hash) == first
    now = 0.0
    rounds = [first]
    for _ in range(2):
        for d in sorted(rounds[-1]):
            sub.on_decline(s.task_hash, d, sub.record(s.task_hash).attempt, "no_capacity", now)
        now += 5.0
        rounds.append(invited(sub.on_timer(now)))
    assert [len(r) for r in rounds] == [8, 16, 40]  # doubled, then everyone in the last round
    for d in sorted(rounds[-1]):
        sub.on_decline(s.task_hash, d, sub.record(s.task_hash).attempt, "no_capacity", now)
    sub.on_timer(now + 5.0)
    assert sub.record(s.task_hash).state is TaskState.FAILED


def test_invite_zero_asks_every_candidate():
    assert len(invited(submitter(0).submit(spec("all"), 0.0))) == 40


# -- probing a large registry ------------------------------------------------------------------


def big_registry(n: int, cores=lambda i: 8.0) -> ExecutorRegistry:
    reg = ExecutorRegistry(10.0)
    for i in range(n):
        reg.announce(ExecutorInfo(did=did(f"P{i:04d}"), capacity=capacity(cores=cores(i))), 0.0)
    return reg


def test_probe_finds_distinct_live_candidates_in_o_of_want():
    reg = big_registry(1000, cores=lambda i: 1.0 if i % 2 else 8.0)  # odd ones cannot fit 2 cores
    s = spec("probe")
    got = reg.probe(s.profile, 1.0, 16, b"salt")
    assert len(got) == 16 and len({i.did for i in got}) == 16
    assert all(i.could_fit(s.profile) for i in got)
    assert got == reg.probe(s.profile, 1.0, 16, b"salt")  # deterministic per salt
    assert {i.did for i in got} != {i.did for i in reg.probe(s.profile, 1.0, 16, b"other")}
    excluded = {i.did for i in got}
    again = reg.probe(s.profile, 1.0, 16, b"salt", exclude=excluded)
    assert not excluded & {i.did for i in again}
    assert reg.probe(s.profile, 1000.0, 16, b"salt") == []  # all expired: nothing live


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.floats(0, 100)), max_size=80))
def test_the_registry_index_follows_announcements_and_expiry(ops):
    reg = ExecutorRegistry(10.0)
    now = 0.0
    for announce, i, dt in ops:
        now += dt
        if announce:
            reg.announce(ExecutorInfo(did=did(f"R{i}"), capacity=capacity(), announced_at=now), now)
        else:
            reg.expire(now)
        assert sorted(reg._order) == sorted(reg._entries)
        assert all(reg._order[j] == d for d, j in reg._index.items())


def test_a_large_cooperative_is_probed_and_the_holder_still_invited():
    reg = big_registry(500)
    holder = did("P0499")

    class Locations:
        def holders(self, h):
            return frozenset({holder})

        def lookup(self, h):
            return (1 << 30, frozenset({holder}))

    sub = SubmitterCore(SUB, flat, reg, invite=8, blobs=Locations)
    s = spec("data")
    chosen = invited(sub.submit(s, 0.0))
    assert len(chosen) == 8 and holder in chosen


# -- failing fast, saying why ------------------------------------------------------------------


def small_submitter(**kw) -> SubmitterCore:
    reg = ExecutorRegistry(10.0)
    for i in range(3):
        reg.announce(ExecutorInfo(did=did(f"S{i}"), capacity=capacity(cores=2, mem=3200)), 0.0)
    return SubmitterCore(SUB, flat, reg, retry_backoff_s=(1.0, 2.0), **kw)


def test_a_task_no_known_executor_could_fit_fails_at_once_saying_why():
    sub = small_submitter()
    s = spec("huge", profile=ResourceProfile(cpu_cores=64.0))
    effects = sub.submit(s, 0.0)
    rec = sub.record(s.task_hash)
    assert rec.state is TaskState.FAILED and not invited(effects)
    assert rec.reason == (
        "no_executor: no executor is large enough (asked 64 cores); "
        "largest of 3 live: 2 cores, 3.1 GB"
    )
    gpu = spec("gpu", profile=ResourceProfile.gpu(16.0, "sm_90"))
    sub.submit(gpu, 0.0)
    assert sub.record(gpu.task_hash).reason.startswith(
        "no_executor: no executor has a GPU (asked 1 cores, 4.0 GB, a GPU); largest of 3 live"
    )


def test_untrusted_executors_are_named_as_the_reason():
    reg = ExecutorRegistry(10.0)
    reg.announce(ExecutorInfo(did=did("U"), capacity=capacity()), 0.0)
    sub = SubmitterCore(SUB, lambda _d: 0.1, reg, retry_backoff_s=(1.0,))
    s = spec("t")
    sub.submit(s, 0.0)
    assert "trusted" in sub.record(s.task_hash).reason


def test_with_no_executor_known_the_request_is_gossiped_as_before():
    sub = SubmitterCore(SUB, flat, ExecutorRegistry(10.0))
    s = spec("early", profile=ResourceProfile(cpu_cores=64.0))
    effects = sub.submit(s, 0.0)
    assert sub.record(s.task_hash).state is TaskState.NEGOTIATING
    assert [type(e).__name__ for e in effects if getattr(e, "msg", None) is not None][-1] == (
        "Publish"
    )


def test_waiting_for_capacity_stays_pending_until_an_executor_could_fit():
    sub = small_submitter()
    s = spec("big", profile=ResourceProfile(cpu_cores=6.0), wait_for_capacity=True)
    sub.submit(s, 0.0)
    rec = sub.record(s.task_hash)
    assert rec.state is TaskState.PENDING
    assert rec.reason.startswith("waiting for capacity: no executor is large enough")
    sub.on_timer(10.0)
    assert sub.record(s.task_hash).state is TaskState.PENDING  # still nobody: still waiting
    sub.registry.announce(ExecutorInfo(did=did("Big"), capacity=capacity(cores=8)), 11.0)
    effects = sub.on_timer(20.0)
    assert sub.record(s.task_hash).state is TaskState.NEGOTIATING
    assert invited(effects) == {did("Big")}
