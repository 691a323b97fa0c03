"""Benchmark: compute goes to data (issue 9). Bytes moved, makespan and placement latency of one
workload placed locality-blind and locality-aware, side by side, on real icnd processes.

Set-up (the same for both modes, on a fresh cluster each): ``--executors`` executors and one
submitter (node0, ``compute.executor = false``) on 127.0.0.1, star topology, every node trusting
every other 0.9, executors capped at 2 cores. ``--blobs`` blobs of ``--min-mb``..``--max-mb``
(log-uniform, seeded) are placed in the stores of 1 or 2 executors each before the daemons
start (they announce what they hold at start). The workload: ``--tasks`` tasks submitted at
once, task *i* reading blob *i mod blobs* as its input (``--input``, never a hint), each a
short WebAssembly run (``examples/sum.wat``, 10^6 iterations) with a profile of 0.5 cores.

Modes: **blind** — every node's ``compute.placement_weights = "phase16a"`` (the seed's 16A
weights: trust, capacity, queue, jitter; no locality, so inputs do not count) — and **aware**
— ``"phase16c"``, icnd's default, where a request carries its inputs with their sizes.

Figures: bytes moved = what the executors' blob stores grew by (every fetched input lands there
once; the module is a few hundred bytes); makespan = first submission to last task completed;
placement latency = the submitter's claim-accepted time minus negotiation start (p50, p99).
Targets: aware moves >= 90 % fewer bytes than blind; its makespan is no worse than +10 %.

Run: .venv/bin/python bench/bench_locality.py   (make bench-locality)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icn_dev.cluster import LocalCluster  # noqa: E402
from icn_node.blobs import BlobStore  # noqa: E402

MB = 1024 * 1024
SUM = ROOT / "examples" / "sum.wat"
FINAL = {"completed", "failed", "fuel_exhausted", "timed_out", "cancelled"}
BLOCK = random.Random(7).randbytes(MB)


def make_blob(dir_: Path, label: str, size: int) -> Path:
    """A file of ``size`` bytes, distinct per label, written quickly (one random MiB repeated
    behind a label header)."""
    path = dir_ / label
    with open(path, "wb") as f:
        f.write(hashlib.sha256(label.encode()).digest())
        left = size - 32
        while left > 0:
            n = min(left, MB)
            f.write(BLOCK[:n])
            left -= n
    return path


def wait_known(cluster: LocalCluster, hashes: list[str], timeout: float = 60.0) -> None:
    """Until the submitter knows a holder of every blob (``blob.locate``)."""
    deadline = time.monotonic() + timeout
    for h in hashes:
        while not cluster.rpc(0, "blob.locate", {"blob": h}).get("holders"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the submitter learned of no holder of {h[:16]} in {timeout} s")
            time.sleep(0.2)


def store_bytes(cluster: LocalCluster, i: int) -> int:
    return sum(s for _, s in BlobStore(cluster.nodes[i].data_dir / "blobs").items())


def run_mode(
    mode: str, args: argparse.Namespace, blobs: list[tuple[Path, int, list[int]]]
) -> dict[str, Any]:
    weights = "phase16a" if mode == "blind" else "phase16c"

    def config(i: int, dids: list[str]) -> dict[str, Any]:
        c: dict[str, Any] = {
            "compute": {
                "placement_weights": weights,
                "announce_interval_s": 1.0,
                "heartbeat_interval_s": 1.0,
                "lease_timeout_s": 30.0,
                "max_negotiating": args.max_negotiating,
            },
            "trust": {"default": 0.9},
            "log": {"level": "warning"},
        }
        if i == 0:
            c["compute"]["executor"] = False
        else:
            c["capacity"] = {"cpu_cores": 2.0}
        return c

    root = Path(tempfile.mkdtemp(prefix=f"icn-bench-loc-{mode}-"))
    try:
        with LocalCluster(root, args.executors + 1, node_config=config, topology="star") as c:
            hashes = []
            for path, _size, holders in blobs:
                for i in holders:
                    h, _ = BlobStore(c.nodes[i].data_dir / "blobs").put_file(path)
                hashes.append(h.hex())
            before = {i: store_bytes(c, i) for i in range(1, args.executors + 1)}
            c.start_all()
            deadline = time.monotonic() + 30
            while len(c.rpc(0, "compute.executors")["executors"]) < args.executors:
                if time.monotonic() > deadline:
                    raise SystemExit("executors did not announce within 30 s")
                time.sleep(0.2)
            module = SUM.read_bytes()
            wait_known(c, hashes)
            t0 = time.monotonic()
            tasks = []
            for k in range(args.tasks):
                params = {
                    "module": base64.b64encode(module).decode(),
                    "fuel": 20_000_000,
                    "args": ["1000000"],
                    "inputs": [{"name": "data", "blob": hashes[k % len(hashes)]}],
                    "profile": {"cpu_cores": 0.5, "memory_mb": 64},
                }
                tasks.append(c.rpc(0, "compute.submit", params)["task"])
            done: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + args.timeout
            while len(done) < len(tasks):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{mode}: {len(tasks) - len(done)} tasks unfinished")
                for t in tasks:
                    if t not in done:
                        st = c.rpc(0, "compute.status", {"task": t})
                        if st["state"] in FINAL:
                            done[t] = st
                time.sleep(0.1)
            makespan = max(s["timings"]["finished"] for s in done.values())
            states = [s["state"] for s in done.values()]
            lat = sorted(
                s["timings"]["started"] - s["timings"]["negotiation_started"]
                for s in done.values()
                if "started" in s["timings"]
            )
            moved = sum(store_bytes(c, i) - before[i] for i in before)
            where = {}
            for s in done.values():
                where[s["executor"]] = where.get(s["executor"], 0) + 1
            wall = time.monotonic() - t0
            return {
                "mode": mode,
                "moved": moved,
                "makespan": makespan,
                "wall": wall,
                "p50": statistics.median(lat) * 1000,
                "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
                "completed": states.count("completed"),
                "spread": sorted(where.values(), reverse=True),
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--executors", type=int, default=4)
    ap.add_argument("--blobs", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--min-mb", type=float, default=5.0)
    ap.add_argument("--max-mb", type=float, default=200.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--max-negotiating", type=int, default=32, help="compute.max_negotiating (the default)"
    )
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args()
    cmd = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "bench/bench_locality.py"] + sys.argv[1:]
    )
    print(f"command: {cmd}")
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    rnd = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="icn-bench-blobs-"))
    try:
        blobs = []
        for k in range(args.blobs):
            size = int(MB * args.min_mb * (args.max_mb / args.min_mb) ** rnd.random())
            holders = rnd.sample(range(1, args.executors + 1), rnd.choice([1, 2]))
            blobs.append((make_blob(work, f"blob-{k}", size), size, holders))
        total = sum(s for _, s, _ in blobs)
        print(
            f"workload: {args.blobs} blobs, {total / MB:,.0f} MiB in all "
            f"({args.min_mb:g}-{args.max_mb:g} MiB each, on 1-2 of {args.executors} executors); "
            f"{args.tasks} tasks, task i reads blob i mod {args.blobs} as its input"
        )
        rows = [run_mode(m, args, blobs) for m in ("blind", "aware")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        f"{'mode':<7} {'bytes moved':>14} {'makespan':>10} {'placement p50':>14} "
        f"{'p99':>9} {'completed':>10}  tasks per executor"
    )
    for r in rows:
        print(
            f"{r['mode']:<7} {r['moved'] / MB:>10,.1f} MiB {r['makespan']:>9.2f}s "
            f"{r['p50']:>11.1f} ms {r['p99']:>6.1f} ms {r['completed']:>5}/{args.tasks:<4}  "
            f"{r['spread']}"
        )
    blind, aware = rows
    saved = 1 - aware["moved"] / blind["moved"] if blind["moved"] else 0.0
    slower = aware["makespan"] / blind["makespan"] - 1 if blind["makespan"] else 0.0
    ok_bytes = saved >= 0.90
    ok_time = slower <= 0.10
    print()
    print(
        f"bytes moved: {saved:.1%} fewer locality-aware {'OK' if ok_bytes else 'MISS'} "
        f"(target >= 90 %); makespan {slower:+.1%} {'OK' if ok_time else 'MISS'} "
        "(target <= +10 %)"
    )
    if args.json:
        print(json.dumps(rows))
    return 0 if ok_bytes and ok_time else 1


if __name__ == "__main__":
    raise SystemExit(main())
