"""Every public value type round-trips through to_dict/from_dict via json and cbor2, and
from_dict names the field it rejects."""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import given, settings
from sched_helpers import cc, components, did, h, hints, profiles, registry

from icn_node.errors import CodecError, ResourceError
from icn_node.scheduler import (
    AvoidDid,
    BlobLocation,
    BlobRegistry,
    ColocateWith,
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


def via_json(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict(json_safe=True))))


def via_cbor(obj):
    return type(obj).from_dict(cbor2.loads(cbor2.dumps(obj.to_dict())))


def _capacity():
    c = NodeCapacity.from_totals(
        16,
        65536,
        10_000,
        1000.0,
        [
            GpuDevice("0", "A100", 40, cc("sm_80")),
            GpuDevice("1", "T4", 16, cc("sm_75"), available=False),
        ],
        updated_at=3.5,
    )
    c.reserve(ResourceProfile.gpu(24, "sm_80"))  # the held A100 shows as unavailable
    return c


SAMPLES = [
    GpuDevice("gpu-0", "NVIDIA H100", 80.0, cc("sm_90")),
    GpuSpec(24.0, cc("sm_75"), 2),
    ResourceProfile.minimal(),
    ResourceProfile(
        cpu_cores=2.5,
        memory_mb=4096,
        storage_mb=100,
        network_mbps=50.0,
        gpu_spec=GpuSpec(8.0, cc("sm_100")),
        duration_estimate=3600.0,
    ),
    Reservation(3, ResourceProfile.gpu(8, "sm_80", 2), ("a", "b")),
    _capacity(),
    PreferDid(did("A")),
    AvoidDid(did("B")),
    PreferRegion("eu"),
    RequireRegion("us"),
    DataLocality((h("x"), h("y"))),
    ColocateWith(h("t")),
    PreferLowLatency(12.5),
    PreferHighBandwidth(100.0),
    MinimizeTransfer((h("x"),), 512),
    BlobLocation(h("x"), did("A"), 12345),
    registry(("x", 10, ("A", "B")), ("y", 0, ("C",))),
    LocalityContext(
        region="eu",
        blobs=registry(("x", 10, ("A",))),
        rtt_ms={did("A"): 5.0},
        bandwidth_mbps={did("A"): 900.0},
        task_locations={h("t"): did("A")},
    ),
    LocalityContext.empty(),
    PlacementRequest(
        h("task"),
        ResourceProfile.gpu(24, "sm_70"),
        did("S"),
        (DataLocality((h("x"),)), AvoidDid(did("Z"))),
        max_cost=150,
        requested_at=17.0,
    ),
    NodeState(did("A"), NodeCapacity.from_totals(4, 4096, 10, 10), 3, 0.25, 12.0),
    ScoreComponents(0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
    PlacementOffer(
        h("task"), did("A"), 0.7, ScoreComponents(1, 0, 0.5, 0.5, 0.5, 0.25), 125, 1300.0, 1000.0
    ),
    Decline(DeclineReason.TRANSFER_LIMIT, "too far"),
    Weights.named("phase16c"),
    NodeMetrics("a", 5.0, 0.25, 10, 100),
    Ewma(0.5, 0.25),
    RankedOffer(
        PlacementOffer(h("task"), did("A"), 0.7, ScoreComponents(1, 0, 0, 0, 0, 0), 1, 2.0, 1.0),
        0.5,
        0.75,
    ),
    RejectedOffer(None, "malformed: no executor"),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_round_trip_json_and_cbor(obj):
    assert via_json(obj) == obj
    assert via_cbor(obj) == obj
    if isinstance(obj, LocalityHint):
        assert LocalityHint.from_dict(obj.to_dict()) == obj


def test_every_public_value_type_is_covered():
    import icn_node.scheduler as sched

    covered = {type(o) for o in SAMPLES}
    value_types = {
        getattr(sched, n)
        for n in sched.__all__
        if isinstance(getattr(sched, n), type) and hasattr(getattr(sched, n), "from_dict")
    }
    value_types.discard(LocalityHint)  # abstract base: its subclasses are covered
    assert value_types <= covered, value_types - covered


def test_json_form_uses_hex_and_wire_form_bytes():
    o = ColocateWith(h("t"))
    assert o.to_dict() == {"kind": "colocate_with", "task": h("t")}
    assert o.to_dict(json_safe=True) == {"kind": "colocate_with", "task": h("t").hex()}


def test_capacity_round_trip_keeps_reserved_gpu_unavailable():
    c = via_json(_capacity())
    assert [d.available for d in c.gpu_devices] == [False, False]
    assert c.cpu_cores_available == 15.0 and c.reservations == ()


@settings(max_examples=100, deadline=None)
@given(profiles)
def test_profiles_round_trip(p):
    assert via_json(p) == p and via_cbor(p) == p


@settings(max_examples=100, deadline=None)
@given(hints)
def test_hints_round_trip(hint):
    assert via_json(hint) == hint and via_cbor(hint) == hint


@given(components)
def test_components_round_trip(c):
    assert via_json(c) == c


# A document of the wrong shape (wrong type, missing field, unknown kind) is the codec's
# CodecError; a value the type itself refuses is its ResourceError. Both name the field.
@pytest.mark.parametrize(
    ("cls", "data", "field", "error"),
    [
        (ResourceProfile, {"cpu_cores": -1}, "resource_profile.cpu_cores", ResourceError),
        (
            ResourceProfile,
            {"gpu_spec": {"memory_gb": 8}},
            "resource_profile.gpu_spec.compute_capability: missing",
            CodecError,
        ),
        (ResourceProfile, [1, 2], "resource_profile", CodecError),
        (
            GpuDevice,
            {"device_id": "0", "memory_gb": 8, "compute_capability": "x"},
            "gpu_device.compute_capability",
            CodecError,
        ),
        (
            GpuSpec,
            {"memory_gb": "8", "compute_capability": "sm_80"},
            "gpu_spec.memory_gb",
            CodecError,
        ),
        (
            GpuSpec,
            {"memory_gb": 0, "compute_capability": "sm_80"},
            "gpu_spec.memory_gb",
            ResourceError,
        ),
        (
            NodeCapacity,
            {"cpu_cores_total": 4, "memory_mb_total": 1, "storage_mb_total": 1},
            "node_capacity.network_mbps",
            CodecError,
        ),
        (
            NodeCapacity,
            {
                "cpu_cores_total": 4,
                "memory_mb_total": 1,
                "storage_mb_total": 1,
                "network_mbps": 1,
                "gpu_devices": "nope",
            },
            "node_capacity.gpu_devices",
            CodecError,
        ),
        (LocalityHint, {"kind": "teleport"}, "locality_hint.kind", CodecError),
        (
            LocalityHint,
            {"kind": "data_locality", "blobs": []},
            "data_locality.blobs",
            ResourceError,
        ),
        (
            LocalityHint,
            {"kind": "data_locality", "blobs": ["abcd"]},
            "data_locality.blobs[0]",
            ResourceError,
        ),
        (
            LocalityHint,
            {"kind": "data_locality", "blobs": [h("x"), "zz"]},
            "locality_hint.blobs[1]: not a hex string",
            CodecError,
        ),
        (
            LocalityHint,
            {"kind": "minimize_transfer", "blobs": [h("x")], "max_transfer_mb": -1},
            "minimize_transfer.max_transfer_mb",
            ResourceError,
        ),
        (PreferRegion, {"kind": "avoid_did", "did": "x"}, "prefer_region.kind", CodecError),
        (
            BlobRegistry,
            {"blobs": [{"blob_hash": h("x"), "size_bytes": 1, "holders": [""]}]},
            "blob_location.node_did",
            ResourceError,
        ),
        (
            LocalityContext,
            {"rtt_ms": {"did:key:a": -1}},
            "locality_context.rtt_ms",
            ResourceError,
        ),
        (
            LocalityContext,
            {"task_locations": [[h("t")]]},
            "locality_context.task_locations[0]",
            CodecError,
        ),
        (
            PlacementRequest,
            {"task_hash": b"short", "profile": {}, "submitter": "s"},
            "placement_request.task_hash",
            ResourceError,
        ),
        (
            PlacementRequest,
            {"task_hash": h("t"), "profile": {}, "submitter": "s", "locality_hints": [{}]},
            "placement_request.locality_hints[0].kind: missing",
            CodecError,
        ),
        (
            PlacementOffer,
            {
                "task_hash": h("t"),
                "executor": "e",
                "score": 0.5,
                "cost": 1,
                "estimated_start": 0,
                "offered_at": 0,
                "components": {"trust": 2},
            },
            "placement_offer.components.capacity: missing",
            CodecError,
        ),
        (
            ScoreComponents,
            {"trust": 2, "capacity": 0, "queue": 0, "locality": 0, "network": 0, "jitter": 0},
            "components.trust",
            ResourceError,
        ),
        (Decline, {"reason": "bored"}, "decline.reason", CodecError),
        (
            NodeMetrics,
            {"address": "a", "timestamp": 0, "cpu_load": 0.5, "memory_used": 1},
            "node_metrics.memory_max",
            CodecError,
        ),
        (Weights, {"trust": -1}, "weights.trust", ResourceError),
    ],
)
def test_from_dict_names_the_bad_field(cls, data, field, error):
    with pytest.raises(error) as e:
        cls.from_dict(data)
    assert field in str(e.value)


def test_blob_registry_rejects_conflicting_sizes_and_looks_up():
    with pytest.raises(ResourceError, match="sizes"):
        BlobRegistry([BlobLocation(h("x"), did("A"), 1), BlobLocation(h("x"), did("B"), 2)])
    reg = registry(("x", 10, ("A", "B")))
    assert reg.size(h("x")) == 10 and reg.holders(h("x")) == {did("A"), did("B")}
    assert reg.lookup(h("nope")) is None and reg.size(h("nope")) is None
    assert len(reg) == 2 and reg.blob_count == 1
    assert BlobRegistry(reg.locations()) == reg
