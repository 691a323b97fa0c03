"""The documents of the scheduler's value types, pinned: these are wire and JSON-RPC shapes.

Each case is a value with its CBOR-form and JSON-form documents written out. The documents are
the ones the hand-written ``to_dict`` methods produced before the codec derived them; a change
here is a protocol change. Round trips through real cbor2/json bytes follow, over the
hypothesis strategies of sched_helpers.
"""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sched_helpers import capacities, cc, components, contexts, did, h, hints, profiles, registry

from icn_node.codec import from_doc, to_doc
from icn_node.scheduler import (
    AvoidDid,
    BlobLocation,
    ColocateWith,
    ComputeCapability,
    DataLocality,
    Decline,
    DeclineReason,
    Ewma,
    GpuDevice,
    GpuSpec,
    LocalityContext,
    LocalityHint,
    MinimizeTransfer,
    NodeCapacity,
    NodeMetrics,
    NodeState,
    PlacementOffer,
    PlacementRequest,
    PreferDid,
    PreferHighBandwidth,
    PreferLowLatency,
    PreferRegion,
    RankedOffer,
    RejectedOffer,
    RequireRegion,
    Reservation,
    ResourceProfile,
    ScoreComponents,
    Weights,
)

A, B, S = did("A"), did("B"), did("S")
X, Y, T = h("x"), h("y"), h("t")

PROFILE = ResourceProfile(cpu_cores=2.5, memory_mb=4096, gpu_spec=GpuSpec(8.0, cc("sm_100")))
PROFILE_DOC = {
    "cpu_cores": 2.5,
    "memory_mb": 4096,
    "storage_mb": None,
    "network_mbps": None,
    "gpu_spec": {"memory_gb": 8.0, "compute_capability": "sm_100", "device_count": 1},
    "duration_estimate": None,
}
COMPONENTS = ScoreComponents(1.0, 0.0, 0.5, 0.5, 0.5, 0.25)
COMPONENTS_DOC = {
    "trust": 1.0,
    "capacity": 0.0,
    "queue": 0.5,
    "locality": 0.5,
    "network": 0.5,
    "jitter": 0.25,
}
OFFER = PlacementOffer(T, A, 0.7, COMPONENTS, 125, 1300.0, 1000.0)


def offer_doc(task):
    return {
        "task_hash": task,
        "executor": A,
        "score": 0.7,
        "components": COMPONENTS_DOC,
        "cost": 125,
        "estimated_start": 1300.0,
        "offered_at": 1000.0,
    }


CAPACITY = NodeCapacity.from_totals(
    16, 65536, 10_000, 1000.0, [GpuDevice("0", "A100", 40, cc("sm_80"))], updated_at=3.5
)
CAPACITY.reserve(ResourceProfile(cpu_cores=1.0, memory_mb=1024))
CAPACITY_DOC = {
    "cpu_cores_total": 16.0,
    "memory_mb_total": 65536,
    "storage_mb_total": 10_000,
    "cpu_cores_available": 15.0,
    "memory_mb_available": 64512,
    "storage_mb_available": 10_000,
    "network_mbps": 1000.0,
    "gpu_devices": [
        {
            "device_id": "0",
            "device_name": "A100",
            "memory_gb": 40.0,
            "compute_capability": "sm_80",
            "available": True,
        }
    ],
    "updated_at": 3.5,
}


EXEC_REQUEST_DOC = {
    "task_hash": T,
    "profile": PROFILE_DOC,
    "submitter": S,
    "locality_hints": [],
    "max_cost": None,
    "requested_at": 2.0,
    "runtime": "exec",  # present only when not "wasm"
}


def context_doc(hexed):
    def b(x):
        return x.hex() if hexed else x

    return {
        "region": "eu",
        "blobs": {
            "blobs": sorted(
                [
                    {"blob_hash": b(X), "size_bytes": 10, "holders": [A, B]},
                    {"blob_hash": b(Y), "size_bytes": 0, "holders": [B]},
                ],
                key=lambda e: e["blob_hash"],
            )
        },
        "rtt_ms": {A: 5.0, B: 7.5},
        "bandwidth_mbps": {A: 900.0},
        "task_locations": [[b(T), A]],
    }


