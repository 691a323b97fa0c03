"""Resource profiles, GPUs and node capacity."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sched_helpers import capacities, cc, profiles

from icn_node.errors import ResourceError
from icn_node.scheduler import (
    ComputeCapability,
    GpuDevice,
    GpuSpec,
    NodeCapacity,
    Reservation,
    ResourceProfile,
)

# -- compute capability ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("sm_75", (7, 5)),
        ("sm_80", (8, 0)),
        ("sm_90", (9, 0)),
        ("sm_100", (10, 0)),
        ("sm_120", (12, 0)),
        ("7.5", (7, 5)),
        ("10.0", (10, 0)),
        (" SM_86 ", (8, 6)),
    ],
)
def test_compute_capability_parses(text, pair):
    c = ComputeCapability.parse(text)
    assert (c.major, c.minor) == pair


@pytest.mark.parametrize("text", ["sm_7", "75", "sm_", "sm_90a", "gfx90a", "", "7", "7.55"])
def test_compute_capability_rejects_garbage(text):
    with pytest.raises(ResourceError, match="compute_capability"):
        ComputeCapability.parse(text)


def test_compute_capability_str_round_trips():
    for s in ["sm_50", "sm_75", "sm_100", "sm_121"]:
        assert str(ComputeCapability.parse(s)) == s


def test_compute_capability_compares_as_numbers_not_strings():
    assert cc("sm_100") > cc("sm_90")  # "sm_100" < "sm_90" as strings
    assert cc("sm_100").satisfies(cc("sm_90"))
    assert not cc("sm_75").satisfies(cc("sm_80"))
    assert cc("sm_80").satisfies(cc("sm_80"))
    assert sorted([cc("sm_100"), cc("sm_75"), cc("sm_90")]) == [
        cc("sm_75"),
        cc("sm_90"),
        cc("sm_100"),
    ]


def test_compute_capability_validates_fields():
    with pytest.raises(ResourceError, match="compute_capability.minor"):
        ComputeCapability(8, 10)
    with pytest.raises(ResourceError, match="compute_capability.major"):
        ComputeCapability(0, 0)


# -- profiles --------------------------------------------------------------------------------


def test_profile_constructors():
    assert ResourceProfile.minimal() == ResourceProfile(cpu_cores=0.1, memory_mb=128)
    heavy = ResourceProfile.compute_heavy(4, 8192)
    assert (heavy.cpu_cores, heavy.memory_mb) == (4.0, 8192)
    g = ResourceProfile.gpu(24, "sm_70")
    assert g.gpu_spec == GpuSpec(24.0, ComputeCapability(7, 0), 1)
    assert ResourceProfile.gpu(80, cc("sm_90"), device_count=4).gpu_spec.device_count == 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cpu_cores": -1}, "cpu_cores"),
        ({"cpu_cores": 0}, "cpu_cores"),
        ({"cpu_cores": math.nan}, "cpu_cores"),
        ({"cpu_cores": math.inf}, "cpu_cores"),
        ({"cpu_cores": 1e6}, "cpu_cores"),
        ({"cpu_cores": True}, "cpu_cores"),
        ({"cpu_cores": "4"}, "cpu_cores"),
        ({"memory_mb": 0}, "memory_mb"),
        ({"memory_mb": -5}, "memory_mb"),
        ({"memory_mb": 1.5}, "memory_mb"),
        ({"memory_mb": 2**40}, "memory_mb"),
        ({"storage_mb": 0}, "storage_mb"),
        ({"storage_mb": 2**60}, "storage_mb"),
        ({"network_mbps": 0.0}, "network_mbps"),
        ({"network_mbps": math.nan}, "network_mbps"),
        ({"duration_estimate": -1.0}, "duration_estimate"),
        ({"duration_estimate": 1e12}, "duration_estimate"),
        ({"gpu_spec": "sm_80"}, "gpu_spec"),
    ],
)
def test_profile_rejects_nonsense_naming_the_field(kwargs, field):
    with pytest.raises(ResourceError, match=f"resource_profile.{field}"):
        ResourceProfile(**kwargs)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, "sm_80"), "gpu_spec.memory_gb"),
        ((math.nan, "sm_80"), "gpu_spec.memory_gb"),
        ((5000, "sm_80"), "gpu_spec.memory_gb"),
        ((24, "sm_80", 0), "gpu_spec.device_count"),
        ((24, "sm_80", 1000), "gpu_spec.device_count"),
        ((24, "ampere"), "gpu_spec.compute_capability"),
    ],
)
def test_gpu_spec_rejects_nonsense(args, field):
    with pytest.raises(ResourceError, match=field):
        GpuSpec(*args)


def test_gpu_device_validates():
    with pytest.raises(ResourceError, match="gpu_device.memory_gb"):
        GpuDevice("0", "x", -1, cc("sm_80"))
    with pytest.raises(ResourceError, match="gpu_device.device_id"):
        GpuDevice("", "x", 8, cc("sm_80"))
    with pytest.raises(ResourceError, match="gpu_device.available"):
        GpuDevice("0", "x", 8, cc("sm_80"), available=1)
    assert GpuDevice("0", "x", 8, "sm_80").compute_capability == cc("sm_80")


# -- capacity --------------------------------------------------------------------------------

A100 = GpuDevice("gpu0", "NVIDIA A100", 40, cc("sm_80"))
T4 = GpuDevice("gpu1", "NVIDIA T4", 16, cc("sm_75"))
H100 = GpuDevice("gpu2", "NVIDIA H100", 80, cc("sm_90"))
B200 = GpuDevice("gpu3", "NVIDIA B200", 192, cc("sm_100"))


def test_from_totals_has_everything_available():
    c = NodeCapacity.from_totals(8, 16384, 100_000, 1000.0, [A100], updated_at=12.5)
    assert (c.cpu_cores_available, c.memory_mb_available, c.storage_mb_available) == (
        8.0,
        16384,
        100_000,
    )
    assert (c.cpu_cores_total, c.memory_mb_total, c.storage_mb_total) == (8.0, 16384, 100_000)
    assert c.network_mbps == c.network_mbps_total == 1000.0
    assert c.gpu_devices == (A100,)
    assert c.updated_at == 12.5
    assert c.available_ratio() == 1.0


def test_capacity_rejects_available_above_total_and_duplicate_devices():
    with pytest.raises(ResourceError, match="node_capacity.cpu_cores_available"):
        NodeCapacity(
            cpu_cores_total=4,
            memory_mb_total=1,
            storage_mb_total=1,
            network_mbps=1,
            cpu_cores_available=5,
        )
    with pytest.raises(ResourceError, match="duplicate device_id"):
        NodeCapacity.from_totals(4, 1, 1, 1, [A100, A100])
    with pytest.raises(ResourceError, match="node_capacity.memory_mb_total"):
        NodeCapacity.from_totals(4, -1, 1, 1)


def test_can_fit_each_dimension():
    c = NodeCapacity.from_totals(4, 8192, 1000, 100.0)
    assert c.can_fit(ResourceProfile.compute_heavy(4, 8192))
    assert not c.can_fit(ResourceProfile(cpu_cores=4.5))
    assert not c.can_fit(ResourceProfile(memory_mb=8193))
    assert not c.can_fit(ResourceProfile(storage_mb=1001))
    assert not c.can_fit(ResourceProfile(network_mbps=100.5))
    assert c.can_fit(ResourceProfile(network_mbps=100.0))
    assert not c.can_fit(ResourceProfile.gpu(8, "sm_50"))
    assert "cpu_cores" in c.why_not(ResourceProfile(cpu_cores=5))


def test_gpu_matching_uses_numeric_capability():
    c = NodeCapacity.from_totals(64, 1 << 20, 1, 1, [B200])
    assert c.can_fit(ResourceProfile.gpu(80, "sm_90"))  # sm_100 satisfies sm_90
    t4 = NodeCapacity.from_totals(64, 1 << 20, 1, 1, [T4])
    assert not t4.can_fit(ResourceProfile.gpu(8, "sm_80"))  # sm_75 does not
    assert not c.can_fit(ResourceProfile.gpu(200, "sm_90"))  # memory


def test_device_count_needs_distinct_available_devices():
    c = NodeCapacity.from_totals(64, 1 << 20, 1, 1, [A100, H100, B200])
    assert c.can_fit(ResourceProfile.gpu(40, "sm_80", device_count=3))
    assert not c.can_fit(ResourceProfile.gpu(40, "sm_80", device_count=4))
    busy = NodeCapacity.from_totals(
        64, 1 << 20, 1, 1, [A100, GpuDevice("gpu9", "A100", 40, "sm_80", False)]
    )
    assert not busy.can_fit(ResourceProfile.gpu(40, "sm_80", device_count=2))


def test_reserve_picks_the_smallest_fitting_gpu_and_release_restores():
    c = NodeCapacity.from_totals(64, 1 << 20, 1000, 1, [B200, A100, H100])
    before = c.to_dict()
    r = c.reserve(ResourceProfile.gpu(40, "sm_80"))
    assert r.gpu_device_ids == ("gpu0",)  # the A100: best fit
    assert [d.available for d in c.gpu_devices] == [True, False, True]
    assert c.cpu_cores_available == 63.0 and c.memory_mb_available == (1 << 20) - 4096
    c.release(r)
    assert c.to_dict() == before


def test_reserve_pinned_devices():
    h100b = GpuDevice("gpu4", "NVIDIA H100", 80, cc("sm_90"))
    c = NodeCapacity.from_totals(64, 1 << 20, 1, 1, [A100, H100, B200, h100b])
    r = c.reserve(ResourceProfile.gpu(40, "sm_80", device_count=2), gpu_device_ids=["gpu3", "gpu2"])
    assert r.gpu_device_ids == ("gpu3", "gpu2")
    assert {d.device_id for d in c.gpu_devices if not d.available} == {"gpu2", "gpu3"}
    for ids, msg in [
        (["gpu0"], "1 device"),
        (["gpu0", "gpu0"], "distinct"),
        (["gpu0", "gpu2"], "not available"),
        (["gpu0", "nope"], "no device"),
    ]:
        snapshot = c.to_dict()
        with pytest.raises(ResourceError, match=msg):
            c.reserve(ResourceProfile.gpu(40, "sm_80", device_count=2), gpu_device_ids=ids)
        assert c.to_dict() == snapshot
    t4 = NodeCapacity.from_totals(4, 1 << 16, 1, 1, [T4, A100])
    with pytest.raises(ResourceError, match="does not satisfy"):
        t4.reserve(ResourceProfile.gpu(8, "sm_80"), gpu_device_ids=["gpu1"])
    with pytest.raises(ResourceError, match="no gpu_spec"):
        t4.reserve(ResourceProfile.minimal(), gpu_device_ids=["gpu1"])


def test_reserve_that_does_not_fit_raises_and_changes_nothing():
    c = NodeCapacity.from_totals(4, 8192, 100, 10)
    c.reserve(ResourceProfile.compute_heavy(3, 4096))
    before = (c.to_dict(), c.reservations)
    with pytest.raises(ResourceError, match="does not fit: cpu_cores"):
        c.reserve(ResourceProfile.compute_heavy(2, 1024))
    with pytest.raises(ResourceError, match="does not fit: memory_mb"):
        c.reserve(ResourceProfile(memory_mb=5000))
    assert (c.to_dict(), c.reservations) == before


def test_release_unknown_or_twice_raises_and_changes_nothing():
    c = NodeCapacity.from_totals(4, 8192, 100, 10)
    r = c.reserve(ResourceProfile.minimal())
    c.release(r)
    before = c.to_dict()
    with pytest.raises(ResourceError, match="not held"):
        c.release(r)
    with pytest.raises(ResourceError, match="not held"):
        c.release(Reservation(99, ResourceProfile.minimal()))
    assert c.to_dict() == before


def test_available_ratio_figures():
    c = NodeCapacity(
        cpu_cores_total=8,
        memory_mb_total=8192,
        storage_mb_total=0,
        network_mbps=0,
        cpu_cores_available=2,
        memory_mb_available=4096 + 4096,
        gpu_devices=[A100, H100],
    )
    assert c.available_ratio() == pytest.approx((0.25 + 1.0 + 1.0) / 3)
    c.reserve(ResourceProfile.gpu(40, "sm_80"))  # 1 core, 4096 MB, the A100
    assert c.available_ratio() == pytest.approx((1 / 8 + 0.5 + 0.5) / 3)
    empty = NodeCapacity.from_totals(0, 0, 0, 0)
    assert empty.available_ratio() == 0.0


def test_snapshot_is_independent():
    c = NodeCapacity.from_totals(4, 8192, 100, 10)
    s = c.snapshot()
    c.reserve(ResourceProfile.compute_heavy(2, 1024))
    assert s.cpu_cores_available == 4.0 and c.cpu_cores_available == 2.0
    assert s != c


# -- property: any sequence of reserve/release keeps figures within [0, total] --------------


def _within(c: NodeCapacity) -> None:
    assert 0.0 <= c.cpu_cores_available <= c.cpu_cores_total
    assert 0 <= c.memory_mb_available <= c.memory_mb_total
    assert 0 <= c.storage_mb_available <= c.storage_mb_total
    assert 0.0 <= c.available_ratio() <= 1.0
    held = [i for r in c.reservations for i in r.gpu_device_ids]
    assert len(held) == len(set(held))
    assert all(not d.available for d in c.gpu_devices if d.device_id in held)


@settings(max_examples=150, deadline=None)
@given(capacities(), st.lists(st.tuples(st.booleans(), profiles, st.integers(0, 50)), max_size=25))
def test_reserve_release_keeps_figures_in_range(cap, ops):
    initial = cap.to_dict()
    held: list[Reservation] = []
    for do_reserve, profile, pick in ops:
        if do_reserve or not held:
            fits = cap.can_fit(profile)
            before = cap.to_dict()
            try:
                held.append(cap.reserve(profile))
                assert fits
            except ResourceError:
                assert not fits
                assert cap.to_dict() == before
        else:
            r = held.pop(pick % len(held))
            cap.release(r)
            with pytest.raises(ResourceError):
                cap.release(r)  # a second release is refused
        _within(cap)
    for r in held:
        cap.release(r)
        _within(cap)
    # Everything released: back to the probed figures, exactly (no float drift).
    assert cap.to_dict() == initial
