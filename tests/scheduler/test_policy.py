"""DefaultPlacementPolicy: trust gate, hard filters, scoring, the seed scenarios."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sched_helpers import (
    GB,
    SUBMITTER,
    cc,
    components,
    contexts,
    did,
    h,
    hints,
    plain_node,
    profiles,
    registry,
    request,
)

from icn_node.errors import ConfigError, ResourceError
from icn_node.scheduler import (
    WEIGHT_SETS,
    AvoidDid,
    ColocateWith,
    DataLocality,
    Decline,
    DeclineReason,
    DefaultPlacementPolicy,
    GpuDevice,
    LocalityContext,
    MinimizeTransfer,
    NodeCapacity,
    NodeState,
    PlacementOffer,
    PlacementPolicy,
    PlacementRequest,
    PreferDid,
    PreferHighBandwidth,
    PreferLowLatency,
    PreferRegion,
    RequireRegion,
    ResourceProfile,
    Weights,
    rank_offers,
)

EMPTY = LocalityContext.empty()


def offer_of(result) -> PlacementOffer:
    assert isinstance(result, PlacementOffer), result
    return result


# -- seed 002: the scheduler demo ------------------------------------------------------------


def demo_nodes() -> dict[str, tuple[NodeState, float]]:
    a100 = GpuDevice("0", "NVIDIA A100", 40, cc("sm_80"))
    rtx = GpuDevice("0", "NVIDIA RTX 2080 Ti", 24, cc("sm_75"))
    # A is busy: a quarter of its cores and memory free. B is mostly idle.
    a = NodeCapacity(
        cpu_cores_total=32,
        memory_mb_total=131072,
        storage_mb_total=500_000,
        network_mbps=10_000,
        gpu_devices=[a100],
        cpu_cores_available=8,
        memory_mb_available=32768,
    )
    b = NodeCapacity(
        cpu_cores_total=8,
        memory_mb_total=32768,
        storage_mb_total=500_000,
        network_mbps=1000,
        gpu_devices=[rtx],
        cpu_cores_available=6,
        memory_mb_available=24576,
    )
    c = NodeCapacity.from_totals(16, 65536, 500_000, 1000)
    return {
        "A": (NodeState(did("A"), a, queue_depth=5), 0.85),
        "B": (NodeState(did("B"), b, queue_depth=1), 0.65),
        "C": (NodeState(did("C"), c, queue_depth=0), 0.50),
    }


def test_seed_002_demo_phase16a():
    policy = DefaultPlacementPolicy("phase16a")  # no jitter source: jitter component 0.5
    req = request(profile=ResourceProfile.gpu(24, "sm_70"))
    res = {
        k: policy.score(req, node, t, EMPTY, now=1000.0) for k, (node, t) in demo_nodes().items()
    }
    a, b = offer_of(res["A"]), offer_of(res["B"])
    # A: 0.4*0.85 + 0.3*(0.25+0.25+1)/3 + 0.2*(1-5/10) + 0.1*0.5
    assert a.score == pytest.approx(0.34 + 0.15 + 0.10 + 0.05)
    # B: 0.4*0.65 + 0.3*(0.75+0.75+1)/3 + 0.2*(1-1/10) + 0.1*0.5
    assert b.score == pytest.approx(0.26 + 0.25 + 0.18 + 0.05)
    assert b.score > a.score
    assert isinstance(res["C"], Decline) and res["C"].reason is DeclineReason.NO_CAPACITY
    assert "gpu_spec" in res["C"].detail
    # Cost rises with queue depth (base 100, up to 1.5x at 10 queued); start = now + queue*60s.
    assert (a.cost, b.cost) == (125, 105)
    assert (a.estimated_start, b.estimated_start) == (1300.0, 1060.0)
    assert a.offered_at == 1000.0
    ranking = rank_offers([a, b], {did("A"): 0.85, did("B"): 0.65}, weights="phase16a")
    assert [r.offer.executor for r in ranking] == [did("B"), did("A")]


def test_seed_002_demo_phase16c_same_winner():
    policy = DefaultPlacementPolicy("phase16c")
    req = request(profile=ResourceProfile.gpu(24, "sm_70"))
    nodes = demo_nodes()
    a = offer_of(policy.score(req, *nodes["A"], EMPTY, 0.0))
    b = offer_of(policy.score(req, *nodes["B"], EMPTY, 0.0))
    assert a.score == pytest.approx(
        (0.30 * 0.85 + 0.25 * 0.5 + 0.15 * 0.5 + 0.20 * 0.5 + 0.10 * 0.5 + 0.05 * 0.5) / 1.05
    )
    assert b.score == pytest.approx(
        (0.30 * 0.65 + 0.25 * 5 / 6 + 0.15 * 0.9 + 0.20 * 0.5 + 0.10 * 0.5 + 0.05 * 0.5) / 1.05
    )
    assert b.score > a.score


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32))
def test_seed_002_winner_holds_for_any_jitter(seed):
    policy = DefaultPlacementPolicy("phase16a", jitter=random.Random(seed))
    req = request(profile=ResourceProfile.gpu(24, "sm_70"))
    nodes = demo_nodes()
    a = offer_of(policy.score(req, *nodes["A"], EMPTY, 0.0))
    b = offer_of(policy.score(req, *nodes["B"], EMPTY, 0.0))
    assert b.score > a.score  # 0.10 apart before jitter; jitter weighs 0.1 but both draw


# -- seed 003: locality scenarios ------------------------------------------------------------


def ctx(region=None, blobs=None, rtt=None, bw=None, tasks=None) -> LocalityContext:
    return LocalityContext(
        region=region,
        blobs=blobs or registry(),
        rtt_ms=rtt or {},
        bandwidth_mbps=bw or {},
        task_locations=tasks or {},
    )


def score_all(policy, req, contexts_by_node, trust=0.7):
    out = {}
    for name, context in contexts_by_node.items():
        out[name] = offer_of(policy.score(req, plain_node(name), trust, context, 0.0))
    return out


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32))
def test_local_data_beats_5ms_rtt(seed):
    # Task needs a 10 GB dataset. A: 5 ms away, no data. B: 50 ms away, has it.
    reg = registry(("dataset", 10 * GB, ("B",)))
    req = request(DataLocality((h("dataset"),)), PreferLowLatency(10.0))
    policy = DefaultPlacementPolicy("phase16c", jitter=random.Random(seed))
    s = score_all(
        policy,
        req,
        {"A": ctx(blobs=reg, rtt={SUBMITTER: 5.0}), "B": ctx(blobs=reg, rtt={SUBMITTER: 50.0})},
    )
    assert s["A"].components.locality == 0.0 and s["B"].components.locality == 1.0
    assert s["A"].components.network == pytest.approx(0.75) and s["B"].components.network == 0
    assert s["B"].score > s["A"].score  # for every jitter draw


def test_low_rtt_wins_when_data_is_equal():
    req = request(PreferLowLatency(100.0))
    policy = DefaultPlacementPolicy("phase16c")
    s = score_all(
        policy,
        req,
        {
            "A": ctx(rtt={SUBMITTER: 5.0}),
            "B": ctx(rtt={SUBMITTER: 50.0}),
            "C": ctx(rtt={SUBMITTER: 200.0}),
        },
    )
    assert [s[n].components.network for n in "ABC"] == pytest.approx([0.975, 0.75, 0.0])
    assert s["A"].score > s["B"].score > s["C"].score
    ranking = rank_offers(s.values(), {did(n): 0.7 for n in "ABC"})
    assert [r.offer.executor for r in ranking] == [did("A"), did("B"), did("C")]


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32))
def test_data_beats_network_when_both_apply(seed):
    reg = registry(("blob", 1 * GB, ("A",)))
    req = request(DataLocality((h("blob"),)), PreferLowLatency(100.0))
    policy = DefaultPlacementPolicy("phase16c", jitter=random.Random(seed))
    s = score_all(
        policy,
        req,
        {"A": ctx(blobs=reg, rtt={SUBMITTER: 50.0}), "B": ctx(blobs=reg, rtt={SUBMITTER: 5.0})},
    )
    # A: +0.20 locality, B: +0.10 * (0.975 - 0.75) network; difference 0.1775/1.05 > jitter.
    assert s["A"].score - s["B"].score >= (0.20 - 0.10 * 0.225 - 0.05) / 1.05 - 1e-12


def test_data_locality_counts_bytes_not_blobs():
    reg = registry(("small", 1 * GB, ("A",)), ("big", 3 * GB, ("B",)))
    req = request(DataLocality((h("small"), h("big"))))
    s = score_all(
        DefaultPlacementPolicy(),
        req,
        {"A": ctx(blobs=reg), "B": ctx(blobs=reg), "C": ctx(blobs=reg)},
    )
    assert s["A"].components.locality == pytest.approx(0.25)
    assert s["B"].components.locality == pytest.approx(0.75)
    assert s["C"].components.locality == 0.0


def test_data_locality_by_count_when_no_size_known():
    reg = registry(("e1", 0, ("A",)), ("e2", 0, ("B",)))
    req = request(DataLocality((h("e1"), h("e2"), h("unknown"))))
    s = score_all(DefaultPlacementPolicy(), req, {"A": ctx(blobs=reg)})
    assert s["A"].components.locality == pytest.approx(1 / 3)


def test_neutral_components_without_hints():
    o = offer_of(DefaultPlacementPolicy().score(request(), plain_node("A"), 0.5, EMPTY, 0.0))
    assert o.components.locality == 0.5 and o.components.network == 0.5
    assert o.components.jitter == 0.5


def test_colocate_prefer_did_and_region():
    tasks = {h("t1"): did("A")}
    req = request(ColocateWith(h("t1")), PreferDid(did("A")), PreferRegion("eu"))
    s = score_all(
        DefaultPlacementPolicy(),
        req,
        {"A": ctx(region="us", tasks=tasks), "B": ctx(region="eu", tasks=tasks)},
    )
    assert s["A"].components.locality == 1.0 and s["A"].components.network == 0.0
    assert s["B"].components.locality == 0.0 and s["B"].components.network == 1.0


def test_bandwidth_component():
    req = request(PreferHighBandwidth(100.0))
    s = score_all(
        DefaultPlacementPolicy(),
        req,
        {
            "A": ctx(bw={SUBMITTER: 100.0}),
            "B": ctx(bw={SUBMITTER: 150.0}),
            "C": ctx(bw={SUBMITTER: 400.0}),
            "D": ctx(bw={SUBMITTER: 99.0}),
            "E": ctx(),
        },
    )
    assert [s[n].components.network for n in "ABCDE"] == [0.5, 0.75, 1.0, 0.0, 0.0]


def test_unknown_rtt_defaults_to_100ms_and_self_is_zero():
    req = request(PreferLowLatency(200.0))
    policy = DefaultPlacementPolicy()
    o = offer_of(policy.score(req, plain_node("A"), 0.5, EMPTY, 0.0))
    assert o.components.network == pytest.approx(0.75)
    me = NodeState(SUBMITTER, NodeCapacity.from_totals(4, 4096, 10, 10))
    assert offer_of(policy.score(req, me, 0.5, EMPTY, 0.0)).components.network == 1.0


# -- gates and hard filters ------------------------------------------------------------------


def test_trust_gate():
    policy = DefaultPlacementPolicy()
    d = policy.score(request(), plain_node("A"), 0.2, EMPTY, 0.0)
    assert isinstance(d, Decline) and d.reason is DeclineReason.LOW_TRUST and not d
    assert isinstance(policy.score(request(), plain_node("A"), 0.3, EMPTY, 0.0), PlacementOffer)
    strict = DefaultPlacementPolicy(min_trust=0.9)
    assert strict.score(request(), plain_node("A"), 0.85, EMPTY, 0.0).reason is (
        DeclineReason.LOW_TRUST
    )
    with pytest.raises(ResourceError, match="trust"):
        policy.score(request(), plain_node("A"), 1.5, EMPTY, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    profiles, st.lists(hints, max_size=5), contexts(), st.floats(0.0, 0.2999), st.integers(0, 30)
)
def test_a_low_trust_executor_never_offers(profile, hs, context, trust, queue):
    req = request(*hs, profile=profile)
    node = plain_node("A", cores=64, mem=1 << 20, queue=queue)
    res = DefaultPlacementPolicy(jitter=random.Random(1)).score(req, node, trust, context, 0.0)
    assert isinstance(res, Decline) and res.reason is DeclineReason.LOW_TRUST


def test_avoid_did_excludes():
    d = DefaultPlacementPolicy().score(
        request(AvoidDid(did("A"))), plain_node("A"), 0.9, EMPTY, 0.0
    )
    assert d.reason is DeclineReason.AVOIDED
    assert isinstance(
        DefaultPlacementPolicy().score(
            request(AvoidDid(did("B"))), plain_node("A"), 0.9, EMPTY, 0.0
        ),
        PlacementOffer,
    )


@pytest.mark.parametrize(
    ("hs", "region", "ok"),
    [
        ((RequireRegion("eu"),), "eu", True),
        ((RequireRegion("eu"),), "us", False),
        ((RequireRegion("eu"),), None, False),
        ((RequireRegion("eu"), RequireRegion("us")), "eu", False),
        ((RequireRegion("eu"), RequireRegion("eu")), "eu", True),
    ],
)
def test_require_region(hs, region, ok):
    res = DefaultPlacementPolicy().score(
        request(*hs), plain_node("A"), 0.9, ctx(region=region), 0.0
    )
    assert isinstance(res, PlacementOffer) is ok
    if not ok:
        assert res.reason is DeclineReason.REGION


def test_minimize_transfer_limit():
    reg = registry(("x", 600 * 1024 * 1024, ("A",)), ("y", 400 * 1024 * 1024, ("B",)))
    blobs = (h("x"), h("y"))
    policy = DefaultPlacementPolicy()
    # A must fetch y (400 MiB), B must fetch x (600 MiB).
    req = request(MinimizeTransfer(blobs, 500))
    a = policy.score(req, plain_node("A"), 0.9, ctx(blobs=reg), 0.0)
    b = policy.score(req, plain_node("B"), 0.9, ctx(blobs=reg), 0.0)
    assert offer_of(a).components.locality == pytest.approx(0.6)
    assert b.reason is DeclineReason.TRANSFER_LIMIT and "MiB" in b.detail
    unknown = request(MinimizeTransfer((h("x"), h("nobody-has-it")), 10_000))
    d = policy.score(unknown, plain_node("A"), 0.9, ctx(blobs=reg), 0.0)
    assert d.reason is DeclineReason.TRANSFER_LIMIT and "unknown" in d.detail


def test_max_cost():
    policy = DefaultPlacementPolicy(base_cost=100)
    d = policy.score(request(max_cost=120), plain_node("A", queue=10), 0.9, EMPTY, 0.0)
    assert d.reason is DeclineReason.COST
    assert (
        offer_of(
            policy.score(request(max_cost=150), plain_node("A", queue=10), 0.9, EMPTY, 0.0)
        ).cost
        == 150
    )


def test_cost_rises_with_queue_depth():
    p = DefaultPlacementPolicy(base_cost=100)
    costs = [p.cost(q) for q in range(15)]
    assert costs[0] == 100 and costs[10] == costs[14] == 150
    assert costs == sorted(costs)


def test_capacity_component_uses_load():
    idle = plain_node("A", load=0.0)
    busy = plain_node("A", load=0.8)
    assert DefaultPlacementPolicy.capacity_component(idle) == 1.0
    assert DefaultPlacementPolicy.capacity_component(busy) == pytest.approx(0.6)
    assert DefaultPlacementPolicy.capacity_component(plain_node("A")) == 1.0


def test_queue_wait_overrides_estimate():
    node = NodeState(
        did("A"), NodeCapacity.from_totals(4, 4096, 10, 10), queue_depth=3, queue_wait_s=7.5
    )
    o = offer_of(DefaultPlacementPolicy().score(request(), node, 0.5, EMPTY, 100.0))
    assert o.estimated_start == 107.5


# -- scoring invariants ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    profiles,
    st.lists(hints, max_size=6),
    contexts(),
    st.floats(0.3, 1.0),
    st.integers(0, 40),
    st.none() | st.floats(0.0, 1.0),
    st.integers(0, 2**32),
    st.sampled_from(sorted(WEIGHT_SETS)),
)
def test_score_always_in_unit_interval(profile, hs, context, trust, queue, load, seed, wname):
    req = request(*hs, profile=profile)
    node = plain_node("A", cores=64, mem=1 << 20, queue=queue, load=load)
    res = DefaultPlacementPolicy(wname, jitter=random.Random(seed)).score(
        req, node, trust, context, 0.0
    )
    if isinstance(res, PlacementOffer):
        assert 0.0 <= res.score <= 1.0
        assert all(0.0 <= c <= 1.0 for c in res.components.as_tuple())
        assert res.score == pytest.approx(res.components.weighted(Weights.named(wname)))
    else:
        assert res.reason is not DeclineReason.LOW_TRUST


@given(components, st.sampled_from(sorted(WEIGHT_SETS)))
def test_weighted_components_in_unit_interval(comps, wname):
    assert 0.0 <= comps.weighted(WEIGHT_SETS[wname]) <= 1.0


def test_jitter_is_deterministic_per_seed_and_validated():
    req, node = request(), plain_node("A")
    a = DefaultPlacementPolicy(jitter=random.Random(42)).score(req, node, 0.5, EMPTY, 0.0)
    b = DefaultPlacementPolicy(jitter=random.Random(42)).score(req, node, 0.5, EMPTY, 0.0)
    assert a == b
    assert a.components.jitter == random.Random(42).random()
    fixed = DefaultPlacementPolicy(jitter=lambda: 0.25).score(req, node, 0.5, EMPTY, 0.0)
    assert fixed.components.jitter == 0.25
    with pytest.raises(ResourceError, match="jitter"):
        DefaultPlacementPolicy(jitter=lambda: 1.5).score(req, node, 0.5, EMPTY, 0.0)
    with pytest.raises(ResourceError, match="jitter"):
        DefaultPlacementPolicy(jitter=lambda: float("nan")).score(req, node, 0.5, EMPTY, 0.0)


# -- weights and configuration ---------------------------------------------------------------


def test_weight_sets():
    a = Weights.named("phase16a")
    assert a.as_tuple() == pytest.approx((0.4, 0.3, 0.2, 0.0, 0.0, 0.1))
    c = Weights.named("phase16c")
    assert c.as_tuple() == pytest.approx(
        tuple(x / 1.05 for x in (0.30, 0.25, 0.15, 0.20, 0.10, 0.05))
    )
    assert c.total() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="phase99"):
        Weights.named("phase99")
    with pytest.raises(ResourceError, match="weights.queue"):
        Weights(1, 1, -1)
    with pytest.raises(ResourceError, match="positive"):
        Weights(0, 0, 0)


def test_custom_weights_only_trust():
    p = DefaultPlacementPolicy(Weights(trust=1, capacity=0, queue=0))
    o = offer_of(p.score(request(), plain_node("A", queue=9), 0.8, EMPTY, 0.0))
    assert o.score == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"min_trust": 2.0}, "scheduler.min_trust"),
        ({"base_cost": -1}, "scheduler.base_cost"),
        ({"queue_saturation": 0}, "scheduler.queue_saturation"),
        ({"max_cost_multiplier": 0.5}, "scheduler.max_cost_multiplier"),
        ({"jitter": 3}, "scheduler.jitter"),
        ({"weights": 3}, "scheduler.weights"),
    ],
)
def test_policy_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as e:
        DefaultPlacementPolicy(**kwargs)
    assert e.value.key == key


# -- plugging in a policy --------------------------------------------------------------------


class LocalFirstPolicy:
    """A cooperative's own policy: only nodes in its region, scored by the default's parts."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.inner = DefaultPlacementPolicy(Weights(trust=1, capacity=1, queue=1))

    def score(self, request, node, trust, context, now):
        if context.region != self.region:
            return Decline(DeclineReason.REGION, f"{self.region} members only")
        return self.inner.score(request, node, trust, context, now)


