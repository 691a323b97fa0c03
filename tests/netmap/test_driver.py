"""NetmapServices on real MeshServices joined by slow memory streams, under MockClock.

TLS, the link proof and the codec run for real; TCP is replaced by memory streams that take a
one-way latency plus size / rate for every write (:class:`SlowStream`), so RTTs and bandwidth
are there to be measured in virtual time.
"""

from __future__ import annotations

import json

import trio
import trio.testing

from icn_node import wire
from icn_node.identity import NodeIdentity
from icn_node.netmap.driver import NetmapService
from icn_node.netmap.rpc import NO_COORDINATE, register
from icn_node.rpc import INVALID_PARAMS, RpcRegistry
from icn_node.scheduler import NodeCapacity
from icn_node.scheduler.coordinates import MAX_ERROR, Coordinate
from icn_node.scheduler.executors import ExecutorInfo
from tests.mesh.memnet import MemNet, wait_for

A, B, C = "10.0.3.1:7946", "10.0.3.2:7946", "10.0.3.3:7946"
MESH = {"liveness_timeout_s": 3.0}  # a keepalive (an RTT sample) every second


class SlowStream(trio.abc.Stream):
    """One end of a link: a write holds the wire for size / ``bytes_per_s`` (writes queue behind
    each other) and arrives ``latency_s`` later (in flight together, as on a real path); reads
    are the memory stream's. ``pump`` must run in a nursery."""

    def __init__(self, inner: trio.abc.Stream, latency_s: float, bytes_per_s: float) -> None:
        self.inner = inner
        self.latency_s = latency_s
        self.bytes_per_s = bytes_per_s
        self._wire = trio.Lock()
        self._in_flight, self._arrivals = trio.open_memory_channel[tuple[float, bytes]](1000)

    async def pump(self) -> None:
        async for at, data in self._arrivals:
            await trio.sleep_until(at)
            await self.inner.send_all(data)

    async def send_all(self, data) -> None:
        async with self._wire:
            await trio.sleep(len(data) / self.bytes_per_s)
            await self._in_flight.send((trio.current_time() + self.latency_s, bytes(data)))

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        self._in_flight.close()
        await self.inner.aclose()


class SlowNet(MemNet):
    """A MemNet whose links have a one-way latency per pair of addresses and a rate."""

    def __init__(self, nursery, latency_s: dict[frozenset[str], float], bytes_per_s: float):
        super().__init__(nursery)
        self.latency_s = latency_s
        self.bytes_per_s = bytes_per_s

    def connector(self, source: str):
        async def connect(address: str) -> trio.abc.Stream:
            svc = self.services.get(address)
            if svc is None:
                raise ConnectionRefusedError(f"nothing listens on {address}")
            near, far = trio.testing.memory_stream_pair()
            lat = self.latency_s[frozenset((source, address))]
            ends = SlowStream(near, lat, self.bytes_per_s), SlowStream(far, lat, self.bytes_per_s)
            for end in ends:
                self.nursery.start_soon(end.pump)
            svc.accept(ends[1], source)
            return ends[0]

        return connect


async def netmap_nodes(nursery, latency_s, bytes_per_s=10e6, netmap=None):
    """A mesh node per address in ``latency_s``'s pairs (chain bootstrap), each with a
    NetmapService unless ``netmap`` leaves it out; returns (net, meshes, services)."""
    addresses = sorted({a for pair in latency_s for a in pair})
    ids = [NodeIdentity.generate() for _ in addresses]
    members = [i.did for i in ids]
    net = SlowNet(nursery, latency_s, bytes_per_s)
    meshes, services = [], []
    for k, (ident, addr) in enumerate(zip(ids, addresses, strict=True)):
        boot = [addresses[k - 1]] if k else []
        mesh = await net.start(ident, addr, members, seed=k, bootstrap=boot, **MESH)
        meshes.append(mesh)
        if netmap is None or k in netmap:
            svc = NetmapService(ident.did, mesh)
            await nursery.start(svc.serve)
            services.append(svc)
    n = len(addresses)
    await wait_for(lambda: all(m.peer_count() == n - 1 for m in meshes))
    return net, meshes, services


def sample(svc: NetmapService, name: str, **labels) -> float:
    return svc.registry.get_sample_value(name, labels) or 0.0


