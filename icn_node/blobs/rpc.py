"""JSON-RPC methods of the blob store: ``blob.put``, ``blob.get``, ``blob.list``, and the
cooperative's view: ``blob.locate``, ``blob.list`` with ``all``, ``blob.fetch``.

``blob.get`` fetches a blob this node lacks from a peer that announced it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import trio

from ..rpc import RpcRegistry
from ..rpc.params import parse
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
        await service.ensure(h, [], cause="user_get")
        data = await trio.to_thread.run_sync(store.get, h)
        return {"blob": h.hex(), "size": len(data), "data": base64.b64encode(data).decode()}

    async def list_(params: dict[str, Any]) -> dict[str, Any]:
        if params.get("all"):
            return list_all(service, params)
        return {"blobs": [{"blob": h.hex(), "size": s} for h, s in store.items()]}

    rpc.register("blob.put", put)
    rpc.register("blob.get", get)
    rpc.register("blob.list", list_)
    register_network(rpc, service)


# --- the cooperative's blobs ------------------------------------------------------------------

MAX_LIST_ALL = 100_000


@dataclass(frozen=True, slots=True)
class BlobParam:
    """``blob.locate``, ``blob.fetch``: one blob, by its 64-hex hash."""

    blob: str

    def __post_init__(self) -> None:
        try:
            parse_blob_id(self.blob)
        except BlobError as e:
            raise InvalidParams(f"blob: {e}") from None

    @property
    def blob_hash(self) -> bytes:
        return parse_blob_id(self.blob)


@dataclass(frozen=True, slots=True)
class ListAllParams:
    """``blob.list`` with ``all``: the cooperative's blobs, the first ``limit`` by hash."""

    all: bool = True
    limit: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIST_ALL:
            raise InvalidParams(f"limit: expected 1-{MAX_LIST_ALL}")


def list_all(service: BlobService, params: dict[str, Any]) -> dict[str, Any]:
    p = parse(ListAllParams, params)
    rows = service.locations.summary(p.limit)
    return {
        "blobs": [{"blob": h.hex(), "size": size, "holders": n} for h, size, n in rows],
        "known": service.locations.blob_count,
        "locations": len(service.locations),
    }


def register_network(rpc: RpcRegistry, service: BlobService) -> None:
    """``blob.locate`` and ``blob.fetch`` (``blob.list`` with ``all`` is in :func:`list_all`)."""

    async def locate(params: dict[str, Any]) -> dict[str, Any]:
        h = parse(BlobParam, params).blob_hash
        size, entries, asked = await service.locate(h)
        return {
            "blob": h.hex(),
            "size": size,
            "asked": asked,
            "holders": [
                {"did": did, "age_s": round(age, 1), "self": did == service.did}
                for did, age in entries
            ],
        }

    async def fetch(params: dict[str, Any]) -> dict[str, Any]:
        """Keep a replica here: fetch the blob from its holders without returning its bytes."""
        h = parse(BlobParam, params).blob_hash
        held = store.has(h)
        await service.ensure(h, [], cause="replica")
        return {"blob": h.hex(), "size": store.size(h), "fetched": not held}

    store = service.store
    rpc.register("blob.locate", locate)
    rpc.register("blob.fetch", fetch)
