"""The submitter's ranking: its own trust, range checks, a deterministic total order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sched_helpers import components, did, h

from icn_node.scheduler import PlacementOffer, ScoreComponents, Weights, rank_offers

TASK = h("task")


def offer(
    name: str,
    comps: ScoreComponents,
    *,
    cost: int = 100,
    start: float = 0.0,
    score: float = 0.5,
    task: bytes = TASK,
) -> PlacementOffer:
    return PlacementOffer(task, did(name), score, comps, cost, start, 0.0)


MID = ScoreComponents(0.5, 0.5, 0.5, 0.5, 0.5, 0.5)


def test_claimed_trust_and_score_gain_nothing():
    honest = offer("A", MID, score=0.5)
    liar = offer("B", ScoreComponents(1.0, 0.5, 0.5, 0.5, 0.5, 0.5), score=1.0)
    table = {did("A"): 0.6, did("B"): 0.6}
    r = rank_offers([liar, honest], table)
    assert [x.trust for x in r] == [0.6, 0.6]
    assert r.ranked[0].score == r.ranked[1].score
    # Equal scores and costs: the tie goes to the smaller DID, not to the liar's claim.
    assert [x.offer.executor for x in r] == [did("A"), did("B")]
    # The recomputed score uses the submitter's figure for trust.
    w = Weights.named("phase16c")
    assert r.ranked[0].score == pytest.approx(0.6 * w.trust + 0.5 * (1 - w.trust))


def test_submitter_trust_decides_and_unknown_executors_are_rejected():
    a, b, c = offer("A", MID), offer("B", MID), offer("C", MID)
    r = rank_offers([a, b, c], {did("A"): 0.4, did("B"): 0.9, did("C"): 0.1})
    assert [x.offer.executor for x in r] == [did("B"), did("A")]
    assert [(x.executor, x.reason.split(":")[0]) for x in r.rejected] == [(did("C"), "untrusted")]
    r2 = rank_offers([a], {})
    assert not r2.ranked and r2.best is None and r2.rejected[0].reason.startswith("untrusted")


def test_out_of_range_and_malformed_offers_are_rejected():
    good = offer("A", MID).to_dict()
    bad = dict(good, executor=did("B"), components=dict(good["components"], capacity=1.5))
    nan = dict(good, executor=did("C"), components=dict(good["components"], queue=float("nan")))
    neg = dict(good, executor=did("D"), cost=-1)
    junk = {"hello": "world"}
    r = rank_offers([good, bad, nan, neg, junk], {did(x): 0.9 for x in "ABCD"})
    assert [x.offer.executor for x in r] == [did("A")]
    reasons = {x.executor: x.reason for x in r.rejected}
    assert "components.capacity" in reasons[did("B")]
    assert "components.queue" in reasons[did("C")]
    assert "placement_offer.cost" in reasons[did("D")]
    assert reasons[None].startswith("malformed")


def test_out_of_range_object_built_around_validation_is_rejected():
    o = offer("A", ScoreComponents(0.5, 0.5, 0.5, 0.5, 0.5, 0.5))  # not the shared MID
    object.__setattr__(o.components, "locality", 7.0)
    r = rank_offers([o], {did("A"): 0.9})
    assert not r.ranked and "components.locality" in r.rejected[0].reason


def test_wrong_task_and_max_cost():
    r = rank_offers(
        [offer("A", MID, task=h("other")), offer("B", MID, cost=500), offer("C", MID, cost=200)],
        {did(x): 0.9 for x in "ABC"},
        task_hash=TASK,
        max_cost=200,
    )
    assert [x.offer.executor for x in r] == [did("C")]
    assert [x.reason.split(":")[0] for x in r.rejected] == ["wrong task", "too expensive"]


def test_duplicates_keep_the_best_from_each_executor():
    worse = offer("A", ScoreComponents(0.5, 0.1, 0.5, 0.5, 0.5, 0.5))
    better = offer("A", MID)
    for order in ([worse, better], [better, worse]):
        r = rank_offers(order, {did("A"): 0.9})
        assert [x.offer for x in r] == [better]
        assert r.rejected[0].reason.startswith("duplicate")


def test_tie_breaks_cost_then_start_then_did():
    r = rank_offers(
        [
            offer("A", MID, cost=110),
            offer("B", MID, cost=100, start=5.0),
            offer("C", MID, cost=100, start=1.0),
            offer("D", MID, cost=100, start=1.0),
        ],
        {did(x): 0.9 for x in "ABCD"},
    )
    assert [x.offer.executor for x in r] == [did("C"), did("D"), did("B"), did("A")]


offers_st = st.lists(
    st.builds(
        offer,
        st.sampled_from("ABCDEF"),
        components,
        cost=st.integers(0, 300),
        start=st.sampled_from([0.0, 1.0, 2.0]),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    offers_st,
    st.randoms(use_true_random=False),
    st.dictionaries(st.sampled_from([did(x) for x in "ABCDEF"]), st.floats(0.0, 1.0)),
)
def test_ranking_is_a_total_order_independent_of_input_order(offers, rnd, table):
    first = rank_offers(offers, table)
    shuffled = list(offers)
    rnd.shuffle(shuffled)
    second = rank_offers(shuffled, table)
    assert first == second
    scores = [x.score for x in first]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    executors = [x.offer.executor for x in first]
    assert len(executors) == len(set(executors))
    assert all(x.trust >= 0.3 for x in first)
