"""The compute driver in-process: ComputeDrivers on real MeshServices joined by memory streams.

TLS, the link proof, the codec, SQLite, the blob transfer and the wasm sandbox all run for real;
only TCP is replaced and time is a MockClock. The sandbox runs in a worker thread that the mock
clock cannot see, so the clock jumps only after 50 ms of real idleness (a sum.wat run takes a few
milliseconds); during a longer run virtual time may run ahead, and the executor's heartbeats keep
its lease alive as they would in real time.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import trio
import trio.testing

from icn_node.blobs import BlobStore
from icn_node.blobs.driver import BlobService
from icn_node.compute.driver import ComputeDriver
from icn_node.compute.records import TaskRecord
from icn_node.compute.rpc import ComputeRpc
from icn_node.config import load_config
from icn_node.identity import NodeIdentity
from icn_node.metrics import Metrics
from icn_node.scheduler import ComputeCapability, GpuDevice, NodeCapacity, ResourceProfile
from icn_node.scheduler.tasks import TaskState
from tests.mesh.memnet import MemNet, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADDR = [f"10.0.1.{i}:7946" for i in range(1, 6)]


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0.05)


class Host:
    """The host readings a ComputeDriver uses (``icn_node.node.Node`` in the daemon)."""

    def __init__(self, gpus=()):
        self.capacity = NodeCapacity.from_totals(2.0, 4096, 10_000, 1000.0, list(gpus))
        self.host_load = 0.0
        self.load_metrics = None


class Member:
    """One node's compute wing as the daemon wires it: blob service, driver, RPC handlers."""

    def __init__(self, config, identity, mesh, gpus=()):
        self.did = identity.did
        self.mesh = mesh
        self.registry = Metrics(identity.did, "").registry
        self.blobs = BlobService(self.did, BlobStore(config.data_dir / "blobs"), mesh, self.now)
        trust = config.trust_in
        self.driver = ComputeDriver(
            config,
            self.did,
            mesh,
            self.blobs,
            Host(gpus),
            self.registry,
            lambda d: 1.0 if d == self.did else trust(d),
        )
        self.rpc = ComputeRpc(self.driver)
        self.core = self.driver.core
        self.store = self.driver.store

    def now(self):
        return self.driver.now()

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED):
        async with trio.open_nursery() as nursery:
            await nursery.start(self.blobs.serve)
            await nursery.start(self.driver.serve)
            task_status.started()


async def cooperative(
    nursery, tmp_path, n_exec=2, trust=0.8, node_compute=None, gpus=None, **compute
):
    ids = [NodeIdentity.generate() for _ in range(n_exec + 1)]
    members = [i.did for i in ids]
    net = MemNet(nursery)
    services = []
    for k, ident in enumerate(ids):
        mesh = await net.start(ident, ADDR[k], members, seed=k, bootstrap=[ADDR[0]] if k else [])
        cfg = load_config(
            env={},
            overrides={
                "node": {"data_dir": str(tmp_path / f"n{k}")},
                "compute": {
                    "executor": k > 0,
                    "announce_interval_s": 1.0,
                    **compute,
                    **(node_compute or {}).get(k, {}),
                },
                "trust": {"default": trust},
            },
        )
        svc = Member(cfg, ident, mesh, (gpus or {}).get(k, ()))
        await nursery.start(svc.serve)
        services.append(svc)
    submitter = services[0]
    await wait_for(lambda: len(submitter.core.registry.live(submitter.now())) == n_exec, timeout=60)
    return net, services


def submit_params(module: str, *args: str, fuel=1_000_000, cpu=1.0):
    return {
        "module": base64.b64encode((EXAMPLES / module).read_bytes()).decode(),
        "fuel": fuel,
        "args": list(args),
        "profile": {"cpu_cores": cpu, "memory_mb": 64} if cpu else None,
    }


def stored(svc, task_hex):
    """The task's record as the submitter persisted it (the core forgets finished tasks)."""
    doc = svc.store.get("tasks", bytes.fromhex(task_hex))
    return TaskRecord.from_dict(doc) if doc is not None else None


def state(svc, task_hex):
    rec = stored(svc, task_hex)
    return rec.state if rec else None


def counter(svc, name):
    return svc.registry.get_sample_value(name) or 0.0