async def test_coordinates_are_exchanged_and_predict_the_rtts(autojump_clock):
    lat = {frozenset((A, B)): 0.010, frozenset((A, C)): 0.030, frozenset((B, C)): 0.025}
    async with trio.open_nursery() as nursery:
        _, meshes, (a, b, c) = await netmap_nodes(nursery, lat)
        await trio.sleep(120.0)
        # every node knows the other two, from the coordinates they pushed
        for svc in (a, b, c):
            assert {k.source for d, k in svc.core.known.items()} == {"peer"}
            assert len(svc.core.known) == 2
            assert svc.coordinate().error < 0.2
        # measured RTTs (2 x latency), and what the coordinates predict for any pair
        rtt_ab, _ = a.estimate(b.did)
        assert 19.0 < rtt_ab < 23.0
        for (x, y), true in (((a, b), 20.0), ((a, c), 60.0), ((b, c), 50.0)):
            assert abs(a.rtt_between(x.did, y.did) - true) / true < 0.15
        assert a.rtt_between(b.did, NodeIdentity.generate().did) is None
        # the RTT histogram saw the samples; the coordinate's error is a gauge
        assert sample(a, "icn_netmap_rtt_seconds_count") > 100
        assert sample(a, "icn_netmap_coordinate_error") == a.coordinate().error
        assert sample(a, "icn_netmap_known_coordinates") == 2
        nursery.cancel_scope.cancel()


async def test_probes_measure_bandwidth_within_the_budget(autojump_clock):
    rate = 10e6  # bytes/s: 80 Mbit/s
    async with trio.open_nursery() as nursery:
        _, (ma, mb), (a, b) = await netmap_nodes(nursery, {frozenset((A, B)): 0.005}, rate)
        await trio.sleep(30.0)
        # an idle mesh pays for no probe
        assert a.core.bandwidth(b.did, a.now()) is None and a.core.probe_bytes < 3000
        # 12 MiB of traffic each way buys a budget of ~240 KiB: two rounds
        for _ in range(24):
            await ma.send_direct(b.did, "bulk", bytes(512 * 1024))
            await mb.send_direct(a.did, "bulk", bytes(512 * 1024))
        await wait_for(lambda: a.core.bandwidth(b.did, a.now()) is not None, timeout=60)
        bw = a.core.bandwidth(b.did, a.now())
        assert bw.source == "probe" and abs(bw.mbps - 80.0) / 80.0 < 0.25, bw
        _, mbps = a.estimate(b.did)
        assert mbps == bw.mbps
        assert 0.01 < a.transfer_s(b.did, 1_000_000) < 0.2
        # every node's probe bytes within 1 % of its mesh bytes, and exported as such
        for svc, mesh in ((a, ma), (b, mb)):
            assert svc.core.probe_bytes <= 0.01 * mesh.bytes_total()
            assert sample(svc, "icn_netmap_probe_bytes_total") == svc.core.probe_bytes
            assert sample(svc, "icn_netmap_mesh_bytes_total") == mesh.bytes_total()
        assert sample(a, "icn_netmap_probes_total", outcome="success") >= 1
        assert sample(a, "icn_netmap_bandwidth_mbps_count", source="probe") >= 1
        nursery.cancel_scope.cancel()


async def test_a_reported_transfer_is_a_measurement(autojump_clock):
    async with trio.open_nursery() as nursery:
        _, _, (a, b) = await netmap_nodes(nursery, {frozenset((A, B)): 0.005})
        await trio.sleep(5.0)
        a.observe_transfer(b.did, 8_000_000, 1.01)  # 8 MB in a second, less one RTT
        rtt, mbps = a.estimate(b.did)
        assert 9 < rtt < 12 and 60 < mbps < 70
        assert a.topology()["nodes"][0]["bandwidth_source"] == "transfer"
        assert sample(a, "icn_netmap_bandwidth_mbps_count", source="transfer") == 1
        nursery.cancel_scope.cancel()


CAP = NodeCapacity.from_totals(4.0, 8192, 10_000, 1000.0)