def test_custom_policy_plugs_in():
    p = LocalFirstPolicy("eu")
    assert isinstance(p, PlacementPolicy) and isinstance(DefaultPlacementPolicy(), PlacementPolicy)
    assert p.score(request(), plain_node("A"), 0.9, ctx(region="us"), 0.0).reason is (
        DeclineReason.REGION
    )
    assert isinstance(
        p.score(request(), plain_node("A"), 0.9, ctx(region="eu"), 0.0), PlacementOffer
    )


# -- the task's own data (module, inputs) counts without hints ---------------------------------


def data_request(*hints, data=()):
    return PlacementRequest(
        h("task"), ResourceProfile.minimal(), SUBMITTER, tuple(hints), data=tuple(data)
    )


def test_the_tasks_inputs_count_for_locality_by_bytes_without_a_hint():
    # The request states sizes; the holders come from the executor's blob registry.
    reg = registry(("module", 0, ("A", "B")), ("input", 0, ("B",)))
    req = data_request(data=[(h("module"), 1_000), (h("input"), 9_000)])
    s = score_all(
        DefaultPlacementPolicy(),
        req,
        {"A": ctx(blobs=reg), "B": ctx(blobs=reg), "C": ctx(blobs=reg)},
    )
    assert s["A"].components.locality == pytest.approx(0.1)
    assert s["B"].components.locality == pytest.approx(1.0)
    assert s["C"].components.locality == 0.0
    assert s["B"].score > s["A"].score > s["C"].score


