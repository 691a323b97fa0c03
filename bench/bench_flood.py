"""A member floods placement requests at one icnd; what it costs everyone else.

Four real icnd processes on loopback (node0 submits, node1–3 execute) and one adversarial member
(``icn_dev.flood``: admitted, trusted at 0.9 like everyone, signing valid requests for tasks any
executor fits) linked to node1, publishing ``--rate`` requests a second for ``--seconds``. Meanwhile
node0 submits ``--tasks`` honest tasks spread over the flood. Printed: what the flooder sent, what
node1 dropped and why (mesh and compute counters), every node's RSS before, at its peak during the
flood and after, and the honest tasks' outcomes and latency (submit to completed).

    .venv/bin/python bench/bench_flood.py --rate 10000 --seconds 10 --tasks 20
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icn_dev.cluster import LocalCluster  # noqa: E402
from icn_dev.flood import FloodReport, flood  # noqa: E402
from icn_node.identity import NodeIdentity  # noqa: E402

SUM = Path(__file__).resolve().parents[1] / "examples" / "sum.wat"
FINAL = {"completed", "failed", "fuel_exhausted", "timed_out", "cancelled"}
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def metrics(cluster: LocalCluster, i: int) -> dict[str, float]:
    """Node ``i``'s Prometheus samples, keyed ``name{labels}`` as exposed."""
    addr = cluster.rpc(i, "node.status")["listen"]["metrics"]
    body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            key = m.group(1) + (f"{{{m.group(2)}}}" if m.group(2) else "")
            out[key] = float(m.group(3))
    return out


def counters(m: dict[str, float], prefix: str) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(m.items()) if k.startswith(prefix) and v}


def rss_mb(cluster: LocalCluster) -> list[float]:
    out = []
    for node in cluster.nodes:
        try:
            assert node.process is not None
            out.append(psutil.Process(node.process.pid).memory_info().rss / 2**20)
        except (psutil.Error, AssertionError):
            out.append(float("nan"))
    return out


def node_config(flooder: str, origin_rate: float | None):
    def config(i: int, dids: list[str]) -> dict[str, Any]:
        compute: dict[str, Any] = {"announce_interval_s": 1.0, "heartbeat_interval_s": 1.0}
        if i == 0:
            compute["executor"] = False
        mesh: dict[str, Any] = {"members": [*dids, flooder]}
        if origin_rate is not None:
            mesh["max_gossip_per_origin_s"] = origin_rate
        return {
            "mesh": mesh,
            "compute": compute,
            "trust": {"default": 0.9},
            "capacity": {"cpu_cores": 2.0},
        }

    return config


def submit(cluster: LocalCluster, n: int = 2000) -> str:
    params = {
        "module": base64.b64encode(SUM.read_bytes()).decode(),
        "module_name": SUM.name,
        "fuel": 13 * n + 10_000,
        "args": [str(n)],
        "inputs": [],
        "profile": {"cpu_cores": 0.5, "memory_mb": 64},
        "hints": [],
        "max_cost": None,
        "timeout_s": None,
    }
    return cluster.rpc(0, "compute.submit", params)["task"]