# (value, CBOR-form document, JSON-form document); None: the same as the CBOR form.
CASES = [
    (ComputeCapability(10, 0), "sm_100", None),
    (
        GpuDevice("gpu-0", "NVIDIA H100", 80.0, cc("sm_90"), available=False),
        {
            "device_id": "gpu-0",
            "device_name": "NVIDIA H100",
            "memory_gb": 80.0,
            "compute_capability": "sm_90",
            "available": False,
        },
        None,
    ),
    (
        GpuSpec(24.0, cc("sm_75"), 2),
        {"memory_gb": 24.0, "compute_capability": "sm_75", "device_count": 2},
        None,
    ),
    (PROFILE, PROFILE_DOC, None),
    (
        ResourceProfile.minimal(),
        {
            "cpu_cores": 0.1,
            "memory_mb": 128,
            "storage_mb": None,
            "network_mbps": None,
            "gpu_spec": None,
            "duration_estimate": None,
        },
        None,
    ),
    (
        Reservation(3, PROFILE, ("a", "b")),
        {"reservation_id": 3, "profile": PROFILE_DOC, "gpu_device_ids": ["a", "b"]},
        None,
    ),
    (CAPACITY, CAPACITY_DOC, None),
    (PreferDid(A), {"kind": "prefer_did", "did": A}, None),
    (AvoidDid(A), {"kind": "avoid_did", "did": A}, None),
    (PreferRegion("eu"), {"kind": "prefer_region", "region": "eu"}, None),
    (RequireRegion("us"), {"kind": "require_region", "region": "us"}, None),
    (
        DataLocality((X, Y)),
        {"kind": "data_locality", "blobs": [X, Y]},
        {"kind": "data_locality", "blobs": [X.hex(), Y.hex()]},
    ),
    (
        ColocateWith(T),
        {"kind": "colocate_with", "task": T},
        {"kind": "colocate_with", "task": T.hex()},
    ),
    (PreferLowLatency(12.5), {"kind": "prefer_low_latency", "max_rtt_ms": 12.5}, None),
    (PreferHighBandwidth(100.0), {"kind": "prefer_high_bandwidth", "min_mbps": 100.0}, None),
    (
        MinimizeTransfer((X,), 512),
        {"kind": "minimize_transfer", "blobs": [X], "max_transfer_mb": 512},
        {"kind": "minimize_transfer", "blobs": [X.hex()], "max_transfer_mb": 512},
    ),
    (
        BlobLocation(X, A, 12345),
        {"blob_hash": X, "node_did": A, "size_bytes": 12345},
        {"blob_hash": X.hex(), "node_did": A, "size_bytes": 12345},
    ),
    (
        registry(("x", 10, ("B", "A")), ("y", 0, ("B",))),
        context_doc(hexed=False)["blobs"],
        context_doc(hexed=True)["blobs"],
    ),
    (
        LocalityContext(
            region="eu",
            blobs=registry(("x", 10, ("B", "A")), ("y", 0, ("B",))),
            rtt_ms={B: 7.5, A: 5.0},
            bandwidth_mbps={A: 900.0},
            task_locations={T: A},
        ),
        context_doc(hexed=False),
        context_doc(hexed=True),
    ),
    (
        LocalityContext.empty(),
        {
            "region": None,
            "blobs": {"blobs": []},
            "rtt_ms": {},
            "bandwidth_mbps": {},
            "task_locations": [],
        },
        None,
    ),
    (
        PlacementRequest(T, PROFILE, S, (ColocateWith(X), AvoidDid(B)), max_cost=150),
        {
            "task_hash": T,
            "profile": PROFILE_DOC,
            "submitter": S,
            "locality_hints": [
                {"kind": "colocate_with", "task": X},
                {"kind": "avoid_did", "did": B},
            ],
            "max_cost": 150,
            "requested_at": 0.0,
        },
        {
            "task_hash": T.hex(),
            "profile": PROFILE_DOC,
            "submitter": S,
            "locality_hints": [
                {"kind": "colocate_with", "task": X.hex()},
                {"kind": "avoid_did", "did": B},
            ],
            "max_cost": 150,
            "requested_at": 0.0,
        },
    ),
    (
        PlacementRequest(T, PROFILE, S, requested_at=2.0, runtime="exec"),
        EXEC_REQUEST_DOC,
        EXEC_REQUEST_DOC | {"task_hash": T.hex()},
    ),
    (
        NodeState(A, CAPACITY.snapshot(), 3, 0.25, None),
        {
            "did": A,
            "capacity": CAPACITY_DOC,
            "queue_depth": 3,
            "load": 0.25,
            "queue_wait_s": None,
        },
        None,
    ),
    (COMPONENTS, COMPONENTS_DOC, None),
    (OFFER, offer_doc(T), offer_doc(T.hex())),
    (
        Decline(DeclineReason.TRANSFER_LIMIT, "too far"),
        {"reason": "transfer_limit", "detail": "too far"},
        None,
    ),
    (
        Weights(trust=2.0, capacity=1.0, queue=1.0),
        {
            "trust": 2.0,
            "capacity": 1.0,
            "queue": 1.0,
            "locality": 0.0,
            "network": 0.0,
            "jitter": 0.0,
        },
        None,
    ),
    (
        NodeMetrics("a", 5.0, 0.25, 10, 100),
        {"address": "a", "timestamp": 5.0, "cpu_load": 0.25, "memory_used": 10, "memory_max": 100},
        None,
    ),
    (Ewma(0.5, 0.25), {"value": 0.5, "alpha": 0.25}, None),
    (
        RankedOffer(OFFER, 0.6, 0.9),
        {"offer": offer_doc(T), "score": 0.6, "trust": 0.9},
        {"offer": offer_doc(T.hex()), "score": 0.6, "trust": 0.9},
    ),
    (RejectedOffer(None, "malformed"), {"executor": None, "reason": "malformed"}, None),
]