async def test_placement_runs_and_reports_through_the_real_mesh(clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (sub, e1, e2) = await cooperative(nursery, tmp_path)
        out = await sub.rpc.submit(submit_params("sum.wat", "1000"))
        assert out["protocol"] == "placement"
        await wait_for(lambda: state(sub, out["task"]) in (TaskState.COMPLETED, TaskState.FAILED))
        res = await sub.rpc.result({"task": out["task"]})
        assert res["state"] == "completed" and res["stdout"] == "500500\n"
        # the executors' locality context has a measured RTT to the submitter (mesh ping/pong)
        assert (
            e1.core._context().rtt_ms[sub.did] >= 0.0 and e2.core._context().rtt_ms[sub.did] >= 0.0
        )
        # finished: the core forgot it, the store still answers for it
        assert sub.core.submitter.record(bytes.fromhex(out["task"])) is None
        status = await sub.rpc.status({"task": out["task"]})
        assert len(status["offers"]) == 2 and status["executor"] in (e1.did, e2.did)
        winner, loser = (e1, e2) if status["executor"] == e1.did else (e2, e1)
        assert counter(sub, "icn_compute_placement_offers_received_total") == 2
        await wait_for(lambda: counter(loser, "icn_compute_placement_losses_total") == 1)
        assert counter(winner, "icn_compute_placement_wins_total") == 1
        assert counter(winner, "icn_compute_placement_requests_received_total") == 1
        # the executor fetched the code blob from the submitter over the mesh, verified
        code = stored(sub, out["task"]).spec.code_blob
        assert winner.blobs.store.has(code) and not loser.blobs.store.has(code)
        assert winner.blobs.fetched_bytes == (EXAMPLES / "sum.wat").stat().st_size
        nursery.cancel_scope.cancel()


async def test_a_crashed_executor_loses_the_lease_and_the_task_is_replaced(clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (sub, e1, e2) = await cooperative(
            nursery, tmp_path, lease_timeout_s=10.0, heartbeat_interval_s=2.0
        )
        # ~0.9 s of real work: long enough to crash the executor in the middle of it
        out = await sub.rpc.submit(submit_params("infinite.wat", fuel=1_500_000_000))
        await wait_for(lambda: state(sub, out["task"]) is TaskState.RUNNING)
        first = stored(sub, out["task"]).executor
        victim = e1 if first == e1.did else e2
        net.crash(ADDR[[sub, e1, e2].index(victim)])
        await wait_for(
            lambda: state(sub, out["task"]) is TaskState.FUEL_EXHAUSTED, timeout=120, step=1.0
        )
        rec = stored(sub, out["task"])
        assert rec.attempt == 2 and rec.executor != first and first in rec.excluded
        assert rec.result.fuel_used == 1_500_000_000
        nursery.cancel_scope.cancel()


async def test_malformed_compute_messages_are_dropped_and_the_node_goes_on(clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (sub, e1) = await cooperative(nursery, tmp_path, n_exec=1)
        # e1 sends the submitter garbage and a well-formed offer for a task it never saw
        await e1.mesh.send_direct(sub.did, "icn/compute/direct", b"\xff\x00garbage")
        await wait_for(lambda: counter(sub, "icn_compute_messages_dropped_total") >= 1)
        out = await sub.rpc.submit(submit_params("sum.wat", "10"))
        await wait_for(lambda: state(sub, out["task"]) is TaskState.COMPLETED)
        nursery.cancel_scope.cancel()


async def test_an_unfetchable_input_is_given_back_not_failed(clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (sub, e1, e2) = await cooperative(nursery, tmp_path, max_attempts=2)
        # The submitter believes a member that never answers holds the input blob.
        ghost = NodeIdentity.generate().did
        blob = bytes(range(32))
        sub.blobs.locations.add(blob, ghost, 10, sub.now())
        params = submit_params("wordcount.wat", "data")
        params["inputs"] = [{"name": "data", "blob": blob.hex()}]
        out = await sub.rpc.submit(params)
        await wait_for(lambda: state(sub, out["task"]) is TaskState.FAILED, step=0.5)
        rec = stored(sub, out["task"])
        assert rec.reason == "max_attempts" and rec.result is None
        assert set(rec.excluded) == {e1.did, e2.did}
        for e in (e1, e2):
            (job,) = e.core.executor.jobs().values()
            assert job.state.value == "abandoned"
            assert e.core.executor.queue_depth == 0
        nursery.cancel_scope.cancel()


async def test_rpc_refuses_bad_params_with_their_names(clock, tmp_path):
    from icn_node.errors import RpcError

    async with trio.open_nursery() as nursery:
        net, (sub, e1) = await cooperative(nursery, tmp_path, n_exec=1)
        bad = [
            ("submit", {"module": "!!!", "fuel": 1}, "module"),
            ("submit", {**submit_params("sum.wat"), "fuel": 0}, "fuel"),
            ("submit", {**submit_params("sum.wat"), "args": [1]}, "args"),
            ("submit", {**submit_params("sum.wat"), "profile": {"cpu_cores": -1}}, "cpu"),
            ("submit", {**submit_params("sum.wat"), "inputs": [{"blob": "xyz"}]}, "inputs"),
            ("watch", {"after": "x"}, "after"),
            ("status", {"task": "zz"}, "task"),
            ("status", {"task": "00" * 32}, "no task"),
        ]
        for method, params, words in bad:
            with pytest.raises(RpcError, match=words):
                await getattr(sub.rpc, method)(params)
        nursery.cancel_scope.cancel()


async def test_a_module_put_as_a_blob_is_submitted_by_its_hash(clock, tmp_path, monkeypatch):
    from icn_node.compute import rpc as compute_rpc
    from icn_node.errors import RpcError

    async with trio.open_nursery() as nursery:
        net, (sub, e1) = await cooperative(nursery, tmp_path, n_exec=1)
        code = (EXAMPLES / "sum.wat").read_bytes()
        absent = "ab" * 32
        params = {**submit_params("sum.wat", "100"), "module": None}
        with pytest.raises(RpcError, match=f"module_blob: blob {absent} is not held on this node"):
            await sub.rpc.submit({**params, "module_blob": absent})
        h = sub.blobs.store.put(code)  # as blob.put leaves it
        monkeypatch.setattr(compute_rpc, "MAX_MODULE_BYTES", len(code) - 1)
        with pytest.raises(RpcError, match=f"module_blob: {len(code)} bytes, larger than the"):
            await sub.rpc.submit({**params, "module_blob": h.hex()})
        monkeypatch.undo()
        out = await sub.rpc.submit({**params, "module_blob": h.hex()})
        assert stored(sub, out["task"]).spec.code_blob == h
        await wait_for(lambda: state(sub, out["task"]) in (TaskState.COMPLETED, TaskState.FAILED))
        res = await sub.rpc.result({"task": out["task"]})
        assert res["state"] == "completed" and res["stdout"] == "5050\n"
        assert e1.blobs.store.has(h)  # fetched from the submitter by its hash
        nursery.cancel_scope.cancel()


async def test_executors_announce_when_peers_join_not_only_on_their_interval(clock, tmp_path):
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        # cooperative() waits until the submitter sees both executors live
        net, (sub, e1, e2) = await cooperative(nursery, tmp_path, announce_interval_s=300.0)
        assert trio.current_time() - start < 10.0
        nursery.cancel_scope.cancel()


A100 = GpuDevice(
    device_id="GPU-4f1c2a7e-8b9d-4c3e-a1f0-6d2b9e7c5a31",  # tests/data/nvml_recorded.json
    device_name="NVIDIA A100-SXM4-40GB",
    memory_gb=40.0,
    compute_capability=ComputeCapability(8, 0),
)


async def test_exec_runs_an_allowed_command_with_its_reserved_gpu(clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (sub, e1, e2) = await cooperative(
            nursery,
            tmp_path,
            node_compute={1: {"exec_allowlist": ["/usr/bin/env"]}},
            gpus={1: [A100]},
        )
        profile = ResourceProfile.gpu(24, "sm_70").to_dict()
        out = await sub.rpc.submit({"exec": ["/usr/bin/env"], "fuel": 1, "profile": profile})
        await wait_for(lambda: state(sub, out["task"]) in (TaskState.COMPLETED, TaskState.FAILED))
        res = await sub.rpc.result({"task": out["task"]})
        assert res["state"] == "completed", res
        assert res["executor"] == e1.did
        env = dict(line.split("=", 1) for line in res["stdout"].splitlines() if "=" in line)
        assert env["CUDA_VISIBLE_DEVICES"] == A100.device_id
        assert env["ICN_OUTPUTS"].endswith("/out")
        status = await sub.rpc.status({"task": out["task"]})
        assert [o["executor"] for o in status["offers"]] == [e1.did]  # e2: no exec, no GPU
        nursery.cancel_scope.cancel()


async def test_exec_is_declined_where_the_operator_did_not_allow_it(clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (sub, e1, e2) = await cooperative(nursery, tmp_path)
        out = await sub.rpc.submit(
            {"exec": ["/bin/echo", "hi"], "fuel": 1, "profile": {"cpu_cores": 0.5}}
        )
        await wait_for(lambda: state(sub, out["task"]) is TaskState.FAILED, step=0.5)
        # Both executors announced that they run wasm only: the submitter says so at once
        # instead of asking them round after round. No request, no offer, no run.
        assert stored(sub, out["task"]).reason == (
            "no_executor: no executor of the 2 live runs exec tasks"
        )
        for e in (e1, e2):
            assert counter(e, "icn_compute_placement_requests_received_total") == 0
            assert counter(e, "icn_compute_placement_offers_sent_total") == 0
            assert e.core.executor.jobs() == {}
        nursery.cancel_scope.cancel()
