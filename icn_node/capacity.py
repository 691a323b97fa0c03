"""Measuring what this machine can offer: psutil for CPU, memory, disk and link speed; NVIDIA
GPUs through NVML (the ``nvidia-ml-py`` distribution, imported as ``pynvml``).

Two halves: :func:`sample_host` and :func:`read_gpus` touch the machine; :func:`advertised_capacity`
is pure and applies the operator's ``[capacity]`` caps. The NVML boundary is the module object
passed to :func:`read_gpus`: the daemon passes ``pynvml``; tests pass a replay of recorded device
data with the same functions. No GPU, no library or no driver all degrade to "no GPUs" with one
log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .config import CapacitySection
from .logs import get_logger
from .scheduler import ComputeCapability, GpuDevice, NodeCapacity

log = get_logger("icn.capacity")

DEFAULT_LINK_MBPS = 1000.0
MB = 1024 * 1024


@dataclass(frozen=True)
class HostSample:
    """One reading of the host, in the units the scheduler uses."""

    cpu_count: int
    cpu_load: float  # 0..1, all cores
    memory_total_mb: int
    memory_available_mb: int
    disk_free_mb: int
    link_mbps: float  # 0 when no interface reports a speed


def _link_speed_mbps() -> float:
    best = 0.0
    try:
        stats = psutil.net_if_stats()
    except OSError:
        return 0.0
    for name, st in stats.items():
        if name == "lo" or name.startswith("lo") or not st.isup:
            continue
        best = max(best, float(st.speed or 0))
    return best


def sample_host(data_dir: Path) -> HostSample:
    """Read CPU, memory, free disk under ``data_dir`` and link speed from the OS."""
    vm = psutil.virtual_memory()
    path = Path(data_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    disk = psutil.disk_usage(str(path))
    return HostSample(
        cpu_count=psutil.cpu_count(logical=True) or 1,
        cpu_load=min(1.0, max(0.0, psutil.cpu_percent(interval=None) / 100.0)),
        memory_total_mb=vm.total // MB,
        memory_available_mb=vm.available // MB,
        disk_free_mb=disk.free // MB,
        link_mbps=_link_speed_mbps(),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus(nvml: Any) -> list[GpuDevice]:
    """List NVIDIA GPUs through an NVML module; [] (logged once) when NVML cannot be used.

    A device already running compute processes of others is reported as not available.
    """
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        log.info("gpu_probe_unavailable", reason=str(e) or type(e).__name__)
        return []
    devices: list[GpuDevice] = []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                busy = bool(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            except Exception:
                busy = False
            devices.append(
                GpuDevice(
                    device_id=_text(nvml.nvmlDeviceGetUUID(handle)),
                    device_name=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_gb=round(memory.total / (1024**3), 2),
                    compute_capability=ComputeCapability(int(major), int(minor)),
                    available=not busy,
                )
            )
    except Exception as e:
        log.warning("gpu_probe_failed", reason=str(e) or type(e).__name__)
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    return devices


def load_nvml() -> Any:
    """The ``pynvml`` module, or None (logged once) when it is not installed."""
    try:
        import pynvml
    except ImportError as e:
        log.info("gpu_probe_unavailable", reason=f"pynvml not importable: {e}")
        return None
    return pynvml


def advertised_capacity(
    sample: HostSample, limits: CapacitySection, gpus: list[GpuDevice], now: float
) -> NodeCapacity:
    """What the node offers: the host's figures capped by the operator's limits (pure)."""
    cpu = float(sample.cpu_count)
    if limits.cpu_cores:
        cpu = min(cpu, limits.cpu_cores)
    memory = sample.memory_total_mb
    if limits.memory_mb:
        memory = min(memory, limits.memory_mb)
    storage = sample.disk_free_mb
    if limits.storage_mb:
        storage = min(storage, limits.storage_mb)
    link = sample.link_mbps or limits.network_mbps or DEFAULT_LINK_MBPS
    if limits.network_mbps:
        link = min(link, limits.network_mbps)
    return NodeCapacity.from_totals(
        cpu_cores=cpu,
        memory_mb=int(memory),
        storage_mb=int(storage),
        network_mbps=float(link),
        gpu_devices=list(gpus) if limits.gpus else [],
        updated_at=now,
    )
