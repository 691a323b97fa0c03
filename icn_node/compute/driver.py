"""The compute driver: moves bytes and time for the :class:`~icn_node.compute.core.ComputeCore`.

It decides nothing. It

* decodes mesh deliveries (``icn_node.wire``) and hands each to ``core.receive`` with the
  delivery's authenticated origin as the sender;
* executes the effects the core returns, in order: ``Persist`` is written to SQLite before the
  next effect runs, ``Send``/``Publish`` go out through the mesh, ``StartRun``/``StopRun`` go to
  :class:`~icn_node.compute.runs.Runs`, ``StateChanged`` feeds the watch log, metrics are counted;
* sleeps until ``core.next_deadline()`` and calls ``core.on_timer(now)``;
* tells the core when the host's readings or the mesh's peer count change.

Time for the core is :meth:`ComputeDriver.now`: the trio clock shifted to wall-clock seconds at
start, so records persisted by one process stay meaningful to the next and ``MockClock`` still
drives it. Core calls are synchronous, so two events never interleave inside the core.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..blobs import BlobStore
from ..config import Config
from ..errors import CodecError, IcnError
from ..logs import LimitedLog, get_logger
from ..mesh.core import PeerUp
from ..scheduler.cluster_metrics import NodeMetrics
from ..scheduler.coordinates import Coordinate
from ..scheduler.locality import BlobRegistry
from ..scheduler.resources import NodeCapacity
from ..scheduler.tasks import TaskState
from ..store import NodeStore
from ..wire import (
    COMPUTE_DIRECT_TOPIC,
    COMPUTE_TOPIC,
    decode_message,
    encode_message,
)
from . import effects as E
from .core import ComputeCore
from .records import JobRecord, TaskRecord
from .runs import Abandoned, BlobFetcher, Runs

log = get_logger("icn.compute")

WATCH_EVENTS = 10_000
HOST_POLL_S = 1.0


class Host(Protocol):
    """What the driver reads of the node: the latest capacity and load readings."""

    capacity: NodeCapacity | None
    host_load: float
    load_metrics: NodeMetrics | None


class Mesh(Protocol):
    """What the driver needs of the mesh service."""

    def subscribe(self, topic: str, buffer: int = ...) -> Any: ...

    async def publish(self, topic: str, payload: bytes) -> Any: ...

    async def send_direct(self, to: str, topic: str, payload: bytes) -> Any: ...

    def peer_count(self) -> int: ...

    def peer_events(self) -> Any: ...

    def linked(self, did: str) -> bool: ...

    def rtt_ms(self) -> dict[str, float]: ...


class Network(Protocol):
    """What the driver reads of the network map: this node's coordinate, and RTT and
    bandwidth to the nodes it can tell (measured, or estimated from coordinates)."""

    def coordinate(self) -> Coordinate: ...

    def rtt_view(self) -> Mapping[str, float]: ...

    def bandwidth_view(self) -> Mapping[str, float]: ...


class BlobLocations(Protocol):
    def holders(self, h: bytes) -> list[str]: ...

    def snapshot(self) -> BlobRegistry: ...


class BlobService(BlobFetcher, Protocol):
    """What the compute wing needs of the blob service."""

    store: BlobStore

    @property
    def locations(self) -> BlobLocations: ...


class ComputeMetrics:
    """The seed's seven placement metrics plus task counters; no per-task or per-peer labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "icn_compute_placement_"
        self.counters: dict[str, Counter] = {
            E.REQUESTS_RECEIVED: Counter(
                p + "requests_received_total",
                "Placement requests this executor received.",
                registry=registry,
            ),
            E.OFFERS_SENT: Counter(
                p + "offers_sent_total", "Placement offers this executor sent.", registry=registry
            ),
            E.OFFERS_PREEMPTED: Counter(
                p + "offers_preempted_total",
                "Tentative reservations released because their submitter held more than its "
                "fair share while another submitter's task did not fit.",
                registry=registry,
            ),
            E.OFFERS_RECEIVED: Counter(
                p + "offers_received_total",
                "Placement offers this submitter received in time.",
                registry=registry,
            ),
            E.WINS: Counter(p + "wins_total", "Placements this executor won.", registry=registry),
            E.LOSSES: Counter(
                p + "losses_total",
                "Placements this executor offered on and lost.",
                registry=registry,
            ),
            E.TASKS_SUBMITTED: Counter(
                "icn_compute_tasks_submitted_total",
                "Tasks submitted here, by protocol.",
                ["protocol"],
                registry=registry,
            ),
            E.TASKS_FINISHED: Counter(
                "icn_compute_tasks_finished_total",
                "Tasks submitted here that ended, by final state.",
                ["state"],
                registry=registry,
            ),
            E.FUEL_USED: Counter(
                "icn_compute_fuel_used_total",
                "Fuel used by finished tasks submitted here.",
                registry=registry,
            ),
            E.DATA_TRANSFER_SAVED: Counter(
                p + "data_transfer_saved_bytes_total",
                "Bytes of task data a locality-blind choice (16A weights) would have moved "
                "beyond what the chosen executors had to fetch.",
                registry=registry,
            ),
            E.DATA_TRANSFER_NEEDED: Counter(
                p + "data_transfer_needed_bytes_total",
                "Bytes of task modules and inputs the chosen executors lacked.",
                registry=registry,
            ),
            E.PLACEMENTS_WITH_DATA: Counter(
                p + "with_data_total",
                "Placements of tasks whose data (module, inputs) this node knew.",
                registry=registry,
            ),
            E.PLACEMENTS_DATA_LOCAL: Counter(
                p + "data_local_total",
                "Placements on an executor holding all the task's data (data-local fraction: "
                "this over ..._with_data_total).",
                registry=registry,
            ),
            E.EXECUTOR_PENALTIES: Counter(
                "icn_compute_executor_penalties_total",
                "Executors this submitter caught out (lie, overrun, verify, lost): each lowers "
                "that executor's effective trust here.",
                ["reason"],
                registry=registry,
            ),
            E.REPLICAS: Counter(
                "icn_compute_replica_groups_total",
                "Replicated tasks settled (agreed, majority, no_agreement) and extra replicas run.",
                ["outcome"],
                registry=registry,
            ),
            E.RATE_LIMITED: Counter(
                "icn_compute_rate_limited_total",
                "Members' placement requests and announcements dropped over their per-origin rate.",
                ["kind"],
                registry=registry,
            ),
            E.MESSAGES_DROPPED: Counter(
                "icn_compute_messages_dropped_total",
                "Compute messages refused at decode or by the core.",
                registry=registry,
            ),
        }
        self.histograms: dict[str, Histogram] = {
            E.SCORE: Histogram(
                p + "score",
                "Scores this executor offered with.",
                buckets=[i / 10 for i in range(1, 11)],
                registry=registry,
            ),
            E.LOCALITY_SCORE: Histogram(
                p + "locality_score",
                "Locality components of this executor's offers.",
                buckets=[i / 10 for i in range(1, 11)],
                registry=registry,
            ),
            E.NETWORK_SCORE: Histogram(
                p + "network_score",
                "Network components of this executor's offers.",
                buckets=[i / 10 for i in range(1, 11)],
                registry=registry,
            ),
            E.PLACEMENT_DURATION: Histogram(
                p + "duration_seconds",
                "Placement latency at the submitter: request to claim accepted.",
                buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
                registry=registry,
            ),
        }
        self.running = Gauge(
            "icn_compute_runs_active", "Sandboxes running on this executor.", registry=registry
        )

    def count(self, metric: str, label: str = "", n: float = 1) -> None:
        c = self.counters[metric]
        (c.labels(label) if label else c).inc(n)


