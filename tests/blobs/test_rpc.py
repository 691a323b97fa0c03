"""``blob.put``, ``blob.get``, ``blob.list``, ``blob.rm`` through the RPC registry, on one node.

Streaming calls pass real file descriptors in a :class:`Call`, as the server does after
``recvmsg``. (Real clock: the handlers' bounded waits run in worker threads, which virtual time
would skip past.)
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from icn_node.blobs import BlobStore, blob_hash
from icn_node.blobs import rpc as blob_rpc
from icn_node.blobs.driver import BlobService
from icn_node.blobs.rpc import BLOB_IN_USE, NOT_HELD, QUOTA_EXCEEDED, TOO_LARGE_INLINE, register
from icn_node.rpc import RpcRegistry
from icn_node.rpc.protocol import INVALID_PARAMS, Call


async def call(reg: RpcRegistry, method: str, params: dict, fds=(), notes=None):
    async def send(m, p):
        if notes is not None:
            notes.append((m, p))

    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    out = json.loads(await reg.handle_line(line.encode(), Call(fds=tuple(fds), send=send)))
    return out.get("result"), out.get("error")


@contextmanager
def opened(path, flags: int = os.O_RDONLY) -> Iterator[int]:
    fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def node(tmp_path, quota: int = 0, in_use=None) -> tuple[RpcRegistry, BlobService]:
    reg = RpcRegistry()
    store = BlobStore(tmp_path / "blobs", quota_bytes=quota)
    svc = BlobService("did:me", store, mesh=None, now=trio.current_time)
    register(reg, svc, in_use=in_use)
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
    assert result == {
        "blobs": [{"blob": h.hex(), "size": 10}],
        "stored_bytes": 10,
        "quota_bytes": 0,
    }


async def test_list_with_a_limit_reads_the_first_blobs_by_hash_and_says_there_are_more(tmp_path):
    reg, _ = node(tmp_path)
    held = []
    for i in range(5):
        data = base64.b64encode(bytes([i])).decode()
        held.append((await call(reg, "blob.put", {"data": data}))[0]["blob"])
    result, _ = await call(reg, "blob.list", {"limit": 2})
    assert [b["blob"] for b in result["blobs"]] == sorted(held)[:2]
    assert result["truncated"] is True and result["stored_bytes"] == 5
    result, _ = await call(reg, "blob.list", {"limit": 5})
    assert len(result["blobs"]) == 5 and result["truncated"] is False
    _, err = await call(reg, "blob.list", {"limit": 0})
    assert err == {"code": INVALID_PARAMS, "message": "limit: expected 1-100000"}


async def test_bad_params_name_the_parameter(tmp_path):
    reg, _ = node(tmp_path)
    _, err = await call(reg, "blob.put", {"data": "!!"})
    assert err == {"code": INVALID_PARAMS, "message": "data: expected base64"}
    for neither_or_both in ({}, {"data": "", "fd": 0}):
        _, err = await call(reg, "blob.put", neither_or_both)
        assert err["message"] == (
            "give data (base64) or fd (a file descriptor sent with the request), one of them"
        )
    for bad in ({"blob": "xyz"}, {}):
        for method in ("blob.get", "blob.rm"):
            _, err = await call(reg, method, bad)
            assert err["code"] == INVALID_PARAMS
            assert err["message"].startswith("blob: a blob id is 64 hex characters")


# --- streaming through a file descriptor --------------------------------------------------------


async def test_put_reads_the_descriptor_from_its_offset_to_its_end(tmp_path):
    reg, svc = node(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 5)  # more than one chunk
    src = tmp_path / "src.bin"
    src.write_bytes(b"header" + data)
    notes: list = []
    with opened(src) as fd:
        os.lseek(fd, 6, os.SEEK_SET)
        result, err = await call(reg, "blob.put", {"fd": 0, "progress": True}, [fd], notes)
        assert err is None, err
        assert os.lseek(fd, 0, os.SEEK_CUR) == 6 + len(data)  # read by the daemon
    h = blob_hash(data)
    assert result == {"blob": h.hex(), "size": len(data)}
    assert svc.store.get(h) == data
    assert svc.locations.holders(h) == ["did:me"]


async def test_put_from_a_pipe_takes_whatever_comes_until_it_closes(tmp_path):
    reg, svc = node(tmp_path)
    rd, wr = os.pipe()
    try:
        os.write(wr, b"streamed ")
        os.write(wr, b"through a pipe")
        os.close(wr)
        result, err = await call(reg, "blob.put", {"fd": 0}, fds=[rd])
    finally:
        os.close(rd)
    assert err is None, err
    assert svc.store.get(blob_hash(b"streamed through a pipe")) == b"streamed through a pipe"
    assert result["size"] == 23


async def test_get_writes_the_blob_into_the_descriptor_with_progress(tmp_path):
    reg, svc = node(tmp_path)
    data = os.urandom(2 * 1024 * 1024 + 3)
    h = svc.store.put(data)
    dest = tmp_path / "out.bin"
    notes: list = []
    with opened(dest, os.O_WRONLY | os.O_CREAT) as fd:
        result, err = await call(
            reg, "blob.get", {"blob": h.hex(), "fd": 0, "progress": True}, [fd], notes
        )
    assert err is None, err
    assert result == {"blob": h.hex(), "size": len(data)}
    assert dest.read_bytes() == data
    for method, params in notes:  # any sent are about this request, with the total known
        assert method == "progress" and params["request"] == 1
        assert params["phase"] in ("fetch", "write")


async def test_get_into_a_read_only_descriptor_is_refused_before_anything_moves(tmp_path):
    reg, svc = node(tmp_path)
    h = svc.store.put(b"data")
    ro = tmp_path / "ro"
    ro.write_bytes(b"")
    with opened(ro) as fd:
        _, err = await call(reg, "blob.get", {"blob": h.hex(), "fd": 0}, [fd])
    assert err == {"code": INVALID_PARAMS, "message": "fd: not open for writing"}


async def test_a_large_blob_is_not_sent_as_base64(tmp_path, monkeypatch):
    monkeypatch.setattr(blob_rpc, "MAX_INLINE_BYTES", 100)
    reg, svc = node(tmp_path)
    h = svc.store.put(b"x" * 101)
    _, err = await call(reg, "blob.get", {"blob": h.hex()})
    assert err["code"] == TOO_LARGE_INLINE
    assert err["message"] == (
        f"blob {h.hex()} is 101 bytes, more than the 100 a base64 reply carries: send a file "
        "descriptor (fd) to write it into (icnctl blob get HASH -o FILE)"
    )


# --- quota --------------------------------------------------------------------------------------


async def test_a_file_past_the_quota_is_refused_before_it_is_read(tmp_path):
    reg, svc = node(tmp_path, quota=1 << 20)
    src = tmp_path / "big.bin"
    src.write_bytes(b"b" * (2 << 20))
    with opened(src) as fd:
        _, err = await call(reg, "blob.put", {"fd": 0}, [fd])
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # not a byte read
    assert err == {
        "code": QUOTA_EXCEEDED,
        "message": "blob store quota exceeded: blobs.quota_mb is 1 MB (1048576 bytes); 0 bytes "
        "are stored, and this blob needs 2097152 bytes",
    }
    _, err = await call(
        reg, "blob.put", {"data": base64.b64encode(b"s" * (1 << 20) + b"!").decode()}
    )
    assert err["code"] == QUOTA_EXCEEDED
    assert svc.store.stored_bytes == 0 and list(svc.store.tmp_dir.iterdir()) == []


async def test_a_pipe_past_the_quota_is_cut_off_when_it_reaches_it(tmp_path):
    reg, svc = node(tmp_path, quota=100_000)
    rd, wr = os.pipe()
    try:
        os.write(wr, b"p" * 60_000)

        async def feed():
            await trio.to_thread.run_sync(os.write, wr, b"q" * 60_000)
            os.close(wr)

        async with trio.open_nursery() as n:
            n.start_soon(feed)
            _, err = await call(reg, "blob.put", {"fd": 0}, [rd])
    finally:
        os.close(rd)
    assert err["code"] == QUOTA_EXCEEDED
    assert "(it is still arriving)" in err["message"]
    assert svc.store.stored_bytes == 0 and list(svc.store.tmp_dir.iterdir()) == []


# --- rm -----------------------------------------------------------------------------------------


async def test_rm_removes_the_local_copy_and_tells_the_service(tmp_path, monkeypatch):
    reg, svc = node(tmp_path)
    removed: list[bytes] = []
    monkeypatch.setattr(svc, "removed", removed.append)
    h = svc.store.put(b"to go")
    result, err = await call(reg, "blob.rm", {"blob": h.hex()})
    assert err is None and result == {"blob": h.hex(), "size": 5}
    assert not svc.store.has(h) and svc.store.stored_bytes == 0
    assert removed == [h]
    _, err = await call(reg, "blob.rm", {"blob": h.hex()})
    assert err == {"code": NOT_HELD, "message": f"blob {h.hex()} is not held on this node"}
    assert removed == [h]


async def test_rm_of_a_blob_a_task_here_uses_is_refused(tmp_path):
    users = {}
    reg, svc = node(tmp_path, in_use=users.get)
    h = svc.store.put(b"module")
    users[h] = "the code of task ab12 (running on this executor)"
    _, err = await call(reg, "blob.rm", {"blob": h.hex()})
    assert err == {
        "code": BLOB_IN_USE,
        "message": f"blob {h.hex()} is in use: the code of task ab12 (running on this "
        "executor); remove it once that task has ended",
    }
    assert svc.store.has(h)
    del users[h]
    result, _ = await call(reg, "blob.rm", {"blob": h.hex()})
    assert result["size"] == 6


async def test_a_put_whose_client_went_away_stops_and_stores_nothing(tmp_path):
    reg, svc = node(tmp_path)
    rd, wr = os.pipe()
    os.write(wr, b"partial" * 1000)  # and never closed: the client was interrupted

    async def gone(method, params):
        return False  # the notification could not be delivered

    line = json.dumps(
        {"jsonrpc": "2.0", "id": 3, "method": "blob.put", "params": {"fd": 0, "progress": True}}
    )
    try:
        out = json.loads(await reg.handle_line(line.encode(), Call(fds=(rd,), send=gone)))
    finally:
        os.close(wr)
        os.close(rd)
    assert out["error"]["message"] == "the client went away; the transfer was stopped"
    assert svc.store.stored_bytes == 0 and list(svc.store.tmp_dir.iterdir()) == []