@pytest.mark.parametrize(("value", "doc", "json_doc"), CASES, ids=lambda c: type(c).__name__)
def test_documents_are_pinned(value, doc, json_doc):
    json_doc = doc if json_doc is None else json_doc
    assert to_doc(value) == doc
    assert to_doc(value, json=True) == json_doc
    assert from_doc(type(value), doc) == value
    assert from_doc(type(value), json_doc) == value  # the CBOR form's reader takes both
    assert from_doc(type(value), json_doc, json=True) == value
    if hasattr(value, "to_dict"):
        assert value.to_dict() == doc and value.to_dict(json_safe=True) == json_doc
        assert type(value).from_dict(json_doc) == value
    if isinstance(value, LocalityHint):
        assert LocalityHint.from_dict(doc) == value


def test_every_type_with_a_document_is_pinned():
    import icn_node.scheduler as sched

    pinned = {type(v) for v, _, _ in CASES}
    with_docs = {
        t
        for n in sched.__all__
        if isinstance(t := getattr(sched, n), type) and hasattr(t, "from_dict")
    }
    with_docs.discard(LocalityHint)  # the family's base: each variant is pinned
    assert with_docs <= pinned, with_docs - pinned


def test_the_json_form_is_text_only():
    # The JSON reader takes no bytes: a JSON document cannot carry them.
    from icn_node.errors import CodecError

    with pytest.raises(CodecError, match=r"colocate_with\.task: expected hex text, got bytes"):
        from_doc(ColocateWith, {"kind": "colocate_with", "task": T}, json=True)


def via_cbor(v):
    return from_doc(type(v), cbor2.loads(cbor2.dumps(to_doc(v))))


def via_json(v):
    return from_doc(type(v), json.loads(json.dumps(to_doc(v, json=True))), json=True)


def round_trips(v):
    assert via_cbor(v) == v
    assert via_json(v) == v


@settings(max_examples=100, deadline=None)
@given(profiles)
def test_profiles_round_trip(p):
    round_trips(p)
    round_trips(Reservation(1, p))


@settings(max_examples=100, deadline=None)
@given(hints)
def test_hints_round_trip(x):
    round_trips(x)
    assert from_doc(LocalityHint, cbor2.loads(cbor2.dumps(to_doc(x)))) == x


@settings(max_examples=50, deadline=None)
@given(capacities(), st.integers(0, 100), st.none() | st.floats(0.0, 1.0))
def test_capacities_and_node_states_round_trip(c, depth, load):
    round_trips(c)
    round_trips(NodeState(A, c, depth, load))


@settings(max_examples=50, deadline=None)
@given(contexts())
def test_contexts_round_trip(c):
    round_trips(c)


@settings(max_examples=50, deadline=None)
@given(
    profiles,
    st.lists(hints, max_size=4),
    st.none() | st.integers(0, 2**53),
    st.sampled_from(["wasm", "exec"]),
)
def test_requests_round_trip(p, hs, max_cost, runtime):
    round_trips(PlacementRequest(T, p, S, tuple(hs), max_cost=max_cost, runtime=runtime))


@settings(max_examples=50, deadline=None)
@given(components, st.integers(0, 10_000), st.floats(0.0, 1e6))
def test_offers_round_trip(c, cost, start):
    offer = PlacementOffer(T, A, 0.5, c, cost, start, 0.0)
    round_trips(offer)
    round_trips(RankedOffer(offer, 0.5, 0.5))
