"""The trio mesh driver on memory streams under MockClock: real TLS, proof and codec."""

from __future__ import annotations

import trio
import trio.testing
from structlog.testing import capture_logs

from icn_node import wire
from icn_node.identity import NodeIdentity

from .memnet import MemNet, wait_for

A, B, C = "10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"


def ids(n):
    return [NodeIdentity.generate() for _ in range(n)]


def sample(svc, name, **labels):
    return svc.metrics.registry.get_sample_value(name, labels) or 0.0


async def two_nodes(nursery, extra=(), **kw):
    """a dials b; ``extra`` identities are members too (raw peers a test drives by hand)."""
    ia, ib = ids(2)
    members = [ia.did, ib.did, *(e.did for e in extra)]
    net = MemNet(nursery)
    b = await net.start(ib, B, members, seed=2, **kw)
    a = await net.start(ia, A, members, seed=1, bootstrap=[B], **kw)
    await wait_for(lambda: a.peer_count() == 1 and b.peer_count() == 1)
    return net, a, b, ia, ib


async def test_two_nodes_link_subscribe_and_deliver(autojump_clock):
    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery)
        inbox = a.subscribe("jobs")
        b.record("jobs")
        await trio.sleep(2.0)  # subscriptions travel, heartbeats graft
        assert await b.publish("jobs", b"hello") == 1
        with trio.fail_after(5):
            d = await inbox.receive()
        assert (d.origin, d.payload, d.direct) == (ib.did, b"hello", False)
        # and the other way, into b's ring
        await a.publish("jobs", b"back")
        await wait_for(lambda: b.received("jobs")["delivered_total"] == 1)
        (row,) = a.peers()
        assert row["did"] == ib.did and row["direction"] == "out" and row["state"] == "active"
        reg = a.metrics.registry
        assert reg.get_sample_value("icn_mesh_peers") == 1
        msgs_in = {"topic": "jobs", "direction": "in"}
        assert reg.get_sample_value("icn_gossip_messages_total", msgs_in) == 1
        assert reg.get_sample_value("icn_gossip_bytes_total", {"direction": "out"}) > 0
        nursery.cancel_scope.cancel()


async def test_direct_message_rides_the_link(autojump_clock):
    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery)
        inbox = b.subscribe("offers")
        await a.send_direct(ib.did, "offers", b"offer-1")
        with trio.fail_after(5):
            d = await inbox.receive()
        assert (d.origin, d.payload, d.direct) == (ia.did, b"offer-1", True)
        nursery.cancel_scope.cancel()


async def test_a_non_member_is_refused_by_the_listener_and_counted(autojump_clock):
    ib, outsider = ids(2)
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        b = await net.start(ib, B, [ib.did])
        raw = net.raw(outsider, B)
        with capture_logs() as logs:
            await raw.handshake(hello=False)
            close = await raw.recv_until(wire.Close)
        assert close == wire.Close("not-member", "")
        assert sample(b, "icn_mesh_rejected_total", reason="not-member") == 1
        refused = [e for e in logs if e["event"] == "peer_refused"]
        assert refused and refused[0]["did"] == outsider.did
        assert b.peer_count() == 0
        nursery.cancel_scope.cancel()


async def test_the_dialer_refuses_a_listener_outside_its_members(autojump_clock):
    ia, ib = ids(2)
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        await net.start(ib, B, [ia.did, ib.did])
        a = await net.start(ia, A, [ia.did], bootstrap=[B])
        await wait_for(lambda: sample(a, "icn_mesh_rejected_total", reason="not-member") >= 1)
        assert a.peer_count() == 0
        # the refused bootstrap address is now known as a non-member and not redialled
        await trio.sleep(60)
        assert sample(a, "icn_mesh_rejected_total", reason="not-member") == 1
        nursery.cancel_scope.cancel()


async def test_version_mismatch_closes_with_a_reason_on_both_sides(autojump_clock):
    ib, ic = ids(2)
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        b = await net.start(ib, B, [ib.did, ic.did])
        raw = net.raw(ic, B)
        await raw.handshake(version=99)
        hello = await raw.recv_until(wire.Hello)
        assert hello.version == wire.PROTOCOL_VERSION  # so the dialer can log the mismatch too
        close = await raw.recv_until(wire.Close)
        assert close.reason == "version" and "99" in close.detail
        assert sample(b, "icn_mesh_rejected_total", reason="version") == 1
        nursery.cancel_scope.cancel()


