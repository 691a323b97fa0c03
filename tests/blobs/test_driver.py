"""BlobServices on real MeshServices joined by memory streams, under MockClock.

TLS, the link proof, the codec and the blob store run for real; only TCP is replaced. No
compute service runs here: whatever one node learns of another's blobs came on ``icn/blob``.
"""

from __future__ import annotations

import pytest
import trio
from structlog.testing import capture_logs

from icn_node.blobs import BlobError, BlobStore, QuotaExceeded, blob_hash
from icn_node.blobs.core import ANNOUNCE_DELAY_S, FETCH_TIMEOUT_S
from icn_node.blobs.driver import BlobService
from icn_node.identity import NodeIdentity
from icn_node.wire import BLOB_TOPIC, MAX_BLOB_CHUNK, BlobAnnounceMsg, decode_message
from tests.mesh.memnet import MemNet, wait_for

ADDR = [f"10.0.2.{i}:7946" for i in range(1, 5)]


async def blob_nodes(nursery, tmp_path, n=3, extra_members=()):
    ids = [NodeIdentity.generate() for _ in range(n)]
    members = [i.did for i in ids] + list(extra_members)
    net = MemNet(nursery)
    nodes = []
    for k, ident in enumerate(ids):
        mesh = await net.start(ident, ADDR[k], members, seed=k, bootstrap=[ADDR[0]] if k else [])
        # the node's clock, as in the daemon: trio's, shifted to wall-clock seconds
        svc = BlobService(ident.did, BlobStore(tmp_path / f"n{k}"), mesh, mesh.now)
        await nursery.start(svc.serve)
        nodes.append(svc)
    await wait_for(lambda: all(s.mesh.peer_count() == n - 1 for s in nodes))
    await trio.sleep(2.0)  # subscriptions to icn/blob travel
    return net, nodes


def put(svc: BlobService, data: bytes) -> bytes:
    h = svc.store.put(data)
    svc.added(h, len(data))
    return h


def payload(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


async def test_announcements_ride_the_blob_topic_and_a_fetch_is_verified(autojump_clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (a, b, c) = await blob_nodes(nursery, tmp_path)
        b.mesh.record(BLOB_TOPIC)
        data = payload(3 * MAX_BLOB_CHUNK + 5)
        t0 = trio.current_time()
        h = put(a, data)
        await wait_for(lambda: b.locations.holders(h) == [a.did], step=0.01)
        assert trio.current_time() - t0 < ANNOUNCE_DELAY_S + 0.1
        assert c.locations.holders(h) == [a.did]
        (seen,) = b.mesh.received(BLOB_TOPIC)["messages"]
        assert seen["origin"] == a.did and not seen["direct"]
        assert decode_message(seen["payload"]) == BlobAnnounceMsg(((h, len(data)),))

        await b.ensure(h, [])  # from the announced holder
        assert b.store.get(h) == data
        assert b.fetched_bytes == len(data) and a.served_bytes == len(data)
        await b.ensure(h, [])  # held now: nothing moves
        assert a.served_bytes == len(data)
        assert b.core.fetching() == 0 and not b._writers and not b._waiters
        nursery.cancel_scope.cancel()


async def test_a_holder_that_loses_the_blob_mid_fetch_hands_over_to_the_next(
    autojump_clock, tmp_path
):
    async with trio.open_nursery() as nursery:
        net, (a, b, c) = await blob_nodes(nursery, tmp_path)
        data = payload(6 * MAX_BLOB_CHUNK)
        h = put(a, data)
        put(c, data)
        read_chunk = a.store.read_chunk

        def then_lose_it(blob, offset, length):
            piece = read_chunk(blob, offset, length)
            a.store.delete(blob)
            return piece

        a.store.read_chunk = then_lose_it
        await b.ensure(h, [a.did, c.did])
        assert b.store.get(h) == data
        assert a.served_bytes == MAX_BLOB_CHUNK and c.served_bytes == len(data)
        assert list(b.store.tmp_dir.iterdir()) == []  # a's partial file is gone
        assert b.core.fetching() == 0 and not b._writers and not b._waiters
        nursery.cancel_scope.cancel()


async def test_a_holder_that_never_answers_fails_the_fetch_after_the_timeout(
    autojump_clock, tmp_path
):
    ghost = NodeIdentity.generate().did  # a member that is never up
    async with trio.open_nursery() as nursery:
        net, (a, b) = await blob_nodes(nursery, tmp_path, n=2, extra_members=[ghost])
        t0 = trio.current_time()
        with pytest.raises(BlobError, match=f"{ghost}: no answer within 10 s"):
            await b.ensure(blob_hash(b"nobody has this"), [ghost])
        assert FETCH_TIMEOUT_S <= trio.current_time() - t0 < FETCH_TIMEOUT_S + 0.5
        with pytest.raises(BlobError, match=r"could not be fetched \(no holder\)"):
            await b.ensure(blob_hash(b"nobody has this"), [])
        assert b.core.fetching() == 0 and not b._waiters
        nursery.cancel_scope.cancel()


async def test_a_cancelled_fetch_leaves_nothing_behind(autojump_clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (a, b) = await blob_nodes(nursery, tmp_path, n=2)
        h = put(a, payload(3 * MAX_BLOB_CHUNK))
        serve_chunk = a._serve_chunk

        async def first_piece_only(origin, req):
            if req.offset == 0:
                await serve_chunk(origin, req)

        a._serve_chunk = first_piece_only
        with trio.move_on_after(5.0) as scope:
            await b.ensure(h, [a.did])
        assert scope.cancelled_caught
        assert not b.store.has(h) and list(b.store.tmp_dir.iterdir()) == []
        assert b.core.fetching() == 0 and not b._writers and not b._waiters
        nursery.cancel_scope.cancel()


async def test_a_size_conflict_is_logged_by_the_driver(autojump_clock, tmp_path):
    async with trio.open_nursery() as nursery:
        net, (a, b, c) = await blob_nodes(nursery, tmp_path)
        h = put(a, b"twelve bytes")
        await wait_for(lambda: b.locations.holders(h) == [a.did])
        with capture_logs() as logs:
            c.added(h, 99)  # c claims another size for the same hash
            await wait_for(lambda: any(e["event"] == "blob_size_conflict" for e in logs))
        (entry,) = [e for e in logs if e["event"] == "blob_size_conflict"]
        assert entry["blob"] == h.hex() and entry["holder"] == c.did and entry["size"] == 99
        assert b.locations.holders(h) == [a.did]
        nursery.cancel_scope.cancel()


async def test_a_fetch_that_would_pass_the_quota_is_refused_with_the_sizes(
    autojump_clock, tmp_path
):
    async with trio.open_nursery() as nursery:
        net, (a, b, c) = await blob_nodes(nursery, tmp_path)
        data = payload(2 * MAX_BLOB_CHUNK)
        h = put(a, data)
        b.store.quota_bytes = MAX_BLOB_CHUNK  # room for half of it
        with pytest.raises(QuotaExceeded) as err:
            await b.ensure(h, [a.did])
        assert f"({MAX_BLOB_CHUNK} bytes)" in str(err.value)
        assert f"this blob needs {len(data)} bytes" in str(err.value)
        assert not b.store.has(h) and list(b.store.tmp_dir.iterdir()) == []
        assert b.core.fetching() == 0 and not b._writers and not b._waiters
        nursery.cancel_scope.cancel()