def run(
    rate: float, seconds: float, tasks: int, target: int, origin_rate: float | None
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="icn-flood-"))
    flooder = NodeIdentity.generate()
    try:
        with LocalCluster(
            root, 4, node_config=node_config(flooder.did, origin_rate), topology="star"
        ) as c:
            c.start_all()
            deadline = time.monotonic() + 30
            while len(c.rpc(0, "compute.executors")["executors"]) < 3:
                if time.monotonic() > deadline:
                    raise SystemExit("executors did not announce within 30 s")
                time.sleep(0.2)
            time.sleep(2.0)  # settle: the first announcements and links
            before = rss_mb(c)
            report: list[FloodReport] = []
            errors: list[BaseException] = []

            def attack() -> None:
                try:
                    report.append(
                        trio.run(flood, c.nodes[target].mesh_address, flooder, rate, seconds)
                    )
                except BaseException as e:  # reported below
                    errors.append(e)

            thread = threading.Thread(target=attack, daemon=True)
            thread.start()
            # The flooder signs first; start the honest work when its frames start flowing.
            while thread.is_alive() and not counters(
                metrics(c, target), "icn_gossip_messages_total"
            ):
                time.sleep(0.05)
            peak = list(before)
            submitted: dict[str, float] = {}
            spacing = seconds / max(1, tasks)
            next_at = time.monotonic()
            while thread.is_alive() or len(submitted) < tasks:
                now = time.monotonic()
                if len(submitted) < tasks and now >= next_at:
                    submitted[submit(c)] = now
                    next_at = now + spacing
                peak = [max(a, b) for a, b in zip(peak, rss_mb(c), strict=True)]
                time.sleep(0.1)
            thread.join()
            if errors:
                raise errors[0]
            done: dict[str, tuple[str, float, float]] = {}
            deadline = time.monotonic() + 60
            while len(done) < len(submitted) and time.monotonic() < deadline:
                for task in submitted:
                    if task in done:
                        continue
                    st = c.rpc(0, "compute.status", {"task": task})
                    if st["state"] in FINAL:
                        t = st.get("timings", {})
                        done[task] = (st["state"], t.get("claimed", -1.0), t.get("finished", -1.0))
                peak = [max(a, b) for a, b in zip(peak, rss_mb(c), strict=True)]
                time.sleep(0.1)
            time.sleep(2.0)
            after = rss_mb(c)
            m = metrics(c, target)
            alive = [n.process is not None and n.process.poll() is None for n in c.nodes]
            names = {n.did: n.name for n in c.nodes} | {flooder.did: "flooder"}
            closes: dict[str, int] = {}
            for node in c.nodes:
                for line in node.log_path.read_text(errors="replace").splitlines():
                    if '"link_closing"' in line:
                        e = json.loads(line)
                        k = f"{node.name}->{names.get(e.get('did'), '?')}:{e.get('reason')}"
                        closes[k] = closes.get(k, 0) + 1
            return {
                "flood": report[0],
                "dropped": counters(m, "icn_gossip_dropped_total"),
                "rate_limited": counters(m, "icn_compute_rate_limited_total"),
                "requests": counters(m, "icn_compute_placement_requests_received_total"),
                "preempted": counters(m, "icn_compute_placement_offers_preempted_total"),
                "rss_before": before,
                "rss_peak": peak,
                "rss_after": after,
                "outcomes": done,
                "submitted": len(submitted),
                "alive": alive,
                "closes": closes,
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=10_000.0, help="flood requests per second")
    p.add_argument("--seconds", type=float, default=10.0, help="how long the flood lasts")
    p.add_argument("--tasks", type=int, default=20, help="honest tasks submitted meanwhile")
    p.add_argument("--target", type=int, default=1, help="the node the flooder links to")
    p.add_argument(
        "--origin-rate", type=float, help="mesh.max_gossip_per_origin_s (default: icnd's)"
    )
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = p.parse_args()
    r = run(args.rate, args.seconds, args.tasks, args.target, args.origin_rate)
    f: FloodReport = r["flood"]
    states: dict[str, int] = {}
    for state, _, _ in r["outcomes"].values():
        states[state] = states.get(state, 0) + 1
    placed = sorted(c for s, c, _ in r["outcomes"].values() if s == "completed")
    lat = sorted(t for s, _, t in r["outcomes"].values() if s == "completed")
    print(
        f"flood: {f.sent:,} requests in {f.elapsed_s:.1f} s ({f.achieved_per_s:,.0f}/s) "
        f"at node{args.target}; signed in {f.signing_s:.1f} s beforehand; "
        f"link closed by target: {f.closed_by_target or 'no'}"
    )
    print(f"node{args.target} dropped: {r['dropped']}")
    print(f"node{args.target} rate-limited (compute): {r['rate_limited']}")
    print(f"node{args.target} requests taken: {r['requests']}; offers preempted: {r['preempted']}")
    print(
        "RSS MB (node0..3): before "
        + " ".join(f"{x:.1f}" for x in r["rss_before"])
        + " | peak "
        + " ".join(f"{x:.1f}" for x in r["rss_peak"])
        + " | after "
        + " ".join(f"{x:.1f}" for x in r["rss_after"])
    )
    print(
        f"honest tasks: {r['submitted']} submitted, outcomes {states}, "
        f"{r['submitted'] - len(r['outcomes'])} not final after 60 s"
    )
    if lat:
        print(
            f"honest tasks, submit->claimed: p50 {statistics.median(placed) * 1000:.0f} ms, "
            f"max {placed[-1] * 1000:.0f} ms; submit->finished: p50 "
            f"{statistics.median(lat) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )
    print(f"nodes alive: {r['alive']}; links closed (node->peer:reason): {r['closes'] or 'none'}")
    print("command: .venv/bin/python bench/bench_flood.py " + " ".join(sys.argv[1:]))
    if args.json:
        out = {k: v for k, v in r.items() if k != "flood"}
        out["flood"] = f.__dict__
        print(json.dumps(out, default=str))
    ok = all(r["alive"]) and states.get("completed", 0) == r["submitted"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