async def test_bad_frames_close_only_their_own_link(autojump_clock):
    raws = ids(3)
    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery, extra=raws, max_frame_bytes=4096)
        a.record("t")
        b.record("t")
        cases = [
            (wire.HEADER.pack(4097), "frame-too-large"),
            (wire.frame(b"\xff\xfe"), "bad-frame"),
            (wire.frame(b"\x82gunknown\xa0"), "bad-frame"),  # ["unknown", {}]
        ]
        for (data, reason), raw_id in zip(cases, raws, strict=True):
            # the raw peer is a member: it passes admission, then misbehaves
            raw = net.raw(raw_id, B)
            await raw.handshake()
            await raw.recv_until(wire.Hello)
            await raw.send_raw(data)
            close = await raw.recv_until(wire.Close)
            assert close is not None and close.reason == reason
        assert b.peer_count() == 1 and a.peer_count() == 1
        await trio.sleep(2)
        await a.publish("t", b"still fine")
        await wait_for(lambda: b.received("t")["delivered_total"] == 1)
        reg = b.metrics.registry
        assert reg.get_sample_value("icn_gossip_dropped_total", {"reason": "bad-frame"}) == 2
        nursery.cancel_scope.cancel()


async def test_replays_are_dropped_and_a_forgery_closes_the_link_that_carried_it(autojump_clock):
    ib, ic, ia = ids(3)
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        b = await net.start(ib, B, [ia.did, ib.did, ic.did])
        b.record("t")
        raw = net.raw(ic, B)
        await raw.handshake()
        await raw.send(wire.Subscribe(("t",)))
        await wait_for(lambda: b.peer_count() == 1)
        now_ms = int(b.now() * 1000)
        good = wire.Gossip.sign(ia, "t", 1, now_ms, b"real")
        forged = wire.Gossip(**{**good.to_fields(), "payload": b"fake"})
        stale = wire.Gossip.sign(ia, "t", 2, now_ms - 120_000, b"old")
        for msg in (good, good, stale):
            await raw.send(msg)
        await wait_for(lambda: b.received("t")["delivered_total"] == 1)
        await trio.sleep(1)
        assert b.peer_count() == 1  # duplicates and stale copies cost nobody the link
        await raw.send(forged)
        await wait_for(lambda: b.peer_count() == 0)
        reg = b.metrics.registry
        for reason in ("bad-signature", "duplicate", "replay-window"):
            assert reg.get_sample_value("icn_gossip_dropped_total", {"reason": reason}) == 1
        assert [m["payload"] for m in b.received("t")["messages"]] == [b"real"]
        nursery.cancel_scope.cancel()


async def test_a_stuck_peer_is_dropped_and_never_stalls_the_node(autojump_clock):
    (stuck_id,) = ids(1)
    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery, extra=[stuck_id], send_queue_len=8)
        a.record("t")
        raw = net.raw(stuck_id, B, stream_pair=trio.testing.lockstep_stream_pair)
        await raw.handshake()
        await raw.send(wire.Subscribe(("t",)))
        await raw.recv_until(wire.Hello)
        await wait_for(lambda: b.peer_count() == 2)
        await trio.sleep(2)
        # the raw peer now stops reading; b keeps publishing
        with capture_logs() as logs:
            for _ in range(40):
                await b.publish("t", b"x" * 2000)
            await wait_for(lambda: b.peer_count() == 1)
        stuck = {"send-queue-full", "send-queue-stuck"}
        assert any(e.get("reason") in stuck for e in logs)
        (row,) = b.peers()
        assert row["did"] == ia.did and row["messages_in"] > 0  # the healthy link never dropped
        await wait_for(lambda: a.received("t")["delivered_total"] == 40)
        nursery.cancel_scope.cancel()


async def test_a_silent_peer_is_dropped_after_the_liveness_timeout(autojump_clock):
    ib, ic = ids(2)
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        b = await net.start(ib, B, [ib.did, ic.did], liveness_timeout_s=5.0)
        raw = net.raw(ic, B)
        await raw.handshake()
        await wait_for(lambda: b.peer_count() == 1)
        start = trio.current_time()
        close = await raw.recv_until(wire.Close)
        assert close.reason == "liveness"
        assert 5.0 <= trio.current_time() - start <= 7.0
        assert b.peer_count() == 0
        nursery.cancel_scope.cancel()


async def test_a_crashed_peer_is_redialled_when_it_returns(autojump_clock):
    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery, redial_min_s=0.5, redial_max_s=4.0)
        members = [ia.did, ib.did]
        net.crash(B)
        await wait_for(lambda: a.peer_count() == 0)
        await trio.sleep(20)  # a keeps redialling with backoff meanwhile
        b2 = await net.start(ib, B, members, seed=3)
        await wait_for(lambda: a.peer_count() == 1 and b2.peer_count() == 1, timeout=6)
        nursery.cancel_scope.cancel()


async def test_shutdown_says_goodbye_and_is_bounded(autojump_clock):
    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery)
        with capture_logs() as logs:
            start = trio.current_time()
            await a.shutdown()
            assert trio.current_time() - start <= 2.5
            await wait_for(lambda: b.peer_count() == 0)
        down = [e for e in logs if e["event"] == "peer_down" and e["did"] == ia.did]
        assert down and down[0]["reason"] == "peer-closed"
        nursery.cancel_scope.cancel()


