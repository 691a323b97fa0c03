"""The running node: its shared parts and the services that run in one trio nursery.

:class:`Node` holds what every service needs (config, identity, metrics registry, RPC method
registry, the latest capacity reading) and starts the services in order, each through trio's
``task_status.started()`` protocol, so that when :meth:`Node.run` reports started, every
service is listening. The RPC socket opens last: a socket that answers means a node that is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from . import __version__
from .blobs import BlobStore
from .blobs.driver import BlobService
from .blobs.rpc import register as register_blob_rpc
from .capacity import MB, HostSample, advertised_capacity, load_nvml, read_gpus, sample_host
from .compute.driver import ComputeDriver
from .compute.records import JobRecord, JobState, TaskRecord
from .compute.rpc import ComputeRpc
from .config import Config, format_hostport, parse_hostport
from .dashboard import Dashboard
from .identity import NodeIdentity
from .logs import get_logger
from .mesh.driver import MeshService
from .mesh.rpc import register as register_mesh_rpc
from .metrics import Metrics, serve_metrics
from .netmap.driver import NetmapService
from .netmap.rpc import register as register_netmap_rpc
from .rpc import RpcRegistry
from .rpc.params import NoParams
from .rpc.server import serve_rpc
from .scheduler import Ewma, NodeCapacity, NodeMetrics
from .scheduler.tasks import TaskSpec, TaskState

log = get_logger("icn.node")

LOAD_HALF_LIFE_SAMPLES = 3.0


class Node:
    def __init__(self, config: Config, identity: NodeIdentity) -> None:
        self.config = config
        self.identity = identity
        self.did = identity.did
        self.metrics = Metrics(self.did, config.node.region)
        self.rpc = RpcRegistry()
        self.addresses: dict[str, str] = {}
        self.capacity: NodeCapacity | None = None
        # CPU load in [0, 1], EWMA-smoothed over capacity samples (half-life: 3 samples); the
        # executor scores with it and announces it as NodeMetrics.
        self.host_load: float = 0.0
        self.load_metrics: NodeMetrics | None = None
        self._load = Ewma.from_half_life(0.0, LOAD_HALF_LIFE_SAMPLES)
        self._started_at: float | None = None
        self._gpus: list | None = None
        self.mesh: MeshService | None = None  # the mesh service, when running
        self.blobs: BlobService | None = None  # the blob service, when running
        self.compute: ComputeDriver | None = None  # the compute driver, when running
        self.netmap: NetmapService | None = None  # the network map, when running
        self.rpc.register("node.status", self._rpc_status, NoParams)
        self.rpc.register("node.capacity", self._rpc_capacity, NoParams)

    # --- capacity ------------------------------------------------------------------------

    def _measure(self, now: float) -> tuple[NodeCapacity, HostSample]:
        """Blocking: read the host (and, once, the GPUs) and apply the operator's caps."""
        if self._gpus is None:
            self._gpus = read_gpus(load_nvml()) if self.config.capacity.gpus else []
        sample = sample_host(self.config.data_dir)
        return advertised_capacity(sample, self.config.capacity, self._gpus, now), sample

    async def refresh_capacity(self) -> NodeCapacity:
        measured, sample = await trio.to_thread.run_sync(self._measure, trio.current_time())
        self.capacity = measured
        self._load = self._load.update(sample.cpu_load)
        self.host_load = min(1.0, max(0.0, self._load.value))
        self.load_metrics = NodeMetrics(
            address=self.did,
            timestamp=time.time(),
            cpu_load=self.host_load,
            memory_used=(sample.memory_total_mb - sample.memory_available_mb) * MB,
            memory_max=sample.memory_total_mb * MB,
        )
        return measured

    async def _capacity_loop(self) -> None:
        while True:
            await trio.sleep(self.config.capacity.sample_interval_s)
            try:
                await self.refresh_capacity()
            except OSError as e:
                log.warning("capacity_sample_failed", error=str(e))

    # --- RPC -----------------------------------------------------------------------------

    async def _rpc_status(self, params: NoParams) -> dict[str, Any]:
        uptime = trio.current_time() - self._started_at if self._started_at is not None else 0.0
        return {
            "did": self.did,
            "version": __version__,
            "uptime_s": round(uptime, 3),
            "region": self.config.node.region,
            "listen": dict(self.addresses),
            "peers": self.mesh.peer_count() if self.mesh is not None else 0,
        }

    async def _rpc_capacity(self, params: NoParams) -> dict[str, Any]:
        capacity = self.capacity or await self.refresh_capacity()
        return capacity.to_dict()

    # --- life ----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            await self.refresh_capacity()
            nursery.start_soon(self._capacity_loop)
            if cfg.metrics.listen:
                host, port = parse_hostport(cfg.metrics.listen)
                app = Dashboard(self.rpc.invoke, host) if cfg.metrics.dashboard else None
                bound = await nursery.start(serve_metrics, self.metrics, host, port, app)
                self.addresses["metrics"] = format_hostport(*bound)
            await self._start_mesh(nursery)
            await self._start_netmap(nursery)
            await self._start_compute(nursery)
            socket_path = await nursery.start(
                lambda task_status: serve_rpc(
                    self.rpc,
                    cfg.rpc_socket,
                    max_request_bytes=cfg.rpc.max_request_bytes,
                    idle_timeout_s=cfg.rpc.idle_timeout_s,
                    allowed_group=cfg.rpc.allowed_group,
                    task_status=task_status,
                )
            )
            self.addresses["rpc"] = str(socket_path)
            log.info("node_started", did=self.did, version=__version__, **self.addresses)
            task_status.started(self)

    async def _start_mesh(self, nursery: trio.Nursery) -> None:
        mesh = MeshService(
            self.config.mesh,
            self.identity,
            region=self.config.node.region,
            registry=self.metrics.registry,
        )
        self.addresses["mesh"] = await nursery.start(mesh.serve)
        self.mesh = mesh
        register_mesh_rpc(self.rpc, mesh)

    async def _start_netmap(self, nursery: trio.Nursery) -> None:
        assert self.mesh is not None
        netmap = NetmapService(self.did, self.mesh, self.metrics.registry)
        await nursery.start(netmap.serve)
        self.netmap = netmap
        register_netmap_rpc(self.rpc, netmap)

    def trust(self, did: str) -> float:
        """This node's trust in ``did``: the configured table; a node trusts itself fully."""
        return 1.0 if did == self.did else self.config.trust_in(did)

    async def _start_compute(self, nursery: trio.Nursery) -> None:
        assert self.mesh is not None
        store = BlobStore(
            self.config.data_dir / "blobs", quota_bytes=self.config.blobs.quota_mb * MB
        )
        netmap = self.netmap
        blobs = BlobService(
            self.did,
            store,
            self.mesh,
            _now(),
            refresh_s=self.config.blobs.announce_interval_s,
            registry=self.metrics.registry,
            estimate=netmap.estimate if netmap is not None else None,
            on_transfer=netmap.observe_transfer if netmap is not None else None,
        )
        await nursery.start(blobs.serve)
        self.blobs = blobs
        register_blob_rpc(self.rpc, blobs, in_use=self.blob_in_use)
        compute = ComputeDriver(
            self.config,
            self.did,
            self.mesh,
            blobs,
            self,
            self.metrics.registry,
            self.trust,
            network=self.netmap,
        )
        await nursery.start(compute.serve)
        self.compute = compute
        ComputeRpc(compute).register(self.rpc)

    def blob_in_use(self, h: bytes) -> str | None:
        """Why blob ``h`` must stay (``blob.rm`` refuses): it is the code or an input of a job
        this executor has reserved or is running, or of a task submitted here that has not
        ended (its executor fetches the blob from here). None when nothing here needs it."""
        if self.compute is None:
            return None
        store = self.compute.store
        active = [JobState.RESERVED.value, JobState.RUNNING.value]
        for _, doc in store.scan("jobs", states=active):
            job = JobRecord.from_dict(doc)
            role = _role(job.spec, h)
            if role:
                return f"{role} of task {job.task_hash.hex()} ({job.state.value} on this executor)"
        unfinished = [s.value for s in TaskState if not s.is_final]
        for _, doc in store.scan("tasks", states=unfinished):
            rec = TaskRecord.from_dict(doc)
            role = _role(rec.spec, h)
            if role:
                return f"{role} of task {rec.task_hash.hex()} (submitted here, {rec.state.value})"
        return None

    async def shutdown(self) -> None:
        """Tell services to wind down (say goodbye to peers, persist); bounded by the caller."""
        if self.mesh is not None and hasattr(self.mesh, "shutdown"):
            await self.mesh.shutdown()


def _role(spec: TaskSpec, h: bytes) -> str | None:
    """What blob ``h`` is to the task: its code, one of its inputs, or nothing."""
    if spec.code_blob == h:
        return "the code"
    for name, blob in spec.input_blobs:
        if blob == h:
            return f"input {name!r}"
    return None


def _now() -> Callable[[], float]:
    """Trio's clock shifted to wall-clock seconds, as the services persist and compare times."""
    offset = time.time() - trio.current_time()
    return lambda: trio.current_time() + offset
