"""Streaming helpers: progress notifications on virtual time, bounded waits on a client's
descriptor, and the hand-over of a descriptor's dup between a handler and its worker thread."""

from __future__ import annotations

import os

import pytest
import trio

from icn_node.errors import RpcError
from icn_node.rpc.protocol import Call, InvalidParams
from icn_node.rpc.streams import (
    KEEPALIVE_S,
    _Dup,
    _in_thread,
    check_fd,
    read_chunk,
    remaining,
    reporting,
    write_chunk,
)


class Recorder:
    def __init__(self, gone_after: int | None = None) -> None:
        self.sent: list[tuple[float, str, dict]] = []
        self.gone_after = gone_after  # the client leaves after this many notifications

    async def send(self, method: str, params: dict) -> bool:
        if self.gone_after is not None and len(self.sent) >= self.gone_after:
            return False
        self.sent.append((trio.current_time(), method, params))
        return True


async def test_progress_is_reported_while_it_changes_and_kept_alive_while_it_does_not(
    autojump_clock,
):
    rec = Recorder()
    call = Call(send=rec.send, request_id=7)
    t0 = trio.current_time()
    async with reporting(call, True, "read", total=300) as prog:
        for _ in range(3):
            prog.done += 100
            await trio.sleep(0.3)
        prog.phase = "sync"
        await trio.sleep(12)  # a long fsync: nothing changes
    docs = [(round(t - t0, 2), p["phase"], p["done"]) for t, _, p in rec.sent]
    assert all(m == "progress" for _, m, _ in rec.sent)
    assert all(p["request"] == 7 and p["total"] == 300 for _, _, p in rec.sent)
    # Every 0.25 s while bytes move, then once for the new phase, then every 5 s unchanged.
    assert docs[:3] == [(0.25, "read", 100), (0.5, "read", 200), (0.75, "read", 300)]
    assert docs[3][1:] == ("sync", 300)
    keepalives = [t for t, phase, _ in docs[4:]]
    assert len(keepalives) == 2
    assert keepalives[0] - docs[3][0] == pytest.approx(KEEPALIVE_S, abs=0.26)
    # Nothing is sent after the body ended.
    assert docs[-1][0] <= 0.9 + 12


async def test_progress_disabled_sends_nothing_and_body_errors_pass_through(autojump_clock):
    rec = Recorder()
    async with reporting(Call(send=rec.send), False, "read") as prog:
        prog.done = 5
        await trio.sleep(10)
    assert rec.sent == []
    with pytest.raises(RpcError, match="refused"):
        async with reporting(Call(send=rec.send), True, "read"):
            raise RpcError(-32000, "refused")  # not wrapped in an exception group


async def test_a_client_that_went_away_stops_the_transfer(autojump_clock):
    rec = Recorder(gone_after=2)
    reached = []
    with pytest.raises(RpcError, match="the client went away; the transfer was stopped"):
        async with reporting(Call(send=rec.send), True, "read") as prog:
            for i in range(100):
                prog.done = i
                await trio.sleep(0.1)
                reached.append(i)
    assert len(rec.sent) == 2
    assert reached[-1] < 10  # cancelled at the third notification (0.75 s), not after 10 s


def test_check_fd_names_what_is_wrong(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    with open(path, "rb") as r, open(path, "ab") as w:
        with pytest.raises(InvalidParams, match="fd: not open for writing"):
            check_fd(r.fileno(), write=True)
        with pytest.raises(InvalidParams, match="fd: not open for reading"):
            check_fd(w.fileno(), write=False)
        r.seek(2)
        assert remaining(r.fileno(), check_fd(r.fileno(), write=False)) == 4
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(InvalidParams, match="a directory"):
            check_fd(fd, write=False)
    finally:
        os.close(fd)
    rd, wr = os.pipe()
    try:
        assert remaining(rd, check_fd(rd, write=False)) is None  # a stream: size unknown
    finally:
        os.close(rd)
        os.close(wr)


async def test_reads_and_writes_move_bytes_at_the_descriptors_offset():
    rd, wr = os.pipe()
    try:
        await write_chunk(Call(), wr, b"some bytes")
        assert await read_chunk(Call(), rd, n=4) == b"some"
        assert await read_chunk(Call(), rd) == b" bytes"
        os.close(wr)
        assert await read_chunk(Call(), rd) == b""  # the end
    finally:
        os.close(rd)


async def test_a_silent_pipe_ends_the_read_after_the_io_timeout(autojump_clock):
    # (Virtual time jumps while a worker thread runs, so only a read that can never finish
    # is timed on the mock clock.)
    rd, wr = os.pipe()
    call = Call(io_timeout_s=30.0)
    try:
        t0 = trio.current_time()
        with pytest.raises(RpcError, match="fd: no bytes moved for 30 s"):
            await read_chunk(call, rd)
        assert trio.current_time() - t0 == pytest.approx(30.0)
    finally:
        os.close(wr)  # the abandoned thread's read returns, and it closes its dup
        os.close(rd)


async def test_a_pipe_nobody_drains_ends_the_write_after_the_io_timeout(autojump_clock):
    rd, wr = os.pipe()
    try:
        with pytest.raises(RpcError, match="fd: no bytes moved for 30 s"):
            await write_chunk(Call(io_timeout_s=30.0), wr, b"x" * (1 << 20))
    finally:
        os.close(rd)  # the abandoned thread's write fails (EPIPE), and it closes its dup
        os.close(wr)


async def test_a_write_into_a_closed_pipe_is_a_clear_error():
    rd, wr = os.pipe()
    os.close(rd)
    try:
        with pytest.raises(RpcError, match="fd: writing failed: Broken pipe"):
            await write_chunk(Call(), wr, b"data")
    finally:
        os.close(wr)


def test_a_dup_is_closed_once_by_whichever_side_claims_it_first():
    rd, wr = os.pipe()
    try:
        ran = []
        # The thread claims first: it uses and closes the dup; the handler then must not.
        dup = _Dup(rd)
        assert _in_thread(dup, lambda fd: ran.append(fd) or "ok") == "ok"
        assert not dup.claim()
        with pytest.raises(OSError):
            os.fstat(dup.fd)
        # The handler claims first (the thread never started): the thread does nothing.
        late = _Dup(rd)
        assert late.claim()
        os.close(late.fd)
        assert _in_thread(late, lambda fd: ran.append(fd)) is None
        assert len(ran) == 1
    finally:
        os.close(rd)
        os.close(wr)
