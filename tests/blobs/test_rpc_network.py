"""The cooperative-wide blob RPC methods (``blob.locate``, ``blob.list`` with ``all``,
``blob.fetch``) through the registry, on one node with a mesh that reaches nobody."""

from __future__ import annotations

import base64
import json
from contextlib import asynccontextmanager

import trio

from icn_node.blobs import BlobStore, blob_hash
from icn_node.blobs.driver import BlobService
from icn_node.blobs.rpc import register
from icn_node.rpc import RpcRegistry
from icn_node.rpc.protocol import INVALID_PARAMS
from icn_node.wire import BlobHaveMsg

ME = "did:me"


class LonelyMesh:
    """A mesh with no peers: what is sent goes nowhere (and is kept for the test)."""

    def __init__(self) -> None:
        self.published: list[bytes] = []

    def subscribe(self, topic: str, buffer: int = 0):
        self._send, receive = trio.open_memory_channel(buffer)
        return receive

    async def publish(self, topic: str, payload: bytes) -> int:
        self.published.append(payload)
        return 0

    async def send_direct(self, did: str, topic: str, payload: bytes) -> None:
        pass

    def peer_count(self) -> int:
        return 0

    def rtt_ms(self) -> dict[str, float]:
        return {}


async def call(reg: RpcRegistry, method: str, params: dict):
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    out = json.loads(await reg.handle_line(line.encode()))
    return out.get("result"), out.get("error")


@asynccontextmanager
async def node(tmp_path):
    reg = RpcRegistry()
    svc = BlobService(ME, BlobStore(tmp_path), LonelyMesh(), trio.current_time)
    register(reg, svc)
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.serve)
        yield reg, svc
        nursery.cancel_scope.cancel()


async def test_bad_params_name_the_parameter(autojump_clock, tmp_path):
    async with node(tmp_path) as (reg, _):
        _, err = await call(reg, "blob.put", {"data": "!!"})
        assert err == {"code": INVALID_PARAMS, "message": "data: expected base64"}
        for method in ("blob.get", "blob.locate", "blob.fetch"):
            for bad in ({"blob": "xyz"}, {}):
                _, err = await call(reg, method, bad)
                assert err["code"] == INVALID_PARAMS, (method, bad, err)
                assert err["message"].startswith("blob: "), err
        _, err = await call(reg, "blob.list", {"all": True, "limit": 0})
        assert err == {"code": INVALID_PARAMS, "message": "limit: expected 1-100000"}


async def test_a_blob_no_one_holds_is_a_domain_error_after_asking(autojump_clock, tmp_path):
    async with node(tmp_path) as (reg, svc):
        _, err = await call(reg, "blob.get", {"blob": blob_hash(b"x").hex()})
        assert err["code"] != INVALID_PARAMS
        assert err["message"].endswith(
            "could not be fetched (no holder; asked the cooperative, no other holder within 3 s)"
        )
        assert len(svc.mesh.published) == 1  # the query


async def test_locate_and_list_all_show_the_cooperative(autojump_clock, tmp_path):
    async with node(tmp_path) as (reg, svc):
        data = b"shared"
        h = blob_hash(data)
        await call(reg, "blob.put", {"data": base64.b64encode(data).decode()})
        now = svc.now()
        svc.core.on_message("did:a", BlobHaveMsg(((h, 6), (blob_hash(b"y"), 1)), 600.0), now)
        await trio.sleep(5.0)
        result, _ = await call(reg, "blob.locate", {"blob": h.hex()})
        assert result["blob"] == h.hex() and result["size"] == 6 and not result["asked"]
        holders = {x["did"]: x for x in result["holders"]}
        assert set(holders) == {ME, "did:a"} and holders[ME]["self"]
        assert 4.0 <= holders["did:a"]["age_s"] <= 6.0
        result, _ = await call(reg, "blob.list", {"all": True})
        rows = {r["blob"]: (r["size"], r["holders"]) for r in result["blobs"]}
        assert rows == {h.hex(): (6, 2), blob_hash(b"y").hex(): (1, 1)}
        assert result["known"] == 2 and result["locations"] == 3
        result, _ = await call(reg, "blob.list", {"all": True, "limit": 1})
        assert len(result["blobs"]) == 1 and result["known"] == 2


async def test_locate_of_an_unknown_blob_asks_and_reports_none(autojump_clock, tmp_path):
    async with node(tmp_path) as (reg, svc):
        h = blob_hash(b"nobody")
        result, _ = await call(reg, "blob.locate", {"blob": h.hex()})
        assert result == {"blob": h.hex(), "size": None, "asked": True, "holders": []}
        assert len(svc.mesh.published) == 1


async def test_fetch_of_a_blob_held_here_moves_nothing(autojump_clock, tmp_path):
    async with node(tmp_path) as (reg, _):
        await call(reg, "blob.put", {"data": base64.b64encode(b"here").decode()})
        result, _ = await call(reg, "blob.fetch", {"blob": blob_hash(b"here").hex()})
        assert result == {"blob": blob_hash(b"here").hex(), "size": 4, "fetched": False}