async def test_executor_announcements_teach_coordinates_and_old_peers_are_left_alone(
    autojump_clock,
):
    lat = {frozenset((A, B)): 0.005, frozenset((A, C)): 0.005, frozenset((B, C)): 0.005}
    async with trio.open_nursery() as nursery:
        # c runs the mesh but no netmap: an older node
        _, (ma, mb, mc), (a, b) = await netmap_nodes(nursery, lat, netmap={0, 1})
        await trio.sleep(3.0)  # subscriptions travel
        there = Coordinate((123.0, 45.0), 6.0, 0.3)
        info = ExecutorInfo(did=mc.did, capacity=CAP, coordinate=there)
        await mc.publish(wire.COMPUTE_TOPIC, wire.encode_message(wire.ExecutorAnnounceMsg(info)))
        # one that speaks for another node is not believed
        lie = ExecutorInfo(did=mb.did, capacity=CAP, coordinate=Coordinate((9e5, 0.0)))
        await mc.publish(wire.COMPUTE_TOPIC, wire.encode_message(wire.ExecutorAnnounceMsg(lie)))
        await wait_for(lambda: mc.did in a.core.known)
        assert a.core.known[mc.did].coordinate == there
        assert a.core.known[mc.did].source == "announce"
        await trio.sleep(30.0)
        assert a.core.known[mb.did].coordinate.vec[0] < 1000  # b's own, not the lie
        # c got our coordinate once and no more: it never answered
        assert a.core.peers[mc.did].pushed_at < a.now() - 25
        assert not a.core.peers[mc.did].heard
        nursery.cancel_scope.cancel()


async def call(reg: RpcRegistry, method: str, params: dict):
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    out = json.loads(await reg.handle_line(line.encode()))
    return out.get("result"), out.get("error")


async def test_topology_and_estimate_rpc(autojump_clock):
    lat = {frozenset((A, B)): 0.010, frozenset((A, C)): 0.030, frozenset((B, C)): 0.025}
    async with trio.open_nursery() as nursery:
        _, _, (a, b, c) = await netmap_nodes(nursery, lat)
        reg = RpcRegistry()
        register(reg, a)
        await trio.sleep(60.0)
        a.observe_transfer(b.did, 8_000_000, 1.02)
        res, err = await call(reg, "netmap.topology", {})
        assert err is None
        assert res["did"] == a.did and res["coordinate"]["error"] < MAX_ERROR
        assert set(res["coordinate"]) == {"vec", "height", "error"}
        rows = {n["did"]: n for n in res["nodes"]}
        assert set(rows) == {b.did, c.did}
        for did, true in ((b.did, 20.0), (c.did, 60.0)):
            row = rows[did]
            assert row["linked"] and abs(row["rtt_ms"] - true) < 3.0, row
            assert row["coordinate"] is not None and row["coordinate_source"] == "peer"
            assert abs(row["rtt_estimated_ms"] - true) / true < 0.2, row
        assert rows[b.did]["bandwidth_source"] == "transfer"
        assert rows[b.did]["bandwidth_age_s"] == 0.0 and rows[b.did]["bandwidth_mbps"] > 0
        assert rows[c.did]["bandwidth_mbps"] is None
        assert res["mesh_bytes"] > 0 and res["probe_bytes"] == 0  # no traffic to pay for probes

        res, err = await call(reg, "netmap.estimate", {"a": b.did, "b": c.did})
        assert err is None and abs(res["rtt_ms"] - 50.0) < 7.5
        res, _ = await call(reg, "netmap.estimate", {"a": a.did, "b": a.did})
        assert res["rtt_ms"] == 0.0
        stranger = NodeIdentity.generate().did
        _, err = await call(reg, "netmap.estimate", {"a": b.did, "b": stranger})
        assert err == {"code": NO_COORDINATE, "message": f"no coordinate known for {stranger}"}
        _, err = await call(reg, "netmap.estimate", {"a": "nope", "b": c.did})
        assert err["code"] == INVALID_PARAMS and err["message"].startswith("a: ")
        _, err = await call(reg, "netmap.estimate", {"a": b.did})
        assert err["code"] == INVALID_PARAMS and "b" in err["message"]
        nursery.cancel_scope.cancel()


def test_lookup_computes_only_what_is_asked():
    from icn_node.netmap.driver import Lookup

    asked: list[str] = []

    def one(did: str) -> float | None:
        asked.append(did)
        return {"a": 12.5, "b": 40.0}.get(did)

    view = Lookup(one, lambda: {"a": 12.5, "b": 40.0})
    assert view.get("a") == 12.5 and view.get("z", 100.0) == 100.0
    assert asked == ["a", "z"]  # one estimate per lookup, never the whole map
    assert len(view) == 2 and set(view) == {"a", "b"}