class WatchLog:
    """The last ``WATCH_EVENTS`` task state changes, numbered, for ``compute.watch``."""

    def __init__(self) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=WATCH_EVENTS)
        self.seq = 0
        self.changed = trio.Event()

    def add(self, change: E.StateChanged, at: float) -> None:
        self.seq += 1
        rec = change.record
        self.events.append(
            {
                "seq": self.seq,
                "task": change.task_hash.hex(),
                "state": change.new.value,
                "old": change.old.value if change.old is not None else None,
                "executor": rec.executor,
                "attempt": rec.attempt,
                "reason": rec.reason or None,
                "at": at,
            }
        )
        self.changed.set()
        self.changed = trio.Event()


class ComputeDriver:
    """Runs one node's :class:`ComputeCore` (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        did: str,
        mesh: Mesh,
        blobs: BlobService,
        host: Host,
        registry: CollectorRegistry,
        trust: Callable[[str], float],
        *,
        network: Network | None = None,
    ) -> None:
        self.config = config
        self.did = did
        self.mesh = mesh
        self.blobs = blobs
        self.host = host
        self._offset = time.time() - trio.current_time()
        self.store = NodeStore(config.data_dir / "node.db")
        self.metrics = ComputeMetrics(registry)
        self.watch = WatchLog()
        self._warn = LimitedLog(log, trio.current_time)
        self.core = ComputeCore.from_config(
            did,
            trust,
            config.compute,
            capacity=host.capacity,
            rng=random.Random(int.from_bytes(os.urandom(8), "big")),
            region=config.node.region or None,
            blob_registry=lambda: blobs.locations.snapshot(),
            rtt_ms=network.rtt_view if network is not None else mesh.rtt_ms,
            bandwidth_mbps=network.bandwidth_view if network is not None else dict,
            coordinate=network.coordinate if network is not None else None,
        )
        self.runs = Runs(
            did,
            config.compute,
            config.data_dir / "runs",
            blobs.store,
            blobs,
            self.now,
            self.metrics.running,
        )
        self._wakeup = trio.Event()
        self._armed_for = math.inf  # the deadline the timer loop sleeps until
        self._nursery: trio.Nursery | None = None

    def now(self) -> float:
        return trio.current_time() + self._offset

    # --- service -----------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        gossip = self.mesh.subscribe(COMPUTE_TOPIC, buffer=4096)
        direct = self.mesh.subscribe(COMPUTE_DIRECT_TOPIC, buffer=4096)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._restore()
                nursery.start_soon(self._receive, gossip)
                nursery.start_soon(self._receive, direct)
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._host_loop)
                nursery.start_soon(self._link_loop, self.mesh.peer_events())
                task_status.started()
        finally:
            self.store.close()

    async def _restore(self) -> None:
        await self.runs.clear()
        unfinished = [s.value for s in TaskState if not s.is_final]
        tasks = [TaskRecord.from_dict(d) for _, d in self.store.scan("tasks", states=unfinished)]
        jobs = [JobRecord.from_dict(d) for _, d in self.store.scan("jobs")]
        groups = {t.spec.group for t in tasks if t.spec.group is not None}
        done = []
        if groups:  # the finished replicas of groups still in flight
            final = [s.value for s in TaskState if s.is_final]
            for _, d in self.store.scan("tasks", states=final):
                rec = TaskRecord.from_dict(d)
                if rec.spec.group in groups:
                    done.append(rec)
        if tasks:
            log.info("compute_restored", tasks=len(tasks))
        await self.report(lambda core, now: core.restore(tasks, jobs, now, done))

    async def report(self, event: Callable[[ComputeCore, float], list[E.Effect]]) -> None:
        """Run one core event now and execute its effects."""
        await self._execute(event(self.core, self.now()))

    async def _run(self, start: E.StartRun) -> None:
        """One run, reported to the core as it starts and as it ends (exactly once)."""
        th = start.spec.task_hash
        await self.report(lambda core, now: core.run_started(th, now))
        outcome = await self.runs.run(start.spec, start.attempt, start.reservation)
        if isinstance(outcome, Abandoned):
            await self.report(lambda core, now: core.run_abandoned(th, outcome.reason, now))
        else:
            await self.report(lambda core, now: core.run_finished(th, outcome, now))

    # --- incoming ----------------------------------------------------------------------------

    async def _receive(self, inbox: Any) -> None:
        async for delivery in inbox:
            try:
                msg = decode_message(delivery.payload)
            except CodecError as e:
                self.metrics.count(E.MESSAGES_DROPPED)
                self._warn.warning("compute_message_dropped", origin=delivery.origin, reason=str(e))
                continue
            origin = delivery.origin
            try:
                await self._execute(self.core.receive(origin, msg, self.now()))
            except IcnError as e:
                # A well-formed message a core refused with a domain error: the sender's
                # fault; logged and dropped, the node goes on.
                self.metrics.count(E.MESSAGES_DROPPED)
                self._warn.warning(
                    "compute_message_refused", origin=origin, tag=msg.TAG, reason=str(e)
                )

    # --- effects -----------------------------------------------------------------------------

    async def _execute(self, effects: list[E.Effect]) -> None:
        for effect in effects:
            await self._do(effect)
        # Any event may bring the core's next deadline forward (an early announcement, say).
        deadline = self.core.next_deadline()
        if deadline is not None and deadline < self._armed_for:
            self._wakeup.set()

    async def _do(self, effect: E.Effect) -> None:
        match effect:
            case E.Send(to, msg):
                await self.mesh.send_direct(to, COMPUTE_DIRECT_TOPIC, encode_message(msg))
            case E.Publish(msg):
                await self.mesh.publish(COMPUTE_TOPIC, encode_message(msg))
            case E.Persist(record=TaskRecord() as rec):
                self.store.put(
                    "tasks", rec.task_hash, rec.state.value, rec.updated_at, rec.to_dict()
                )
            case E.Persist(record=JobRecord() as job):
                self.store.put(
                    "jobs", job.task_hash, job.state.value, job.updated_at, job.to_dict()
                )
            case E.StateChanged():
                self.watch.add(effect, self.now())
            case E.StartRun():
                assert self._nursery is not None
                self._nursery.start_soon(self._run, effect)
            case E.StopRun(task_hash):
                self.runs.stop(task_hash)
            case E.Count(metric, label, n):
                self.metrics.count(metric, label, n)
            case E.Observe(metric, value):
                self.metrics.histograms[metric].observe(value)
            case E.Ignored(reason, task_hash, sender):
                log.debug(
                    "compute_event_ignored",
                    reason=reason,
                    task=task_hash.hex() if task_hash else None,
                    sender=sender,
                )
            case E.Rejected(tag, sender, reason):
                self.metrics.count(E.MESSAGES_DROPPED)
                self._warn.warning("compute_message_refused", origin=sender, tag=tag, reason=reason)

    # --- time and the host -------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            self._armed_for = math.inf if deadline is None else deadline
            at = trio.current_time() + 3600 if deadline is None else deadline - self._offset
            with trio.move_on_at(at):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = self.now()
            deadline = self.core.next_deadline()
            if deadline is not None and now >= deadline:
                await self._execute(self.core.on_timer(now))

    async def _link_loop(self, events: Any) -> None:
        """Tell the core when the link to a peer is gone (and when it is back)."""
        async for ev in events:
            now = self.now()
            if isinstance(ev, PeerUp):
                await self._execute(self.core.link_up(ev.did, now))
            elif not self.mesh.linked(ev.did):
                await self._execute(self.core.link_down(ev.did, now))

    async def _host_loop(self) -> None:
        """Tell the core about new host readings and peer counts (polled: both are cheap)."""
        interval = min(HOST_POLL_S, self.config.compute.announce_interval_s / 4)
        last_capacity: NodeCapacity | None = None
        last_peers = -1
        while True:
            cap, peers = self.host.capacity, self.mesh.peer_count()
            if cap is not last_capacity or peers != last_peers:
                fresh = cap if cap is not last_capacity else None
                last_capacity, last_peers = cap, peers
                now, h = self.now(), self.host
                effects = self.core.host_changed(fresh, h.load_metrics, h.host_load, now)
                await self._execute(effects + self.core.peers_changed(peers, now))
            await trio.sleep(interval)


__all__ = ["ComputeDriver", "ComputeMetrics", "Host", "WatchLog"]
