"""BlobLocations alone: who holds what, expiry per holder, and the live view placement reads."""

from __future__ import annotations

import hashlib
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node.blobs.locations import (
    EXPIRY_SLACK_S,
    BlobLocations,
    LiveBlobRegistry,
    ttl_for,
)
from icn_node.scheduler import (
    BlobRegistry,
    DataLocality,
    DefaultPlacementPolicy,
    LocalityContext,
    NodeCapacity,
    NodeState,
    PlacementRequest,
    ResourceProfile,
)

A, B, C = "did:a", "did:b", "did:c"


def h(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(4, "big")).digest()


def test_holders_sizes_and_a_conflicting_size_is_refused():
    loc = BlobLocations()
    assert loc.add(h(1), B, 10, 0.0) and loc.add(h(1), A, 10, 1.0)
    assert loc.holders(h(1)) == [A, B] and loc.size(h(1)) == 10
    assert loc.add(h(1), C, 11, 2.0) is False
    assert loc.holders(h(1)) == [A, B]
    assert loc.holders(h(2)) == [] and loc.size(h(2)) is None and loc.lookup(h(2)) is None
    assert loc.add(h(1), A, 10, 3.0)  # a refresh: no new location
    assert len(loc) == 2 and loc.blob_count == 1


def test_an_authoritative_size_replaces_the_holders_that_claimed_another():
    loc = BlobLocations()
    loc.add(h(1), A, 10, 0.0)
    loc.add(h(1), B, 10, 0.0)
    assert loc.add(h(1), C, 12, 1.0, authoritative=True)
    assert loc.holders(h(1)) == [C] and loc.size(h(1)) == 12 and len(loc) == 1


def test_remove_forgets_one_holder_and_the_blob_with_its_last():
    loc = BlobLocations()
    loc.add(h(1), A, 10, 0.0)
    loc.add(h(1), B, 10, 0.0)
    assert loc.remove(h(1), A) and not loc.remove(h(1), A) and not loc.remove(h(1), "did:x")
    assert loc.holders(h(1)) == [B]
    assert loc.remove(h(1), B)
    assert loc.blob_count == 0 and len(loc) == 0 and not loc.remove(h(1), B)


def test_each_holder_expires_after_three_of_its_own_refresh_periods():
    loc = BlobLocations(ttl_s=ttl_for(600.0))
    loc.set_ttl(A, ttl_for(10.0))  # A refreshes every 10 s
    loc.add(h(1), A, 5, 100.0)
    loc.add(h(1), B, 5, 100.0)  # B, the default: every 600 s
    assert ttl_for(10.0) == 30.0 + EXPIRY_SLACK_S
    loc.tick(100.0 + ttl_for(10.0))
    assert loc.holders(h(1)) == [A, B]
    loc.tick(100.0 + ttl_for(10.0) + 1.0)
    # Lookups skip an expired location at once; expire() frees it.
    assert loc.holders(h(1)) == [B] and len(loc) == 2
    assert loc.expire(102.0 + ttl_for(10.0)) == 1 and len(loc) == 1
    assert loc.expire(101.0 + ttl_for(600.0)) == 1
    assert loc.holders(h(1)) == [] and loc.blob_count == 0
    assert loc.add(h(1), C, 6, 2000.0)  # forgotten entirely: a new size is no conflict


def test_a_conflicting_size_is_accepted_once_the_old_holders_expired():
    loc = BlobLocations(ttl_s=10.0)
    loc.add(h(1), A, 5, 0.0)
    assert not loc.add(h(1), B, 6, 5.0)
    assert loc.add(h(1), B, 6, 11.0)  # A expired (not yet swept): B's size stands
    assert loc.holders(h(1)) == [B] and loc.size(h(1)) == 6 and len(loc) == 1


def test_a_holder_that_never_expires():
    loc = BlobLocations(ttl_s=10.0)
    loc.set_ttl(A, math.inf)
    loc.add(h(1), A, 5, 0.0)
    assert loc.expire(1e9) == 0 and loc.holders(h(1)) == [A]


def test_entries_give_the_age_of_each_holders_last_announcement():
    loc = BlobLocations()
    loc.add(h(1), A, 5, 100.0)
    loc.add(h(1), B, 5, 130.0)
    loc.tick(160.0)
    assert loc.entries(h(1)) == [(A, 60.0), (B, 30.0)]
    assert loc.entries(h(2)) == []