async def test_the_mesh_forms_and_floods_among_six_nodes(autojump_clock):
    idents = ids(6)
    members = [i.did for i in idents]
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        svcs = []
        for i, ident in enumerate(idents):
            boot = [f"10.0.0.{i}:7946"] if i else []
            svcs.append(await net.start(ident, f"10.0.0.{i + 1}:7946", members, i, bootstrap=boot))
        await wait_for(lambda: all(s.peer_count() == 5 for s in svcs))
        for s in svcs:
            s.record("t")
        await trio.sleep(3)
        await svcs[0].publish("t", b"to all")
        await wait_for(lambda: all(s.received("t")["delivered_total"] == 1 for s in svcs[1:]))
        nursery.cancel_scope.cancel()


async def test_tls_links_over_real_loopback_tcp():
    """No MockClock here: real sockets, real TLS handshakes, real time (kept short)."""
    from icn_node.mesh.driver import MeshService

    from .memnet import section

    ia, ib = ids(2)
    members = [ia.did, ib.did]
    async with trio.open_nursery() as nursery:
        b = MeshService(section("127.0.0.1:0", members), ib)
        b_addr = await nursery.start(b.serve)
        a = MeshService(section("127.0.0.1:0", members, bootstrap=[b_addr]), ia)
        a_addr = await nursery.start(a.serve)
        assert a_addr.startswith("127.0.0.1:") and not a_addr.endswith(":0")
        inbox = b.subscribe("t")
        a.record("t")
        await wait_for(lambda: a.peer_count() == 1 and b.peer_count() == 1, timeout=10)
        await wait_for(lambda: "t" in a.peers()[0]["topics"], timeout=10)
        await a.publish("t", b"over tcp")
        with trio.fail_after(10):
            d = await inbox.receive()
        assert d.payload == b"over tcp" and d.origin == ia.did
        (row,) = b.peers()
        assert row["direction"] == "in" and row["address"].startswith("127.0.0.1:")
        await a.shutdown()
        await b.shutdown()


async def test_rpc_methods_publish_record_and_report(autojump_clock):
    import json

    from icn_node.mesh.rpc import register
    from icn_node.rpc import RpcRegistry

    async def call(rpc, method, params):
        line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        return json.loads(await rpc.handle_line(line.encode()))

    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery)
        rpc_a, rpc_b = RpcRegistry(), RpcRegistry()
        register(rpc_a, a)
        register(rpc_b, b)
        assert (await call(rpc_b, "mesh.subscribe", {"topic": "ops"}))["result"]["recording"]
        await trio.sleep(2)
        res = await call(rpc_a, "mesh.publish", {"topic": "ops", "text": "hi", "count": 3})
        assert res["result"]["published"] == 3
        await wait_for(lambda: b.received("ops")["delivered_total"] == 3)
        for _ in range(2):  # reading twice returns the same view (the ring is not consumed)
            got = (await call(rpc_b, "mesh.received", {"topic": "ops"}))["result"]
            assert [m["text"] for m in got["messages"]] == ["hi"] * 3
            assert all(m["origin"] == ia.did and m["size"] == 2 for m in got["messages"])
        peers = (await call(rpc_a, "mesh.peers", {}))["result"]
        assert peers["peers"][0]["did"] == ib.did
        bad = await call(rpc_a, "mesh.publish", {"topic": "", "text": "x"})
        assert bad["error"]["code"] == -32602
        nursery.cancel_scope.cancel()


async def test_rtt_samples_bytes_and_links_for_the_network_map(autojump_clock):
    async with trio.open_nursery() as nursery:
        net, a, b, ia, ib = await two_nodes(nursery, liveness_timeout_s=3.0)
        samples = a.rtt_samples(buffer=4)
        assert a.linked(ib.did) and not a.linked(ia.did)
        with trio.fail_after(5):
            s = await samples.receive()  # the next keepalive's pong
        assert s.did == ib.did and s.rtt_ms >= 0.0
        reg = a.metrics.registry
        counted = sum(
            reg.get_sample_value("icn_gossip_bytes_total", {"direction": d}) for d in ("in", "out")
        )
        assert a.bytes_total() == a.bytes_in + a.bytes_out == counted > 0
        # a watcher that stops reading loses samples; one that closes is dropped
        await trio.sleep(20.0)
        assert len(a._rtt_watchers) == 1
        await samples.aclose()
        await trio.sleep(2.0)
        assert a._rtt_watchers == []
        net.crash(B)
        await wait_for(lambda: not a.linked(ib.did))
        nursery.cancel_scope.cancel()


async def test_a_peer_address_that_does_not_parse_is_a_failed_dial_not_a_crash(autojump_clock):
    """A member's ``peers`` and ``hello.listen`` are its word: an address without a port must
    fail its dial like an unreachable one, and the node goes on."""
    (ia,) = ids(1)
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)

        async def connect(address: str) -> trio.abc.Stream:
            from icn_node.config import parse_hostport

            parse_hostport(address)  # as the real TCP connector does: raises ValueError
            raise AssertionError("unreachable")

        a = await net.start(ia, "10.0.0.1:7946", [ia.did])
        a._connect = connect
        await a._dial("x", None)  # no colon, no port
        await a._dial("[::1", None)
        assert a.peer_count() == 0
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
