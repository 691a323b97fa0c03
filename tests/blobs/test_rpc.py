"""``blob.put``, ``blob.get``, ``blob.list`` through the RPC registry, on one node."""

from __future__ import annotations

import base64
import json

import trio

from icn_node.blobs import BlobStore, blob_hash
from icn_node.blobs.driver import BlobService
from icn_node.blobs.rpc import register
from icn_node.rpc import RpcRegistry
from icn_node.rpc.protocol import INVALID_PARAMS


async def call(reg: RpcRegistry, method: str, params: dict):
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    out = json.loads(await reg.handle_line(line.encode()))
    return out.get("result"), out.get("error")


def node(tmp_path) -> tuple[RpcRegistry, BlobService]:
    reg = RpcRegistry()
    svc = BlobService("did:me", BlobStore(tmp_path), mesh=None, now=trio.current_time)
    register(reg, svc)
    return reg, svc


async def test_put_get_list(tmp_path):
    reg, svc = node(tmp_path)
    data = b"some bytes"
    result, _ = await call(reg, "blob.put", {"data": base64.b64encode(data).decode()})
    h = blob_hash(data)
    assert result == {"blob": h.hex(), "size": len(data)}
    assert svc.locations.holders(h) == ["did:me"]  # to be announced
    result, _ = await call(reg, "blob.get", {"blob": h.hex().upper()})
    assert result == {"blob": h.hex(), "size": 10, "data": base64.b64encode(data).decode()}
    result, _ = await call(reg, "blob.list", {})
    assert result == {"blobs": [{"blob": h.hex(), "size": 10}]}


async def test_bad_params_name_the_parameter(tmp_path):
    reg, _ = node(tmp_path)
    _, err = await call(reg, "blob.put", {"data": "!!"})
    assert err == {"code": INVALID_PARAMS, "message": "data: expected base64"}
    for bad in ({"blob": "xyz"}, {}):
        _, err = await call(reg, "blob.get", bad)
        assert err["code"] == INVALID_PARAMS
        assert err["message"].startswith("blob: a blob id is 64 hex characters")


async def test_a_blob_no_one_holds_is_a_domain_error(tmp_path):
    reg, _ = node(tmp_path)
    _, err = await call(reg, "blob.get", {"blob": blob_hash(b"x").hex()})
    assert err["code"] != INVALID_PARAMS
    assert err["message"].endswith("could not be fetched (no holder)")