def test_stated_sizes_weigh_blobs_the_registry_does_not_size():
    req = data_request(data=[(h("input"), 5 * GB)])
    held = registry(("input", 5 * GB, ("A",)))
    s = score_all(DefaultPlacementPolicy(), req, {"A": ctx(blobs=held), "C": ctx()})
    assert s["A"].components.locality == 1.0 and s["C"].components.locality == 0.0


def test_minimize_transfer_limits_the_tasks_own_data_too():
    reg = registry(("input", 0, ("A",)))
    req = data_request(MinimizeTransfer((), 100), data=[(h("input"), 300 * 1024 * 1024)])
    a = DefaultPlacementPolicy().score(req, plain_node("A"), 0.7, ctx(blobs=reg), 0.0)
    b = DefaultPlacementPolicy().score(req, plain_node("B"), 0.7, ctx(blobs=reg), 0.0)
    assert isinstance(a, PlacementOffer)
    assert isinstance(b, Decline) and "would transfer 314572800 bytes" in b.detail


def test_request_data_is_validated_and_round_trips():
    req = data_request(data=[(h("input"), 42)])
    assert PlacementRequest.from_dict(req.to_dict()) == req
    assert "data" not in request().to_dict()  # absent when empty: old peers see no new key
    with pytest.raises(ResourceError, match=r"placement_request.data\[0\].size"):
        data_request(data=[(h("input"), -1)])
