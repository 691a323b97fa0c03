"""JSON-RPC methods of the blob store: ``blob.put``, ``blob.get``, ``blob.list``.

``blob.get`` fetches a blob this node lacks from a peer that announced it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import trio

from ..rpc import RpcRegistry
from ..rpc.protocol import InvalidParams
from .driver import BlobService
from .store import BlobError, parse_blob_id


def register(rpc: RpcRegistry, service: BlobService) -> None:
    store = service.store

    async def put(params: dict[str, Any]) -> dict[str, Any]:
        try:
            data = base64.b64decode(params.get("data") or "", validate=True)
        except (binascii.Error, TypeError):
            raise InvalidParams("data: expected base64") from None
        h = await trio.to_thread.run_sync(store.put, data)
        service.added(h, len(data))
        return {"blob": h.hex(), "size": len(data)}

    async def get(params: dict[str, Any]) -> dict[str, Any]:
        try:
            h = parse_blob_id(str(params.get("blob", "")))
        except BlobError as e:
            raise InvalidParams(f"blob: {e}") from None
        await service.ensure(h, [])
        data = await trio.to_thread.run_sync(store.get, h)
        return {"blob": h.hex(), "size": len(data), "data": base64.b64encode(data).decode()}

    async def list_(params: dict[str, Any]) -> dict[str, Any]:
        return {"blobs": [{"blob": h.hex(), "size": s} for h, s in store.items()]}

    rpc.register("blob.put", put)
    rpc.register("blob.get", get)
    rpc.register("blob.list", list_)
