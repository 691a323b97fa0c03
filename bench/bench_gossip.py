"""Gossip benchmark: N real icnd processes on 127.0.0.1, bootstrapped as a chain.

Prints the time to a connected mesh, the delivery latency (p50/p99) of 1 KiB messages from one
origin to every other node, the copies each node received per message, and the message rate
the mesh sustains. Everything runs under a temporary directory on loopback; only processes
started here are stopped.

    .venv/bin/python bench/bench_gossip.py --nodes 16
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from icn_dev.cluster import LocalCluster

TOPIC = "bench"


def wait_until(predicate, timeout: float, what: str, step: float = 0.05) -> float:
    """Poll until true; returns the seconds it took. Raises after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - start


def links(c: LocalCluster) -> dict[int, set[int]]:
    by_did = {n.did: n.index for n in c.nodes}
    graph = {}
    for n in c.nodes:
        peers = c.rpc(n.index, "mesh.peers")["peers"]
        graph[n.index] = {by_did[p["did"]] for p in peers if p["state"] == "active"}
    return graph


def connected(graph: dict[int, set[int]]) -> bool:
    seen, todo = {0}, [0]
    while todo:
        for j in graph[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(graph)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024, help="payload bytes")
    ap.add_argument("--messages", type=int, default=200, help="latency phase messages (<=1000)")
    ap.add_argument("--rate", type=float, default=50.0, help="latency phase publish rate /s")
    ap.add_argument("--burst", type=int, default=2000, help="throughput phase messages")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    args = ap.parse_args()
    n = args.nodes
    messages = min(args.messages, 1000)
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print(
        f"nodes={n} topology=chain payload={args.size} B messages={messages} "
        f"rate={args.rate:g}/s burst={args.burst}"
    )

    root = Path(tempfile.mkdtemp(prefix="icn-bench-"))
    cluster = LocalCluster(root, n, topology="chain", log_level="warning")
    try:
        with cluster:
            t0 = time.monotonic()
            cluster.start_all()
            ready = time.monotonic() - t0
            t1 = time.monotonic()
            wait_until(lambda: connected(links(cluster)), 60, "a connected mesh", 0.1)
            t_connected = time.monotonic() - t1
            wait_until(
                lambda: all(len(v) == n - 1 for v in links(cluster).values()),
                60,
                "every node to link every other",
                0.1,
            )
            t_full = time.monotonic() - t1
            print(f"processes ready:           {ready:.2f} s")
            print(f"connected mesh:            {t_connected:.2f} s after ready")
            print(f"every node linked to all:  {t_full:.2f} s after ready")

            for i in range(n):
                cluster.rpc(i, "mesh.subscribe", {"topic": TOPIC})
            wait_until(
                lambda: all(
                    all(TOPIC in p["topics"] for p in cluster.rpc(i, "mesh.peers")["peers"])
                    for i in range(n)
                ),
                30,
                "subscriptions to spread",
            )
            time.sleep(1.5)  # a heartbeat or two to graft the topic mesh
            degrees = [
                sum(TOPIC in p["mesh"] for p in cluster.rpc(i, "mesh.peers")["peers"])
                for i in range(n)
            ]
            print(f"topic mesh degree:         min {min(degrees)} max {max(degrees)}")

            # Latency: paced publishing from node 0.
            text = "x" * args.size
            cluster.rpc(
                0,
                "mesh.publish",
                {"topic": TOPIC, "text": text, "count": messages, "interval_s": 1 / args.rate},
                timeout=600,
            )
            wait_until(
                lambda: all(
                    cluster.rpc(i, "mesh.received", {"topic": TOPIC, "limit": 0})["delivered_total"]
                    >= messages
                    for i in range(1, n)
                ),
                60,
                "latency-phase deliveries",
                0.25,
            )
            latencies, copies = [], []
            for i in range(1, n):
                res = cluster.rpc(
                    i, "mesh.received", {"topic": TOPIC, "limit": 1000, "payload": False}
                )
                latencies += [m["received_ms"] - m["ts_ms"] for m in res["messages"]]
                copies.append(res["copies_received"] / max(1, res["delivered_total"]))
            print(
                f"delivery latency:          p50 {pct(latencies, 50):.2f} ms  "
                f"p99 {pct(latencies, 99):.2f} ms  max {max(latencies):.2f} ms "
                f"({len(latencies)} deliveries)"
            )
            print(
                f"copies received per node:  mean {statistics.mean(copies):.2f}  "
                f"min {min(copies):.2f}  max {max(copies):.2f} (per message; 1.0 = no duplicates)"
            )

            # Throughput: node 0 publishes a burst as fast as backpressure allows.
            base = [
                cluster.rpc(i, "mesh.received", {"topic": TOPIC, "limit": 0})["delivered_total"]
                for i in range(n)
            ]
            t2 = time.monotonic()
            cluster.rpc(
                0, "mesh.publish", {"topic": TOPIC, "text": text, "count": args.burst}, timeout=600
            )
            published = time.monotonic() - t2
            wait_until(
                lambda: all(
                    cluster.rpc(i, "mesh.received", {"topic": TOPIC, "limit": 0})["delivered_total"]
                    - base[i]
                    >= args.burst
                    for i in range(1, n)
                ),
                300,
                "burst deliveries",
                0.25,
            )
            elapsed = time.monotonic() - t2
            print(
                f"sustained:                 {args.burst / elapsed:.0f} messages/s delivered to "
                f"all {n - 1} others ({args.burst} in {elapsed:.2f} s; origin published in "
                f"{published:.2f} s)"
            )
            print(
                f"                           {args.burst * (n - 1) / elapsed:.0f} deliveries/s, "
                f"{args.burst * args.size * (n - 1) / elapsed / 1e6:.1f} MB/s of payload"
            )
    finally:
        if args.keep:
            print("cluster directory:", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
