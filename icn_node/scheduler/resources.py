"""What a task needs and what a node has: resource profiles, GPUs and node capacity.

Value types (:class:`ComputeCapability`, :class:`GpuDevice`, :class:`GpuSpec`,
:class:`ResourceProfile`, :class:`Reservation`) are frozen dataclasses that validate themselves
on construction and raise :class:`~icn_node.errors.ResourceError` naming the bad field.

:class:`NodeCapacity` is the one mutable type here: a node has one live capacity, and
:meth:`NodeCapacity.reserve` / :meth:`NodeCapacity.release` change it in place. It keeps a
ledger of the reservations it handed out, so the available figures are always recomputed from
the probed baseline minus what is held: they never drift, never go below zero and never exceed
the totals. :meth:`NodeCapacity.snapshot` gives an independent copy for a policy to score against.

Documents come from :mod:`icn_node.codec`, through ``to_dict()`` / ``from_dict()``
(:class:`~icn_node.codec.Document`): plain JSON- and CBOR-safe values. A compute capability is
its string (``"sm_80"``). Unknown keys are ignored so a newer peer's announcement still parses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import total_ordering
from typing import Annotated, Any

from icn_node import codec
from icn_node.errors import ResourceError
from icn_node.scheduler import _checks as chk

__all__ = [
    "MAX_CPU_CORES",
    "MAX_DURATION_S",
    "MAX_GPU_DEVICES",
    "MAX_GPU_MEMORY_GB",
    "MAX_MEMORY_MB",
    "MAX_NETWORK_MBPS",
    "MAX_STORAGE_MB",
    "ComputeCapability",
    "GpuDevice",
    "GpuSpec",
    "NodeCapacity",
    "Reservation",
    "ResourceProfile",
]

# Sizes beyond these are nonsense for one task or one node, not ambition: they are rejected.
MAX_CPU_CORES = 4096.0
MAX_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB
MAX_STORAGE_MB = 1024 * 1024 * 1024  # 1 PiB
MAX_NETWORK_MBPS = 1_000_000.0  # 1 Tb/s
MAX_DURATION_S = 366 * 24 * 3600.0  # a year
MAX_GPU_MEMORY_GB = 1024.0  # per device
MAX_GPU_DEVICES = 64

_SM_RE = re.compile(r"^sm_(\d{1,2})(\d)$")
_DOT_RE = re.compile(r"^(\d{1,2})\.(\d)$")


@total_ordering
@dataclass(frozen=True, slots=True)
class ComputeCapability:
    """An NVIDIA compute capability, compared as the number pair ``(major, minor)``.

    ``sm_100`` (10.0) is newer than ``sm_90`` (9.0) although it sorts before it as a string.
    """

    major: int
    minor: int

    def __post_init__(self) -> None:
        chk.integer("compute_capability.major", self.major, lo=1, hi=99)
        chk.integer("compute_capability.minor", self.minor, lo=0, hi=9)

    @classmethod
    def parse(cls, value: str | ComputeCapability) -> ComputeCapability:
        """Parse ``"sm_75"``, ``"sm_100"`` or ``"7.5"``; a ComputeCapability is returned as is."""
        if isinstance(value, ComputeCapability):
            return value
        if not isinstance(value, str):
            raise ResourceError(
                f"compute_capability: expected a string like 'sm_80', got {type(value).__name__}"
            )
        s = value.strip().lower()
        m = _SM_RE.match(s) or _DOT_RE.match(s)
        if m is None:
            raise ResourceError(
                f"compute_capability: cannot parse {value!r} (expected 'sm_80', 'sm_100' or '8.0')"
            )
        return cls(int(m.group(1)), int(m.group(2)))

    def satisfies(self, required: ComputeCapability) -> bool:
        """True when a device of this capability can run code built for ``required``."""
        return (self.major, self.minor) >= (required.major, required.minor)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ComputeCapability):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"sm_{self.major}{self.minor}"

    def __codec_encode__(self) -> str:
        return str(self)

    @classmethod
    def __codec_decode__(cls, doc: object) -> ComputeCapability:
        """From the string forms :meth:`parse` accepts, or ``{"major", "minor"}``."""
        if isinstance(doc, str):
            try:
                return cls.parse(doc)
            except ResourceError as e:
                raise ValueError(str(e)) from None
        if isinstance(doc, Mapping) and "major" in doc and "minor" in doc:
            return cls(doc["major"], doc["minor"])
        raise ValueError(f"expected a compute capability, got {type(doc).__name__}")


def _cc_field(name: str, value: Any) -> ComputeCapability:
    if isinstance(value, ComputeCapability):
        return value
    try:
        return ComputeCapability.__codec_decode__(value)
    except ValueError as e:
        raise ResourceError(f"{name}: {e}") from None


@dataclass(frozen=True, slots=True)
class GpuDevice(codec.Document):
    """One GPU of a node, as the capacity prober reports it."""

    device_id: str
    device_name: Annotated[str, codec.Default("")]
    memory_gb: float
    compute_capability: ComputeCapability
    available: bool = True

    def __post_init__(self) -> None:
        chk.text("gpu_device.device_id", self.device_id, max_len=128)
        chk.text("gpu_device.device_name", self.device_name, max_len=256, allow_empty=True)
        object.__setattr__(
            self,
            "memory_gb",
            chk.number(
                "gpu_device.memory_gb", self.memory_gb, lo=0.0, hi=MAX_GPU_MEMORY_GB, lo_open=True
            ),
        )
        object.__setattr__(
            self,
            "compute_capability",
            _cc_field("gpu_device.compute_capability", self.compute_capability),
        )
        chk.boolean("gpu_device.available", self.available)

    def satisfies(self, spec: GpuSpec) -> bool:
        """Enough memory and a new-enough capability (availability is not considered)."""
        return self.memory_gb >= spec.memory_gb and self.compute_capability.satisfies(
            spec.compute_capability
        )


@dataclass(frozen=True, slots=True)
class GpuSpec(codec.Document):
    """A task's GPU need: ``device_count`` distinct available devices, each with at least
    ``memory_gb`` of memory and a compute capability that satisfies ``compute_capability``."""

    memory_gb: float
    compute_capability: ComputeCapability
    device_count: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "memory_gb",
            chk.number(
                "gpu_spec.memory_gb", self.memory_gb, lo=0.0, hi=MAX_GPU_MEMORY_GB, lo_open=True
            ),
        )
        object.__setattr__(
            self,
            "compute_capability",
            _cc_field("gpu_spec.compute_capability", self.compute_capability),
        )
        chk.integer("gpu_spec.device_count", self.device_count, lo=1, hi=MAX_GPU_DEVICES)


def _opt_number(name: str, value: Any, hi: float) -> float | None:
    if value is None:
        return None
    return chk.number(name, value, lo=0.0, hi=hi, lo_open=True)


def _opt_int(name: str, value: Any, hi: int) -> int | None:
    if value is None:
        return None
    return chk.integer(name, value, lo=1, hi=hi)


@dataclass(frozen=True, slots=True)
class ResourceProfile(codec.Document):
    """What one task needs. ``None`` means "no requirement" for that resource.

    A figure that is given must be positive, finite and below the ``MAX_*`` bounds of this
    module; zero is rejected (say ``None`` for "none needed"). ``duration_estimate`` is in
    seconds.
    """

    cpu_cores: float | None = None
    memory_mb: int | None = None
    storage_mb: int | None = None
    network_mbps: float | None = None
    gpu_spec: GpuSpec | None = None
    duration_estimate: float | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(
            self,
            "cpu_cores",
            _opt_number("resource_profile.cpu_cores", self.cpu_cores, MAX_CPU_CORES),
        )
        s(self, "memory_mb", _opt_int("resource_profile.memory_mb", self.memory_mb, MAX_MEMORY_MB))
        s(
            self,
            "storage_mb",
            _opt_int("resource_profile.storage_mb", self.storage_mb, MAX_STORAGE_MB),
        )
        s(
            self,
            "network_mbps",
            _opt_number("resource_profile.network_mbps", self.network_mbps, MAX_NETWORK_MBPS),
        )
        s(
            self,
            "duration_estimate",
            _opt_number(
                "resource_profile.duration_estimate", self.duration_estimate, MAX_DURATION_S
            ),
        )
        if self.gpu_spec is not None and not isinstance(self.gpu_spec, GpuSpec):
            if isinstance(self.gpu_spec, Mapping):
                s(self, "gpu_spec", GpuSpec.from_dict(self.gpu_spec))
            else:
                raise ResourceError(
                    f"resource_profile.gpu_spec: expected a GpuSpec, "
                    f"got {type(self.gpu_spec).__name__}"
                )

    @classmethod
    def minimal(cls) -> ResourceProfile:
        """A tenth of a core and 128 MB: the smallest useful task (the seed's default)."""
        return cls(cpu_cores=0.1, memory_mb=128)

    @classmethod
    def compute_heavy(cls, cores: float, mb: int) -> ResourceProfile:
        """``cores`` CPU cores and ``mb`` MB of memory."""
        return cls(cpu_cores=cores, memory_mb=mb)

    @classmethod
    def gpu(
        cls, memory_gb: float, compute_capability: str | ComputeCapability, device_count: int = 1
    ) -> ResourceProfile:
        """One core, 4 GB of host memory and ``device_count`` GPUs of ``memory_gb`` each."""
        return cls(
            cpu_cores=1.0,
            memory_mb=4096,
            gpu_spec=GpuSpec(memory_gb, ComputeCapability.parse(compute_capability), device_count),
        )


@dataclass(frozen=True, slots=True)
class Reservation(codec.Document):
    """A receipt from :meth:`NodeCapacity.reserve`: what was taken, and which GPUs.

    ``gpu_device_ids`` names the devices the task is pinned to (empty without a GPU spec).
    Hand it back to :meth:`NodeCapacity.release`.
    """

    reservation_id: int
    profile: ResourceProfile
    gpu_device_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        chk.integer("reservation.reservation_id", self.reservation_id, lo=0, hi=2**63 - 1)
        if not isinstance(self.profile, ResourceProfile):
            raise ResourceError("reservation.profile: expected a ResourceProfile")
        listed = chk.sequence(
            "reservation.gpu_device_ids", self.gpu_device_ids, max_len=MAX_GPU_DEVICES
        )
        ids = tuple(chk.text("reservation.gpu_device_ids[]", i, max_len=128) for i in listed)
        if len(set(ids)) != len(ids):
            raise ResourceError("reservation.gpu_device_ids: devices must be distinct")
        object.__setattr__(self, "gpu_device_ids", ids)


def _gpu_key(dev: GpuDevice) -> tuple[float, int, int, str]:
    # Best fit: the smallest device that satisfies the spec, so big GPUs stay free for big tasks.
    cc = dev.compute_capability
    return (dev.memory_gb, cc.major, cc.minor, dev.device_id)


@dataclass(slots=True, eq=False)
class _Baseline:
    cpu: float
    memory: int
    storage: int


class NodeCapacity(codec.Document):
    """A node's totals, what is available now, and the reservations it has handed out.

    Mutable: :meth:`reserve` and :meth:`release` change it in place (a node has one live
    capacity). Invariants, checked on construction and kept by every method: each available
    figure is within ``[0, total]``; a GPU device is unavailable either because the prober said
    so or because a reservation holds it.

    ``network_mbps`` is the link speed: tasks are checked against it but it is not divided up
    (bandwidth is shared, not partitioned). ``updated_at`` is the caller's clock at probe time.
    """

    __codec_fields__ = (
        "cpu_cores_total",
        "memory_mb_total",
        "storage_mb_total",
        "cpu_cores_available",
        "memory_mb_available",
        "storage_mb_available",
        "network_mbps",
        "gpu_devices",
        "updated_at",
    )
    """What an executor announces: the current figures; the ledger stays local."""

    __slots__ = (
        "cpu_cores_total",
        "memory_mb_total",
        "storage_mb_total",
        "network_mbps",
        "updated_at",
        "_base",
        "_probed_gpus",
        "_held",
        "_next_id",
        "cpu_cores_available",
        "memory_mb_available",
        "storage_mb_available",
        "gpu_devices",
    )

    def __init__(
        self,
        *,
        cpu_cores_total: float,
        memory_mb_total: int,
        storage_mb_total: int,
        network_mbps: float,
        gpu_devices: Iterable[GpuDevice] = (),
        updated_at: float = 0.0,
        cpu_cores_available: float | None = None,
        memory_mb_available: int | None = None,
        storage_mb_available: int | None = None,
    ) -> None:
        self.cpu_cores_total = chk.number(
            "node_capacity.cpu_cores_total", cpu_cores_total, lo=0.0, hi=MAX_CPU_CORES
        )
        self.memory_mb_total = chk.integer(
            "node_capacity.memory_mb_total", memory_mb_total, lo=0, hi=MAX_MEMORY_MB
        )
        self.storage_mb_total = chk.integer(
            "node_capacity.storage_mb_total", storage_mb_total, lo=0, hi=MAX_STORAGE_MB
        )
        self.network_mbps = chk.number(
            "node_capacity.network_mbps", network_mbps, lo=0.0, hi=MAX_NETWORK_MBPS
        )
        self.updated_at = chk.number("node_capacity.updated_at", updated_at, lo=0.0, hi=math.inf)
        cpu_a = (
            self.cpu_cores_total
            if cpu_cores_available is None
            else chk.number(
                "node_capacity.cpu_cores_available",
                cpu_cores_available,
                lo=0.0,
                hi=self.cpu_cores_total,
            )
        )
        mem_a = (
            self.memory_mb_total
            if memory_mb_available is None
            else chk.integer(
                "node_capacity.memory_mb_available",
                memory_mb_available,
                lo=0,
                hi=self.memory_mb_total,
            )
        )
        sto_a = (
            self.storage_mb_total
            if storage_mb_available is None
            else chk.integer(
                "node_capacity.storage_mb_available",
                storage_mb_available,
                lo=0,
                hi=self.storage_mb_total,
            )
        )
        self._base = _Baseline(cpu_a, mem_a, sto_a)
        devices = tuple(gpu_devices)
        if len(devices) > MAX_GPU_DEVICES:
            raise ResourceError(f"node_capacity.gpu_devices: more than {MAX_GPU_DEVICES} devices")
        seen: set[str] = set()
        for dev in devices:
            if not isinstance(dev, GpuDevice):
                raise ResourceError(
                    f"node_capacity.gpu_devices: expected GpuDevice items, got {type(dev).__name__}"
                )
            if dev.device_id in seen:
                raise ResourceError(
                    f"node_capacity.gpu_devices: duplicate device_id {dev.device_id!r}"
                )
            seen.add(dev.device_id)
        self._probed_gpus = devices
        self._held: dict[int, Reservation] = {}
        self._next_id = 0
        self._recompute()

    @classmethod
    def from_totals(
        cls,
        cpu_cores: float,
        memory_mb: int,
        storage_mb: int,
        network_mbps: float,
        gpu_devices: Iterable[GpuDevice] = (),
        updated_at: float = 0.0,
    ) -> NodeCapacity:
        """A capacity whose available figures equal its totals (nothing reserved)."""
        return cls(
            cpu_cores_total=cpu_cores,
            memory_mb_total=memory_mb,
            storage_mb_total=storage_mb,
            network_mbps=network_mbps,
            gpu_devices=gpu_devices,
            updated_at=updated_at,
        )

    @property
    def network_mbps_total(self) -> float:
        """Same as ``network_mbps`` (bandwidth is not reserved)."""
        return self.network_mbps

    @property
    def reservations(self) -> tuple[Reservation, ...]:
        """The reservations currently held, oldest first."""
        return tuple(self._held.values())

    # -- matching -------------------------------------------------------------------------

    def _pick_gpus(self, spec: GpuSpec) -> tuple[str, ...] | None:
        fits = sorted(
            (d for d in self.gpu_devices if d.available and d.satisfies(spec)), key=_gpu_key
        )
        if len(fits) < spec.device_count:
            return None
        return tuple(d.device_id for d in fits[: spec.device_count])

    def _check_pinned(self, spec: GpuSpec | None, ids: Sequence[str]) -> str | None:
        """Why the pinned devices ``ids`` cannot serve ``spec``, or None when they can."""
        if spec is None:
            return "gpu_device_ids given but the profile has no gpu_spec" if ids else None
        if len(set(ids)) != len(ids):
            return "gpu_device_ids: devices must be distinct"
        if len(ids) != spec.device_count:
            return (
                f"gpu_device_ids: {len(ids)} device(s) given, "
                f"gpu_spec.device_count is {spec.device_count}"
            )
        by_id = {d.device_id: d for d in self.gpu_devices}
        for i in ids:
            dev = by_id.get(i)
            if dev is None:
                return f"gpu_device_ids: no device {i!r}"
            if not dev.available:
                return f"gpu_device_ids: device {i!r} is not available"
            if not dev.satisfies(spec):
                return f"gpu_device_ids: device {i!r} does not satisfy the gpu_spec"
        return None

    def why_not(self, profile: ResourceProfile) -> str | None:
        """The first reason ``profile`` does not fit (naming the resource), or None if it fits."""
        if profile.cpu_cores is not None and profile.cpu_cores > self.cpu_cores_available:
            return f"cpu_cores: needs {profile.cpu_cores:g}, {self.cpu_cores_available:g} available"
        if profile.memory_mb is not None and profile.memory_mb > self.memory_mb_available:
            return f"memory_mb: needs {profile.memory_mb}, {self.memory_mb_available} available"
        if profile.storage_mb is not None and profile.storage_mb > self.storage_mb_available:
            return f"storage_mb: needs {profile.storage_mb}, {self.storage_mb_available} available"
        if profile.network_mbps is not None and profile.network_mbps > self.network_mbps:
            return f"network_mbps: needs {profile.network_mbps:g}, link is {self.network_mbps:g}"
        spec = profile.gpu_spec
        if spec is not None and self._pick_gpus(spec) is None:
            return (
                f"gpu_spec: needs {spec.device_count} available device(s) with "
                f">= {spec.memory_gb:g} GB and {spec.compute_capability} or newer"
            )
        return None

    def can_fit(self, profile: ResourceProfile) -> bool:
        """True when ``profile`` could be reserved now."""
        return self.why_not(profile) is None

    # -- reservation ----------------------------------------------------------------------

    def reserve(
        self, profile: ResourceProfile, gpu_device_ids: Sequence[str] | None = None
    ) -> Reservation:
        """Take ``profile`` out of the available figures and return the receipt.

        With a GPU spec, ``gpu_device_ids`` pins the task to those devices; without it the
        smallest satisfying available devices are chosen (deterministically). Raises
        :class:`ResourceError` naming the resource and changes nothing when it does not fit.
        """
        if not isinstance(profile, ResourceProfile):
            raise ResourceError("profile: expected a ResourceProfile")
        reason = self.why_not(profile)
        if reason is None and gpu_device_ids is not None:
            reason = self._check_pinned(profile.gpu_spec, tuple(gpu_device_ids))
        if reason is not None:
            raise ResourceError(f"does not fit: {reason}")
        if profile.gpu_spec is None:
            ids: tuple[str, ...] = ()
        elif gpu_device_ids is not None:
            ids = tuple(gpu_device_ids)
        else:
            ids = self._pick_gpus(profile.gpu_spec) or ()
        res = Reservation(self._next_id, profile, ids)
        self._next_id += 1
        self._held[res.reservation_id] = res
        self._recompute()
        return res

    def release(self, reservation: Reservation) -> None:
        """Give back what ``reservation`` took, including its GPU devices.

        Releasing a reservation this capacity does not hold (already released, or from another
        node) raises :class:`ResourceError` and changes nothing, so figures never exceed totals.
        """
        held = self._held.get(getattr(reservation, "reservation_id", -1))
        if held is None or held != reservation:
            raise ResourceError(f"release: reservation {reservation!r} is not held here")
        del self._held[reservation.reservation_id]
        self._recompute()

    def _recompute(self) -> None:
        held = self._held.values()
        cpu = math.fsum(r.profile.cpu_cores or 0.0 for r in held)
        mem = sum(r.profile.memory_mb or 0 for r in held)
        sto = sum(r.profile.storage_mb or 0 for r in held)
        self.cpu_cores_available = min(self.cpu_cores_total, max(0.0, self._base.cpu - cpu))
        self.memory_mb_available = min(self.memory_mb_total, max(0, self._base.memory - mem))
        self.storage_mb_available = min(self.storage_mb_total, max(0, self._base.storage - sto))
        pinned = {i for r in held for i in r.gpu_device_ids}
        self.gpu_devices = tuple(
            replace(d, available=False) if d.device_id in pinned else d for d in self._probed_gpus
        )

    # -- views ----------------------------------------------------------------------------

    def available_ratio(self) -> float:
        """How empty the node is, in ``[0, 1]``: 0.0 full, 1.0 empty.

        The mean of the CPU and memory ratios, and of the fraction of GPU devices available when
        the node has any. A resource whose total is zero is left out; with none left, 0.0.
        """
        parts = []
        if self.cpu_cores_total > 0:
            parts.append(self.cpu_cores_available / self.cpu_cores_total)
        if self.memory_mb_total > 0:
            parts.append(self.memory_mb_available / self.memory_mb_total)
        if self.gpu_devices:
            parts.append(sum(d.available for d in self.gpu_devices) / len(self.gpu_devices))
        if not parts:
            return 0.0
        return min(1.0, max(0.0, math.fsum(parts) / len(parts)))

    def snapshot(self) -> NodeCapacity:
        """An independent capacity with the current available figures and no ledger."""
        return NodeCapacity(
            cpu_cores_total=self.cpu_cores_total,
            memory_mb_total=self.memory_mb_total,
            storage_mb_total=self.storage_mb_total,
            network_mbps=self.network_mbps,
            gpu_devices=self.gpu_devices,
            updated_at=self.updated_at,
            cpu_cores_available=self.cpu_cores_available,
            memory_mb_available=self.memory_mb_available,
            storage_mb_available=self.storage_mb_available,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeCapacity):
            return NotImplemented
        return bool(self.to_dict() == other.to_dict())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"NodeCapacity(cpu={self.cpu_cores_available:g}/{self.cpu_cores_total:g}, "
            f"mem={self.memory_mb_available}/{self.memory_mb_total} MB, "
            f"storage={self.storage_mb_available}/{self.storage_mb_total} MB, "
            f"net={self.network_mbps:g} Mb/s, gpus={len(self.gpu_devices)}, "
            f"held={len(self._held)})"
        )
