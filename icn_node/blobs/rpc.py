"""JSON-RPC methods of blobs: this node's store (``blob.put``, ``blob.get``, ``blob.list``,
``blob.rm``) and the cooperative's view (``blob.locate``, ``blob.list`` with ``all``,
``blob.fetch``).

``blob.put`` and ``blob.get`` stream: the client sends an open file descriptor with the request
(``{"fd": 0}``, SCM_RIGHTS) and the daemon reads the blob from it, or writes the blob into it,
a chunk at a time, so a blob of any size passes without a line limit and without being held
whole in memory, and the daemon touches only what the caller could open. Base64 ``data`` is
kept for small blobs. ``blob.get`` fetches a blob this node lacks from a peer that announced
it. With ``"progress": true`` the client gets ``progress`` notifications while it waits.

Each method is its own handler on :class:`BlobRpc`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import trio

from ..errors import RpcError
from ..rpc import RpcRegistry
from ..rpc.params import parse
from ..rpc.protocol import Call, InvalidParams
from ..rpc.streams import check_fd, read_chunk, remaining, reporting, write_chunk
from .driver import BlobService
from .store import BlobError, QuotaExceeded, parse_blob_id

# Error codes beyond JSON-RPC's own (docs/PROTOCOL.md, "Local RPC").
NOT_HELD = -32010
BLOB_IN_USE = -32011
QUOTA_EXCEEDED = -32012
TOO_LARGE_INLINE = -32013

MAX_INLINE_BYTES = 16 << 20  # the largest blob blob.get returns as base64

InUse = Callable[[bytes], str | None]


# --- parameters --------------------------------------------------------------------------------


def _blob_param(text: str) -> bytes:
    try:
        return parse_blob_id(text)
    except BlobError as e:
        raise InvalidParams(f"blob: {e}") from None


@dataclass(frozen=True, slots=True)
class PutParams:
    """``blob.put``: base64 ``data`` (small blobs), or ``fd``, the index of a file descriptor
    sent with the request, read from its offset to its end."""

    data: str | None = None
    fd: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if (self.data is None) == (self.fd is None):
            raise InvalidParams(
                "give data (base64) or fd (a file descriptor sent with the request), one of them"
            )

    def data_bytes(self) -> bytes:
        try:
            return base64.b64decode(self.data or "", validate=True)
        except binascii.Error:
            raise InvalidParams("data: expected base64") from None


@dataclass(frozen=True, slots=True)
class GetParams:
    """``blob.get``: the blob, written into file descriptor ``fd`` (at its offset), or returned
    as base64 ``data`` (blobs up to 16 MiB) without one."""

    blob: str = ""
    fd: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        _blob_param(self.blob)

    @property
    def blob_hash(self) -> bytes:
        return parse_blob_id(self.blob)


@dataclass(frozen=True, slots=True)
class RmParams:
    """``blob.rm``: the blob to remove from this node."""

    blob: str = ""

    def __post_init__(self) -> None:
        _blob_param(self.blob)

    @property
    def blob_hash(self) -> bytes:
        return parse_blob_id(self.blob)


MAX_LIST_ALL = 100_000


@dataclass(frozen=True, slots=True)
class ListHeldParams:
    """``blob.list``: the blobs held here; with ``limit``, only the first ``limit`` by hash,
    read without walking the whole store (a reader that polls, the dashboard, sets it)."""

    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and not 1 <= self.limit <= MAX_LIST_ALL:
            raise InvalidParams(f"limit: expected 1-{MAX_LIST_ALL}")


@dataclass(frozen=True, slots=True)
class BlobParam:
    """``blob.locate``, ``blob.fetch``: one blob, by its 64-hex hash."""

    blob: str

    def __post_init__(self) -> None:
        _blob_param(self.blob)

    @property
    def blob_hash(self) -> bytes:
        return parse_blob_id(self.blob)


@dataclass(frozen=True, slots=True)
class ListAllParams:
    """``blob.list`` with ``all``: the cooperative's blobs, the first ``limit`` by hash; with
    ``dids``, each with its live holders' DIDs."""

    all: bool = True
    limit: int = 1000
    dids: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIST_ALL:
            raise InvalidParams(f"limit: expected 1-{MAX_LIST_ALL}")


@contextmanager
def _quota_errors() -> Iterator[None]:
    try:
        yield
    except QuotaExceeded as e:
        raise RpcError(QUOTA_EXCEEDED, str(e)) from None


# --- handlers ----------------------------------------------------------------------------------


