"""Transitional: the derived codec gives exactly the documents of the hand-written
to_dict/from_dict pairs it replaces. Deleted once the hand-written methods are gone."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sched_helpers import capacities, components, contexts, gpu_lists, h, hints, profiles
from test_roundtrip import SAMPLES

from icn_node.codec import from_doc, to_doc
from icn_node.runner import RunResult, TaskState
from icn_node.scheduler import (
    BlobRegistry,
    ComputeCapability,
    Decline,
    GpuDevice,
    GpuSpec,
    LocalityContext,
    LocalityHint,
    NodeCapacity,
    NodeState,
    PlacementOffer,
    PlacementRequest,
    Reservation,
    ResourceProfile,
    Weights,
)

RUN_RESULTS = [
    RunResult(state=TaskState.COMPLETED),
    RunResult(
        state=TaskState.FAILED,
        fuel_used=7,
        exit_code=3,
        message="exited with code 3",
        stdout=b"\x00\xffout",
        stderr=b"err",
        stdout_truncated=True,
        outputs=(Path("/o/a"), Path("o/b")),
        wall_time_s=0.5,
    ),
]


def same_as_hand(v):
    assert to_doc(v) == v.to_dict()
    assert to_doc(v, json=True) == v.to_dict(json_safe=True)
    assert from_doc(type(v), v.to_dict()) == v
    assert from_doc(type(v), v.to_dict(json_safe=True)) == v
    assert from_doc(type(v), cbor2.loads(cbor2.dumps(v.to_dict()))) == v
    assert from_doc(type(v), json.loads(json.dumps(v.to_dict(json_safe=True))), json=True) == v
    if isinstance(v, LocalityHint):
        assert from_doc(LocalityHint, v.to_dict()) == v


@pytest.mark.parametrize(
    "v",
    [s for s in SAMPLES if not isinstance(s, ComputeCapability)] + RUN_RESULTS,
    ids=lambda o: type(o).__name__,
)
def test_samples(v):
    same_as_hand(v)


def test_compute_capability_is_its_nested_string():
    # The one deliberate change: the top-level document is the string GpuDevice and GpuSpec
    # always carried; the old {"major", "minor"} map is still read.
    c = ComputeCapability(10, 0)
    assert to_doc(c) == "sm_100" == to_doc(c, json=True)
    assert from_doc(ComputeCapability, c.to_dict()) == c == from_doc(ComputeCapability, "sm_100")


@settings(max_examples=60, deadline=None)
@given(profiles)
def test_profiles(p):
    same_as_hand(p)


@settings(max_examples=60, deadline=None)
@given(hints)
def test_hints(x):
    same_as_hand(x)


@settings(max_examples=60, deadline=None)
@given(capacities())
def test_capacities(c):
    same_as_hand(c)
    same_as_hand(NodeState("did:key:z6MkA", c, 2, None, 3.0))


@settings(max_examples=60, deadline=None)
@given(contexts())
def test_contexts(c):
    same_as_hand(c)


@settings(max_examples=60, deadline=None)
@given(components, gpu_lists())
def test_offers_and_devices(c, gpus):
    same_as_hand(c)
    same_as_hand(PlacementOffer(h("t"), "did:key:z6MkA", 0.5, c, 3, 1.0, 0.5))
    for g in gpus:
        same_as_hand(g)


@settings(max_examples=60, deadline=None)
@given(profiles, st.lists(hints, max_size=4), st.sampled_from(["wasm", "exec"]))
def test_requests(p, hs, runtime):
    same_as_hand(
        PlacementRequest(h("x"), p, "did:key:z6MkS", tuple(hs), max_cost=None, runtime=runtime)
    )


@pytest.mark.parametrize(
    ("cls", "doc"),
    [
        (ResourceProfile, {}),
        (ResourceProfile, {"memory_mb": 4096.0, "cpu_cores": 2, "extra": 1}),
        (ResourceProfile, {"gpu_spec": {"memory_gb": 8, "compute_capability": "7.5"}}),
        (GpuSpec, {"memory_gb": 8, "compute_capability": {"major": 8, "minor": 0}}),
        (GpuDevice, {"device_id": "0", "memory_gb": 8, "compute_capability": "sm_80"}),
        (Weights, {"trust": 1}),
        (Decline, {"reason": "cost"}),
        (
            NodeCapacity,
            {"cpu_cores_total": 4, "memory_mb_total": 1, "storage_mb_total": 1, "network_mbps": 1},
        ),
        (LocalityContext, {}),
        (LocalityContext, {"task_locations": [(bytearray(h("t")), "did:key:a")]}),
        (BlobRegistry, {}),
        (Reservation, {"reservation_id": 1, "profile": {}}),
        (PlacementRequest, {"task_hash": h("t").hex(), "profile": {}, "submitter": "s"}),
        (LocalityHint, {"kind": "colocate_with", "task": bytearray(h("t"))}),
        (RunResult, RUN_RESULTS[1].to_dict(json_safe=True)),
    ],
)
def test_accepts_what_the_hand_version_accepts(cls, doc):
    assert from_doc(cls, doc) == cls.from_dict(doc)
