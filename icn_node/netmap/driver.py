"""The network map as a trio service: a thin driver around :class:`~.core.NetmapCore`.

:class:`NetmapService` owns what the core may not touch: the clock, the mesh and the metrics.
It watches the mesh's RTT samples (one per keepalive pong, :meth:`MeshService.rtt_samples`),
receives ``icn/netmap`` direct messages (peers' coordinates, probes, probe replies), reads
executors' coordinates from their announcements on ``icn/compute`` (it subscribes beside the
compute service), and sleeps until the core's next deadline to call ``tick(now, mesh_bytes)``.
What the core decides comes back as actions: messages to send, measurements and probe outcomes
to count.

Other services use :meth:`coordinate` (the compute service announces it), :meth:`estimate` and
:meth:`transfer_s` (transfer planning: which holder is fastest), :meth:`rtt_between` (any two
known nodes), :meth:`observe_transfer` (a transfer service reports a timed transfer) and
:meth:`topology` (the RPC).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..errors import CodecError
from ..logs import get_logger
from ..mesh.core import Delivery, RttSample
from ..scheduler.coordinates import Coordinate
from ..wire import (
    COMPUTE_TOPIC,
    NETMAP_TOPIC,
    ExecutorAnnounceMsg,
    Message,
    NetmapCoordMsg,
    NetmapProbeMsg,
    NetmapProbeReplyMsg,
    decode_message,
    encode_message,
)
from .core import Action, Measured, NetmapConfig, NetmapCore, ProbeDone, Send

log = get_logger("icn.netmap")

RTT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BANDWIDTH_BUCKETS_MBPS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)


class Mesh(Protocol):
    """What the network map needs of the mesh service."""

    def subscribe(self, topic: str, buffer: int = ...) -> trio.MemoryReceiveChannel[Delivery]: ...

    def rtt_samples(self, buffer: int = ...) -> trio.MemoryReceiveChannel[RttSample]: ...

    async def send_direct(self, did: str, topic: str, payload: bytes) -> None: ...

    def bytes_total(self) -> int: ...

    def linked(self, did: str) -> bool: ...


class _Collector:
    """Probe bytes, mesh bytes and the coordinate's error, read from the core at scrape time
    (so the probe/mesh ratio is exact in every scrape)."""

    def __init__(self, service: NetmapService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        core = self.service.core
        yield CounterMetricFamily(
            "icn_netmap_probe_bytes",
            "Bytes of bandwidth probes sent and received (counted with the per-message allowance).",
            value=core.probe_bytes,
        )
        yield CounterMetricFamily(
            "icn_netmap_mesh_bytes",
            "Frame bytes on mesh links (both directions): the probe budget's base.",
            value=self.service.mesh.bytes_total(),
        )
        yield GaugeMetricFamily(
            "icn_netmap_coordinate_error",
            "This node's Vivaldi error estimate (relative; 1.5 = knows nothing yet).",
            value=core.coordinate.error,
        )
        yield GaugeMetricFamily(
            "icn_netmap_known_coordinates",
            "Other nodes whose coordinate this node knows.",
            value=len(core.known),
        )


class _Metrics:
    def __init__(self, registry: CollectorRegistry, service: NetmapService) -> None:
        self.rtt = Histogram(
            "icn_netmap_rtt_seconds",
            "Round-trip times measured to linked peers (keepalive ping/pong).",
            buckets=RTT_BUCKETS_S,
            registry=registry,
        )
        self.bandwidth = Histogram(
            "icn_netmap_bandwidth_mbps",
            "Bandwidth measurements (Mbit/s), from transfers and probes.",
            ["source"],
            buckets=BANDWIDTH_BUCKETS_MBPS,
            registry=registry,
        )
        self.probes = Counter(
            "icn_netmap_probes_total",
            "Probe rounds, by outcome (success, failure).",
            ["outcome"],
            registry=registry,
        )
        registry.register(_Collector(service))


async def _messages(
    inbox: trio.MemoryReceiveChannel[Delivery], drop_event: str | None
) -> AsyncIterator[tuple[str, Message]]:
    """(origin, decoded message) for each delivery; one that does not decode is skipped (and
    logged as ``drop_event`` when given)."""
    async for d in inbox:
        try:
            msg = decode_message(d.payload)
        except CodecError as e:
            if drop_event is not None:
                log.warning(drop_event, origin=d.origin, reason=str(e))
            continue
        yield d.origin, msg


class Lookup(Mapping[str, float]):
    """A read-only mapping whose values are computed when looked up (``get`` is one call);
    iterating builds the whole dict (rarely needed: logs, tests)."""

    __slots__ = ("_one", "_all")

    def __init__(
        self, one: Callable[[str], float | None], every: Callable[[], dict[str, float]]
    ) -> None:
        self._one = one
        self._all = every

    def __getitem__(self, key: str) -> float:
        value = self._one(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class NetmapService:
    def __init__(
        self,
        did: str,
        mesh: Mesh,
        registry: CollectorRegistry | None = None,
        *,
        config: NetmapConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.did = did
        self.mesh = mesh
        rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
        self.core = NetmapCore(did, rng, config)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = _Metrics(self.registry, self)
        self._offset = time.time() - trio.current_time()
        self._sleep = trio.CancelScope()  # the timer loop's sleep, while it sleeps

    def now(self) -> float:
        return trio.current_time() + self._offset

    # --- service ---------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        inbox = self.mesh.subscribe(NETMAP_TOPIC, buffer=256)
        announcements = self.mesh.subscribe(COMPUTE_TOPIC, buffer=1024)
        samples = self.mesh.rtt_samples(buffer=1024)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._samples, samples)
            nursery.start_soon(self._receive, inbox)
            nursery.start_soon(self._announcements, announcements)
            nursery.start_soon(self._timer_loop)
            task_status.started()

    async def _samples(self, samples: trio.MemoryReceiveChannel[RttSample]) -> None:
        async for s in samples:
            self.metrics.rtt.observe(s.rtt_ms / 1000.0)
            await self._run(self.core.rtt_sample(s.did, s.rtt_ms, self.now()))

    async def _receive(self, inbox: trio.MemoryReceiveChannel[Delivery]) -> None:
        async for origin, msg in _messages(inbox, "netmap_message_dropped"):
            now = self.now()
            if isinstance(msg, NetmapCoordMsg):
                self.core.coordinate_heard(origin, msg.coordinate, now, "peer", msg.probe_room)
            elif isinstance(msg, NetmapProbeMsg):
                await self._run(self.core.on_probe(origin, msg, now, self.mesh.bytes_total()))
            elif isinstance(msg, NetmapProbeReplyMsg):
                await self._run(self.core.on_probe_reply(origin, msg, now))
            else:
                log.debug("netmap_message_unexpected", tag=msg.TAG, origin=origin)

    async def _announcements(self, inbox: trio.MemoryReceiveChannel[Delivery]) -> None:
        """Executors' coordinates, from their announcements (the compute service decodes and
        checks them too; a bad one is its to log and count, so it is skipped quietly here)."""
        async for origin, msg in _messages(inbox, None):
            if not isinstance(msg, ExecutorAnnounceMsg) or msg.info.did != origin:
                continue
            if msg.info.coordinate is not None:
                self.core.coordinate_heard(origin, msg.info.coordinate, self.now(), "announce")

    async def _timer_loop(self) -> None:
        """Tick at the core's next deadline; :meth:`_rearm` pulls the deadline in."""
        while True:
            with trio.CancelScope(deadline=self._deadline()) as self._sleep:
                await trio.sleep_forever()
            await self._run(self.core.tick(self.now(), self.mesh.bytes_total()))

    def _deadline(self) -> float:
        """The core's next deadline on trio's clock."""
        return self.core.next_deadline() - self._offset

    def _rearm(self) -> None:
        self._sleep.deadline = min(self._sleep.deadline, self._deadline())

    # --- actions ---------------------------------------------------------------------------

    async def _run(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                # Over the link only: never a signed gossip detour (a link that just went).
                if self.mesh.linked(a.to):
                    await self.mesh.send_direct(a.to, NETMAP_TOPIC, encode_message(a.msg))
            else:
                self._count(a)
        self._rearm()

    def _count(self, a: Measured | ProbeDone) -> None:
        if isinstance(a, Measured):
            self.metrics.bandwidth.labels(source=a.bandwidth.source).observe(a.bandwidth.mbps)
        elif a.mbps is not None:
            self.metrics.probes.labels(outcome="success").inc()
            log.debug("netmap_probe_done", did=a.did, mbps=round(a.mbps, 1))
        else:
            self.metrics.probes.labels(outcome="failure").inc()
            log.debug("netmap_probe_failed", did=a.did, reason=a.reason)

    # --- for other services ----------------------------------------------------------------

    def coordinate(self) -> Coordinate:
        """This node's coordinate now."""
        return self.core.coordinate

    def estimate(self, did: str) -> tuple[float | None, float | None]:
        """(RTT ms, bandwidth Mbit/s) to ``did``, each None when unknown: the measured RTT of a
        linked peer, else the coordinates' estimate; the bandwidth of a recent transfer or
        probe."""
        return self.core.estimate(did, self.now())

    def rtts(self) -> dict[str, float]:
        """RTT (ms) to every node this node can tell (measured, else from coordinates)."""
        return self.core.rtts(self.now())

    def bandwidths(self) -> dict[str, float]:
        """Bandwidth (Mbit/s) to every peer with a recent measurement."""
        return self.core.bandwidths(self.now())

    def rtt_view(self) -> Mapping[str, float]:
        """:meth:`rtts` as a view that estimates each RTT when it is looked up: scoring a
        request reads one (the submitter's), so it costs one estimate, not one per node
        known (which grows with the cooperative)."""
        now = self.now()
        return Lookup(lambda d: self.core.rtt_ms(d, now), lambda: self.core.rtts(now))

    def bandwidth_view(self) -> Mapping[str, float]:
        """:meth:`bandwidths` as a view computed per lookup (see :meth:`rtt_view`)."""
        now = self.now()

        def one(did: str) -> float | None:
            bw = self.core.bandwidth(did, now)
            return None if bw is None else bw.mbps

        return Lookup(one, lambda: self.core.bandwidths(now))

    def transfer_s(self, did: str, nbytes: int) -> float | None:
        """Estimated seconds to fetch ``nbytes`` from ``did`` (RTT + size / bandwidth)."""
        return self.core.transfer_s(did, nbytes, self.now())

    def rtt_between(self, a: str, b: str) -> float | None:
        """The RTT (ms) between any two nodes whose coordinates are known (either may be us)."""
        return self.core.estimate_rtt_ms(a, b)

    def observe_transfer(self, did: str, nbytes: int, seconds: float) -> None:
        """``nbytes`` arrived from ``did`` in ``seconds``: a passive bandwidth measurement (it
        also spares that peer a probe)."""
        for a in self.core.observe_transfer(did, nbytes, seconds, self.now()):
            assert isinstance(a, Measured)
            self._count(a)

    def topology(self) -> dict[str, Any]:
        return self.core.view(self.now())