class BlobRpc:
    """``in_use(h)``: why blob ``h`` may not be removed now (a task here uses it), or None."""

    def __init__(self, service: BlobService, in_use: InUse | None = None) -> None:
        self.service = service
        self.store = service.store
        self.in_use = in_use

    def register(self, rpc: RpcRegistry) -> None:
        rpc.register_streaming("blob.put", self.put)
        rpc.register_streaming("blob.get", self.get)
        rpc.register("blob.list", self.list)
        rpc.register("blob.rm", self.rm)
        rpc.register("blob.locate", self.locate)
        rpc.register("blob.fetch", self.fetch)

    async def put(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        p = parse(PutParams, params)
        with _quota_errors():
            if p.fd is None:
                data = p.data_bytes()
                h, size = await trio.to_thread.run_sync(self.store.put, data), len(data)
            else:
                h, size = await self._put_fd(call, call.fd(p.fd), p.progress)
        self.service.added(h, size)
        return {"blob": h.hex(), "size": size}

    async def _put_fd(self, call: Call, fd: int, progress: bool) -> tuple[bytes, int]:
        """Read ``fd`` to its end into the store, a chunk at a time, hashing as it goes."""
        total = remaining(fd, check_fd(fd, write=False))
        if total is not None:
            self.store.check_room(total)  # refuse a file that cannot fit before reading it
        sink = await trio.to_thread.run_sync(self.store.sink)
        try:
            async with reporting(call, progress, "read", total) as prog:
                while chunk := await read_chunk(call, fd):
                    await trio.to_thread.run_sync(sink.write, chunk)
                    prog.done += len(chunk)
                prog.phase = "sync"
                return await trio.to_thread.run_sync(sink.commit)
        except BaseException:
            sink.abort()
            raise

    async def get(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        p = parse(GetParams, params)
        h = p.blob_hash
        if p.fd is None:
            with _quota_errors():
                await self.service.ensure(h, [], cause="user_get")
            size = self.store.size(h) or 0
            if size > MAX_INLINE_BYTES:
                raise RpcError(
                    TOO_LARGE_INLINE,
                    f"blob {h.hex()} is {size} bytes, more than the {MAX_INLINE_BYTES} a base64 "
                    "reply carries: send a file descriptor (fd) to write it into "
                    "(icnctl blob get HASH -o FILE)",
                )
            data = await trio.to_thread.run_sync(self.store.get, h)
            return {"blob": h.hex(), "size": len(data), "data": base64.b64encode(data).decode()}
        fd = call.fd(p.fd)
        check_fd(fd, write=True)
        async with reporting(call, p.progress, "fetch") as prog:
            with _quota_errors():
                await self.service.ensure(h, [], cause="user_get")
            reader = await trio.to_thread.run_sync(self.store.reader, h)
            try:
                prog.phase, prog.total = "write", reader.size
                while chunk := await trio.to_thread.run_sync(reader.read):
                    await write_chunk(call, fd, chunk)
                    prog.done += len(chunk)
                reader.verify()
            finally:
                reader.close()
        return {"blob": h.hex(), "size": reader.size}

    async def list(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("all"):
            return self._list_all(params)
        p = parse(ListHeldParams, params)
        items = self.store.items()
        if p.limit is not None:
            items = islice(items, p.limit + 1)  # one more tells whether there are more
        rows = [{"blob": h.hex(), "size": s} for h, s in items]
        out: dict[str, Any] = {
            "blobs": rows[: p.limit],
            "stored_bytes": self.store.stored_bytes,
            "quota_bytes": self.store.quota_bytes,
        }
        if p.limit is not None:
            out["truncated"] = len(rows) > p.limit
        return out

    async def rm(self, params: dict[str, Any]) -> dict[str, Any]:
        p = parse(RmParams, params)
        h = p.blob_hash
        if not self.store.has(h):
            raise RpcError(NOT_HELD, f"blob {h.hex()} is not held on this node")
        reason = self.in_use(h) if self.in_use is not None else None
        if reason:
            raise RpcError(
                BLOB_IN_USE,
                f"blob {h.hex()} is in use: {reason}; remove it once that task has ended",
            )
        size = await trio.to_thread.run_sync(self.store.delete, h)
        if size is None:  # removed meanwhile by another call
            raise RpcError(NOT_HELD, f"blob {h.hex()} is not held on this node")
        self.service.removed(h)
        return {"blob": h.hex(), "size": size}

    # --- the cooperative's blobs -----------------------------------------------------------

    def _list_all(self, params: dict[str, Any]) -> dict[str, Any]:
        p = parse(ListAllParams, params)
        locations = self.service.locations
        rows = []
        for h, size, n in locations.summary(p.limit):
            row: dict[str, Any] = {"blob": h.hex(), "size": size, "holders": n}
            if p.dids:
                row["dids"] = locations.holders(h)
            rows.append(row)
        return {
            "blobs": rows,
            "known": locations.blob_count,
            "locations": len(locations),
        }

    async def locate(self, params: dict[str, Any]) -> dict[str, Any]:
        h = parse(BlobParam, params).blob_hash
        size, entries, asked = await self.service.locate(h)
        return {
            "blob": h.hex(),
            "size": size,
            "asked": asked,
            "holders": [
                {"did": did, "age_s": round(age, 1), "self": did == self.service.did}
                for did, age in entries
            ],
        }

    async def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        """Keep a replica here: fetch the blob from its holders without returning its bytes."""
        h = parse(BlobParam, params).blob_hash
        held = self.store.has(h)
        with _quota_errors():
            await self.service.ensure(h, [], cause="replica")
        return {"blob": h.hex(), "size": self.store.size(h), "fetched": not held}


def register(rpc: RpcRegistry, service: BlobService, in_use: InUse | None = None) -> None:
    BlobRpc(service, in_use).register(rpc)