def test_summary_lists_blobs_by_hash_with_holder_counts():
    loc = BlobLocations()
    for i in range(5):
        for did in (A, B)[: 1 + i % 2]:
            loc.add(h(i), did, i, 0.0)
    rows = loc.summary(3)
    assert [r[0] for r in rows] == sorted(h(i) for i in range(5))[:3]
    assert {r[0]: (r[1], r[2]) for r in loc.summary(10)} == {h(i): (i, 1 + i % 2) for i in range(5)}


def test_the_view_is_a_live_blob_registry():
    loc = BlobLocations(ttl_s=10.0)
    view = loc.view()
    assert isinstance(view, BlobRegistry) and isinstance(view, LiveBlobRegistry)
    assert loc.view() is view and loc.snapshot() is view
    assert view.lookup(h(1)) is None and len(view) == 0
    loc.add(h(1), A, 10, 0.0)
    loc.add(h(1), B, 10, 5.0)
    loc.add(h(2), A, 3, 5.0)
    assert view.lookup(h(1)) == (10, frozenset({A, B}))
    assert view.size(h(1)) == 10 and view.holders(h(2)) == {A}
    assert len(view) == 3 and view.blob_count == 2
    assert view == loc.frozen()
    assert view.locations() == loc.frozen().locations()
    assert BlobRegistry.from_dict(view.to_dict()) == loc.frozen()
    loc.tick(12.0)  # A's location of h(1), heard at 0, expired
    assert view.holders(h(1)) == {B} and view.holders(h(2)) == {A} and len(view) == 2
    loc.tick(16.0)
    assert view.lookup(h(2)) is None and len(view) == 0


def test_placement_scores_data_locality_through_the_view():
    loc = BlobLocations()
    loc.add(h(1), A, 1000, 0.0)
    ctx = LocalityContext(blobs=loc.view())
    req = PlacementRequest(
        task_hash=h(9),
        profile=ResourceProfile.minimal(),
        submitter=C,
        locality_hints=(DataLocality((h(1),)),),
    )
    cap = NodeCapacity.from_totals(4.0, 8192, 10_000, 1000.0)
    policy = DefaultPlacementPolicy()
    here = policy.score(req, NodeState(did=A, capacity=cap), 0.8, ctx, 0.0)
    there = policy.score(req, NodeState(did=B, capacity=cap), 0.8, ctx, 0.0)
    assert here.components.locality == 1.0 and there.components.locality == 0.0
    loc.add(h(1), B, 1000, 1.0)  # B announces it: the next placement sees it
    again = policy.score(req, NodeState(did=B, capacity=cap), 0.8, ctx, 1.0)
    assert again.components.locality == 1.0


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "tick", "expire"]),
        st.integers(0, 5),  # blob
        st.sampled_from([A, B, C]),
        st.integers(0, 3),  # size
        st.floats(0, 30),  # time step
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_matches_a_plain_model(steps):
    """Against a dict of dicts with float times: same holders, sizes and counts."""
    ttl = 20.0
    loc = BlobLocations(ttl_s=ttl)
    model: dict[bytes, tuple[int, dict[str, float]]] = {}
    now = 0.0

    def live(seen: dict[str, float]) -> list[str]:
        # stored times are rounded up to the second: a location never expires early
        return sorted(d for d, t in seen.items() if now - math.ceil(t) <= ttl)

    for op, b, did, size, step in steps:
        now += step
        key = h(b)
        entry = model.get(key)
        if op == "add":
            if entry is not None and entry[0] != size and live(entry[1]):
                assert not loc.add(key, did, size, now)
                continue
            assert loc.add(key, did, size, now)
            if entry is None or entry[0] != size:
                entry = model[key] = (size, {})
            entry[1][did] = now
        elif op == "remove":
            assert loc.remove(key, did) == (entry is not None and did in entry[1])
            if entry is not None and entry[1].pop(did, None) is not None and not entry[1]:
                del model[key]
        elif op == "tick":
            loc.tick(now)
        else:
            loc.expire(now)
            for k in list(model):
                model[k] = (model[k][0], {d: model[k][1][d] for d in live(model[k][1])})
                if not model[k][1]:
                    del model[k]
        loc.tick(now)
        for k in {h(i) for i in range(6)}:
            e = model.get(k)
            assert loc.holders(k) == (live(e[1]) if e else [])
            assert loc.size(k) == (e[0] if e and live(e[1]) else None)
        assert len(loc) == sum(len(s) for _, s in model.values())
