"""Builders and hypothesis strategies shared by the scheduler tests."""

from __future__ import annotations

import hashlib

from hypothesis import strategies as st

from icn_node.scheduler import (
    AvoidDid,
    BlobLocation,
    BlobRegistry,
    ColocateWith,
    ComputeCapability,
    DataLocality,
    GpuDevice,
    GpuSpec,
    LocalityContext,
    MinimizeTransfer,
    NodeCapacity,
    NodeState,
    PlacementRequest,
    PreferDid,
    PreferHighBandwidth,
    PreferLowLatency,
    PreferRegion,
    RequireRegion,
    ResourceProfile,
    ScoreComponents,
)

SUBMITTER = "did:key:z6MkSubmitter"
GB = 1024**3


def h(label: str) -> bytes:
    """A 32-byte hash named by ``label``."""
    return hashlib.sha256(label.encode()).digest()


def did(name: str) -> str:
    return f"did:key:z6Mk{name}"


def cc(s: str) -> ComputeCapability:
    return ComputeCapability.parse(s)


def plain_node(
    name: str,
    *,
    cores: float = 8,
    mem: int = 16384,
    queue: int = 0,
    gpus: tuple[GpuDevice, ...] = (),
    load: float | None = None,
) -> NodeState:
    cap = NodeCapacity.from_totals(cores, mem, 100_000, 1000.0, gpus)
    return NodeState(did(name), cap, queue_depth=queue, load=load)


def request(
    *hints, profile: ResourceProfile | None = None, task: str = "task", max_cost: int | None = None
) -> PlacementRequest:
    return PlacementRequest(
        h(task), profile or ResourceProfile.minimal(), SUBMITTER, tuple(hints), max_cost=max_cost
    )


def registry(*entries: tuple[str, int, tuple[str, ...]]) -> BlobRegistry:
    """``registry(("blob-label", size_bytes, ("NodeA", ...)), ...)``."""
    return BlobRegistry(
        BlobLocation(h(label), did(n), size) for label, size, holders in entries for n in holders
    )


# -- strategies ------------------------------------------------------------------------------

finite_pos = st.floats(min_value=0.01, max_value=64.0, allow_nan=False)
ccs = st.builds(ComputeCapability, st.integers(1, 12), st.integers(0, 9))
gpu_specs = st.builds(
    GpuSpec, st.sampled_from([8.0, 16.0, 24.0, 40.0, 80.0]), ccs, st.integers(1, 3)
)

profiles = st.builds(
    ResourceProfile,
    cpu_cores=st.none() | st.floats(min_value=0.1, max_value=16.0),
    memory_mb=st.none() | st.integers(1, 65536),
    storage_mb=st.none() | st.integers(1, 200_000),
    network_mbps=st.none() | st.floats(min_value=1.0, max_value=2000.0),
    gpu_spec=st.none() | gpu_specs,
    duration_estimate=st.none() | st.floats(min_value=1.0, max_value=86400.0),
)


@st.composite
def gpu_lists(draw, max_size: int = 4) -> tuple[GpuDevice, ...]:
    n = draw(st.integers(0, max_size))
    return tuple(
        GpuDevice(
            f"gpu{i}",
            "test",
            draw(st.sampled_from([8.0, 24.0, 40.0, 80.0])),
            draw(ccs),
            draw(st.booleans() | st.just(True)),
        )
        for i in range(n)
    )


@st.composite
def capacities(draw) -> NodeCapacity:
    cpu_t = draw(st.floats(min_value=0.0, max_value=64.0))
    mem_t = draw(st.integers(0, 262144))
    sto_t = draw(st.integers(0, 1_000_000))
    return NodeCapacity(
        cpu_cores_total=cpu_t,
        memory_mb_total=mem_t,
        storage_mb_total=sto_t,
        network_mbps=draw(st.floats(min_value=0.0, max_value=10_000.0)),
        gpu_devices=draw(gpu_lists()),
        cpu_cores_available=draw(st.floats(min_value=0.0, max_value=cpu_t)),
        memory_mb_available=draw(st.integers(0, mem_t)),
        storage_mb_available=draw(st.integers(0, sto_t)),
    )


names = st.sampled_from(["A", "B", "C", "D"])
blob_labels = st.sampled_from(["b1", "b2", "b3", "b4"])
hints = st.one_of(
    st.builds(lambda n: PreferDid(did(n)), names),
    st.builds(lambda n: AvoidDid(did(n)), names),
    st.builds(PreferRegion, st.sampled_from(["eu", "us"])),
    st.builds(RequireRegion, st.sampled_from(["eu", "us"])),
    st.builds(
        lambda ls: DataLocality(tuple(h(x) for x in ls)),
        st.lists(blob_labels, min_size=1, max_size=4),
    ),
    st.builds(lambda t: ColocateWith(h(t)), st.sampled_from(["t1", "t2"])),
    st.builds(PreferLowLatency, st.floats(min_value=1.0, max_value=500.0)),
    st.builds(PreferHighBandwidth, st.floats(min_value=1.0, max_value=5000.0)),
    st.builds(
        lambda ls, mb: MinimizeTransfer(tuple(h(x) for x in ls), mb),
        st.lists(blob_labels, min_size=1, max_size=4),
        st.integers(0, 5000),
    ),
)


@st.composite
def contexts(draw) -> LocalityContext:
    entries = []
    for label in ["b1", "b2", "b3", "b4"]:
        if draw(st.booleans()):
            holders = tuple(draw(st.lists(names, max_size=3, unique=True)))
            entries.append((label, draw(st.integers(0, 10 * GB)), holders))
    peers = {SUBMITTER: 0.0} | {did(n): 0.0 for n in "ABCD"}
    return LocalityContext(
        region=draw(st.none() | st.sampled_from(["eu", "us"])),
        blobs=registry(*entries),
        rtt_ms={
            k: draw(st.floats(min_value=0.0, max_value=1000.0))
            for k in peers
            if draw(st.booleans())
        },
        bandwidth_mbps={
            k: draw(st.floats(min_value=0.0, max_value=10_000.0))
            for k in peers
            if draw(st.booleans())
        },
        task_locations={h(t): did(draw(names)) for t in ["t1", "t2"] if draw(st.booleans())},
    )


unit = st.floats(min_value=0.0, max_value=1.0)
components = st.builds(ScoreComponents, unit, unit, unit, unit, unit, unit)
