"""Capacity probing: psutil on this host, NVML through its boundary with recorded devices."""

import json
from collections import namedtuple
from pathlib import Path

import pynvml
import pytest

from icn_node.capacity import (
    DEFAULT_LINK_MBPS,
    HostSample,
    advertised_capacity,
    read_gpus,
    sample_host,
)
from icn_node.config import CapacitySection
from icn_node.scheduler import ComputeCapability

RECORDED = json.loads((Path(__file__).parent / "data" / "nvml_recorded.json").read_text())
Memory = namedtuple("Memory", "total free used")


class RecordedNvml:
    """Replays recorded NVML answers through the same functions pynvml exposes."""

    def __init__(self, devices, init_error=None):
        self.devices = devices
        self.init_error = init_error
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.devices[i]

    def nvmlDeviceGetUUID(self, h):
        return h["uuid"]

    def nvmlDeviceGetName(self, h):
        return h["name"].encode()  # older bindings return bytes

    def nvmlDeviceGetMemoryInfo(self, h):
        return Memory(**h["memory"])

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return tuple(h["cuda_compute_capability"])

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return h["compute_processes"]


def test_recorded_devices_are_read_with_numeric_compute_capability():
    nvml = RecordedNvml(RECORDED["devices"])
    gpus = read_gpus(nvml)
    assert [g.device_name for g in gpus] == ["NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 2080 Ti"]
    a100, rtx = gpus
    assert a100.device_id == "GPU-4f1c2a7e-8b9d-4c3e-a1f0-6d2b9e7c5a31"
    assert a100.memory_gb == 40.0 and rtx.memory_gb == 11.0
    assert a100.compute_capability == ComputeCapability(8, 0)
    assert rtx.compute_capability == ComputeCapability(7, 5)
    assert a100.available and not rtx.available  # another process computes on the 2080 Ti
    assert nvml.shutdowns == 1


def test_missing_driver_degrades_to_no_gpus():
    err = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert read_gpus(RecordedNvml([], init_error=err)) == []
    assert read_gpus(None) == []


def test_real_nvml_on_this_machine_degrades_cleanly():
    # Where the real binding cannot start (no driver, as on our CI machines) the probe must
    # report no GPUs rather than raise; where a driver exists, it lists real devices.
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert read_gpus(pynvml) == []
    else:
        pynvml.nvmlShutdown()
        gpus = read_gpus(pynvml)
        assert gpus and all(g.device_id and g.memory_gb > 0 for g in gpus)


def test_a_device_that_fails_mid_read_yields_no_gpus():
    broken = dict(RECORDED["devices"][0])
    nvml = RecordedNvml([broken])

    def boom(h):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    nvml.nvmlDeviceGetMemoryInfo = boom
    assert read_gpus(nvml) == []
    assert nvml.shutdowns == 1


def test_host_sample_is_sane(tmp_path):
    s = sample_host(tmp_path / "not-yet-created")
    assert s.cpu_count >= 1
    assert 0 < s.memory_available_mb <= s.memory_total_mb
    assert s.disk_free_mb > 0
    assert 0.0 <= s.cpu_load <= 1.0


SAMPLE = HostSample(
    cpu_count=16,
    cpu_load=0.1,
    memory_total_mb=64000,
    memory_available_mb=50000,
    disk_free_mb=900000,
    link_mbps=0.0,
)


def test_operator_caps_limit_what_is_advertised():
    limits = CapacitySection(cpu_cores=4.0, memory_mb=8192, storage_mb=10000, network_mbps=100.0)
    gpus = read_gpus(RecordedNvml(RECORDED["devices"]))
    cap = advertised_capacity(SAMPLE, limits, gpus, now=12.5)
    assert cap.cpu_cores_available == 4.0
    assert cap.memory_mb_available == 8192
    assert cap.storage_mb_available == 10000
    assert cap.network_mbps == 100.0
    assert len(cap.gpu_devices) == 2
    assert cap.updated_at == 12.5


def test_no_caps_advertise_the_host_and_a_default_link_speed():
    cap = advertised_capacity(SAMPLE, CapacitySection(), [], now=0.0)
    assert cap.cpu_cores_available == 16
    assert cap.memory_mb_available == 64000
    assert cap.storage_mb_available == 900000
    assert cap.network_mbps == DEFAULT_LINK_MBPS


@pytest.mark.parametrize(
    "reported, cap, expected",
    [(10000.0, 0.0, 10000.0), (10000.0, 2500.0, 2500.0), (0.0, 2500.0, 2500.0)],
)
def test_link_speed_reported_or_configured(reported, cap, expected):
    sample = HostSample(**{**SAMPLE.__dict__, "link_mbps": reported})
    out = advertised_capacity(sample, CapacitySection(network_mbps=cap), [], now=0.0)
    assert out.network_mbps == expected


def test_gpus_can_be_switched_off():
    gpus = read_gpus(RecordedNvml(RECORDED["devices"]))
    cap = advertised_capacity(SAMPLE, CapacitySection(gpus=False), gpus, now=0.0)
    assert list(cap.gpu_devices) == []
