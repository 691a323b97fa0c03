"""Blobs at real size on real icnd processes, through the real icnctl (issue 9, the local half):
files and modules larger than the 1 MiB RPC line pass as file descriptors, the quota refuses
with the sizes, ``blob rm`` removes and refuses while a task needs the blob, and a progress bar
reaches a terminal.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from icn_dev.cluster import LocalCluster

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MiB = 1 << 20


def ok_json(cluster: LocalCluster, *args: str) -> Any:
    r = cluster.icnctl(0, "--json", *args)
    assert r.returncode == 0, f"icnctl {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


def icnctl_argv(cluster: LocalCluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "icn_cli", "--socket", str(cluster.nodes[0].socket), *args]


def wait_until(what: str, probe, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := probe():
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def padded_module(wat: Path, dest: Path, pad: int) -> Path:
    """``wat`` compiled, plus a custom section of ``pad`` bytes (ignored by the runtime)."""
    name = b"padding"
    body = _leb128(len(name)) + name + os.urandom(pad)
    dest.write_bytes(
        bytes(wasmtime.wat2wasm(wat.read_text())) + b"\x00" + _leb128(len(body)) + body
    )
    return dest


def join_feeder(feeder: threading.Thread, fifo: Path) -> None:
    """Join a thread writing into ``fifo``, even if no reader ever opened it (the test failed
    before icnctl did): a reader opened and closed here lets its open() return."""
    feeder.join(timeout=5)
    if feeder.is_alive():
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        feeder.join(timeout=5)


@pytest.fixture
def one(short_tmp):
    with LocalCluster(short_tmp, 1, topology="none") as cluster:
        cluster.start_all()
        yield cluster


def test_put_and_get_of_a_file_over_the_line_limit_stream_through_icnctl(one, short_tmp):
    data = os.urandom(5 * MiB + 7)  # the request line is capped at 1 MiB
    src = short_tmp / "big.bin"
    src.write_bytes(data)
    r = one.icnctl(0, "--json", "blob", "put", str(src))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress output when stderr is not a terminal
    blob = hashlib.sha256(data).hexdigest()
    assert json.loads(r.stdout) == {"blob": blob, "size": len(data)}

    out = short_tmp / "copy.bin"
    got = ok_json(one, "blob", "get", blob, "-o", str(out))
    assert got == {"blob": blob, "size": len(data), "path": str(out)}
    assert out.read_bytes() == data

    # Without -o the daemon writes into icnctl's standard output, here a file.
    with open(short_tmp / "stdout.bin", "wb") as f:
        r2 = subprocess.run(icnctl_argv(one, "blob", "get", blob), stdout=f, timeout=60)
    assert r2.returncode == 0
    assert (short_tmp / "stdout.bin").read_bytes() == data

    listing = ok_json(one, "blob", "list")
    assert {"blob": blob, "size": len(data)} in listing["blobs"]
    assert listing["stored_bytes"] >= len(data)

    # A get that fails leaves no file behind.
    missing = hashlib.sha256(b"nobody has this").hexdigest()
    r3 = one.icnctl(0, "blob", "get", missing, "-o", str(short_tmp / "nothing.bin"))
    assert r3.returncode == 1 and r3.stderr.startswith("Error: ")
    assert not (short_tmp / "nothing.bin").exists()


def test_a_progress_bar_reaches_a_terminal_for_a_put_over_a_second(one, short_tmp):
    fifo = short_tmp / "slow.fifo"
    os.mkfifo(fifo)
    chunks = [os.urandom(MiB) for _ in range(6)]

    def dribble() -> None:  # 6 MiB over about 1.8 s
        try:
            with open(fifo, "wb") as w:
                for c in chunks:
                    w.write(c)
                    w.flush()
                    time.sleep(0.3)
        except BrokenPipeError:  # the reader went away: the test fails on its own
            pass

    feeder = threading.Thread(target=dribble)
    feeder.start()
    leader, follower = pty.openpty()
    try:
        r = subprocess.run(
            icnctl_argv(one, "blob", "put", str(fifo)),
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                piece = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not piece:
                break
            drawn += piece
    finally:
        os.close(leader)
        join_feeder(feeder, fifo)
    assert r.returncode == 0
    assert r.stdout.decode().strip() == hashlib.sha256(b"".join(chunks)).hexdigest()
    text = drawn.decode()
    assert "put slow.fifo: " in text and "MiB/s" in text  # a pipe: bytes and rate, no total
    assert text.endswith("\r\x1b[K")  # cleared before the hash was printed


def test_an_interrupted_put_stops_in_the_daemon_and_stores_nothing(one, short_tmp):
    fifo = short_tmp / "endless.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed() -> None:  # a source that would go on for a long time
        try:
            with open(fifo, "wb") as w:
                while not stop.is_set():
                    w.write(os.urandom(64 * 1024))
                    time.sleep(0.05)
        except BrokenPipeError:  # the daemon let go of it
            pass

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        proc = subprocess.Popen(
            icnctl_argv(one, "blob", "put", str(fifo)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tmp = one.nodes[0].data_dir / "blobs" / "tmp"
        wait_until("the put under way", lambda: any(tmp.iterdir()), timeout=20)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=20) != 0
        # The daemon notices at its next progress notification and drops the partial blob.
        wait_until("the partial blob dropped", lambda: not any(tmp.iterdir()), timeout=20)
    finally:
        stop.set()
        join_feeder(feeder, fifo)
    assert one.rpc(0, "blob.list")["blobs"] == []
    assert "rpc_handler_failed" not in (one.nodes[0].log_path.read_text())


def test_compute_submit_of_a_module_over_the_line_limit_runs(short_tmp):
    """A 3 MiB module and a 2 MiB input, submitted from node0 (submit only) and fetched by
    node1, which runs it."""
    module = padded_module(EXAMPLES / "wordcount.wat", short_tmp / "wc.wasm", 3 * MiB)
    text = short_tmp / "text.txt"
    text.write_text("the quick brown fox\n" * (2 * MiB // 20))
    lines = text.read_text().count("\n")

    def config(i: int, dids: list[str]) -> dict[str, Any]:
        return {"compute": {"executor": i == 1, "announce_interval_s": 1.0}}

    with LocalCluster(short_tmp / "c", 2, node_config=config, topology="star") as cluster:
        cluster.start_all()
        wait_until(
            "node1 announced as an executor",
            lambda: cluster.rpc(0, "compute.executors")["executors"],
            timeout=20,
        )
        out = ok_json(
            cluster, "compute", "submit", str(module), "--input", f"text={text}",
            "--arg", "text", "--arg", "counts.txt", "--fuel", str(10**10), "--cpu", "1",
            "--wait",
        )  # fmt: skip
    assert module.stat().st_size > 3 * MiB
    res = out["result"]
    assert out["status"]["state"] == "completed", out
    assert res["executor"] == cluster.nodes[1].did
    assert res["stdout"] == f"{lines} {4 * lines} {text.stat().st_size}\n"


def test_the_quota_refuses_a_put_naming_the_quota_and_the_sizes(short_tmp):
    with LocalCluster(
        short_tmp, 1, topology="none", node_config=lambda i, d: {"blobs": {"quota_mb": 1}}
    ) as cluster:
        cluster.start_all()
        big = short_tmp / "big.bin"
        big.write_bytes(os.urandom(2 * MiB))
        r = cluster.icnctl(0, "blob", "put", str(big))
        assert r.returncode == 1
        assert r.stderr == (
            "Error: blob store quota exceeded: blobs.quota_mb is 1 MB (1048576 bytes); 0 bytes "
            "are stored, and this blob needs 2097152 bytes\n"
        )
        small = short_tmp / "small.bin"
        small.write_bytes(os.urandom(600_000))
        ok_json(cluster, "blob", "put", str(small))
        more = short_tmp / "more.bin"
        more.write_bytes(os.urandom(600_000))
        r = cluster.icnctl(0, "blob", "put", str(more))
        assert r.returncode == 1
        assert "600000 bytes are stored, and this blob needs 600000 bytes" in r.stderr
        listing = ok_json(cluster, "blob", "list")
        assert listing["stored_bytes"] == 600_000 and listing["quota_bytes"] == MiB
        assert len(listing["blobs"]) == 1  # the refused put left nothing
        assert cluster.rpc(0, "node.status")["did"]  # and the node goes on


def test_rm_removes_a_blob_and_refuses_while_a_running_task_uses_it(one, short_tmp):
    data = short_tmp / "input.txt"
    data.write_text("one two three\n")
    blob = ok_json(one, "blob", "put", str(data))["blob"]
    task = ok_json(
        one, "compute", "submit", str(EXAMPLES / "infinite.wat"), "--input", f"data={blob}",
        "--fuel", str(10**15), "--cpu", "0.5",
    )["task"]  # fmt: skip
    wait_until(
        "the task running here",
        lambda: one.rpc(0, "compute.status", {"task": task})["state"] == "running",
        timeout=20,
    )
    r = one.icnctl(0, "blob", "rm", blob)
    assert r.returncode == 1
    assert r.stderr == (
        f"Error: blob {blob} is in use: input 'data' of task {task} (running on this "
        "executor); remove it once that task has ended\n"
    )
    assert one.rpc(0, "blob.list")["blobs"] != []

    ok_json(one, "compute", "cancel", task)

    def removed():
        r = one.icnctl(0, "blob", "rm", blob)
        return r.returncode == 0 and r.stdout

    assert wait_until("the blob freed by the cancel", removed, timeout=20) == (
        f"removed {blob} (14 bytes)\n"
    )
    assert blob not in {b["blob"] for b in one.rpc(0, "blob.list")["blobs"]}
    r = one.icnctl(0, "blob", "rm", blob)
    assert r.returncode == 1
    assert r.stderr == f"Error: blob {blob} is not held on this node\n"
