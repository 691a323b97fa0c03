"""Benchmark: the network map in simulation: Vivaldi's accuracy and the probes' overhead.

Accuracy: 100 nodes on a synthetic latency matrix (icn_dev.netsim: a plane, and five continental
clusters on the globe; access-link heights 1-15 ms; +-5 % jitter), 32 random neighbours each,
300 rounds of one sample per node; median and 90th-percentile relative error of the predicted
RTT over all pairs, for ``--seeds`` seeds. The Vivaldi paper's 2-D + height figure is 11 %.
Target: median <= 15 % in every run.

Probes: ``--nodes`` NetmapCores on a simulated mesh for ``--hours`` (icn_dev.netsim.ProbeSim):
keepalives, coordinate pushes, 200 B/s of chatter per node, fetches of 64 KiB-50 MiB reported
with observe_transfer, and the probes. Per traffic pattern: probe bytes over mesh bytes (the
highest node and the median), rounds and outcomes, how many links have an estimate and from
what, and the estimates' median relative error. Target: no node over 1 %, no round to a peer a
transfer measured in the last 10 minutes.

Run: .venv/bin/python bench/bench_netmap.py
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time

from icn_dev.netsim import ProbeSim, accuracy

PATTERNS = {
    "fetch every 60 s": {"transfer_every_s": 60.0},
    "fetch every 5 min": {"transfer_every_s": 300.0},
    "fetch every hour (<= 5 MiB)": {"transfer_every_s": 3600.0, "max_transfer": 5 * 2**20},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--hours", type=float, default=2.0)
    args = ap.parse_args()
    ok = True
    print(f"python {platform.python_version()}, {platform.machine()}")

    print("\nVivaldi with height, 100 nodes, 32 neighbours, 300 rounds, +-5 % jitter")
    print(f"{'geometry':<8} {'median (per seed)':<58} {'worst':>6} {'p90 median':>10}")
    for geometry in ("plane", "globe"):
        runs = [accuracy(geometry, seed) for seed in range(1, args.seeds + 1)]
        medians = [r.median for r in runs]
        worst = max(medians)
        ok &= worst <= 0.15
        per_seed = " ".join(f"{m:.1%}" for m in medians)
        p90 = statistics.median(r.p90 for r in runs)
        print(f"{geometry:<8} {per_seed:<58} {worst:>6.1%} {p90:>10.1%}")

    print(f"\nProbes, {args.nodes} nodes x 6 links, {args.hours:g} simulated hours")
    head = (
        f"{'pattern':<28} {'probe/mesh max':>14} {'median':>7} {'rounds':>6} {'ok':>4} "
        f"{'failed (why)':<40} {'links est. (transfer/probe)':>27} {'err tr/pr':>10} {'s':>5}"
    )
    print(head)
    for name, pattern in PATTERNS.items():
        t0 = time.perf_counter()
        sim = ProbeSim(args.nodes, seed=1, **pattern)
        stats = sim.run(args.hours * 3600)
        ratios = sorted(sim.ratios())
        est = sim.estimates()
        ok &= not stats.violations and ratios[-1] <= 0.01
        failed = ", ".join(f"{k} {v}" for k, v in sorted(stats.failed.items())) or "-"
        errs = "/".join(f"{statistics.median(v):.0%}" if v else "-" for v in est.values())
        links = f"{len(est['transfer']) + len(est['probe'])} of {sim.links()}"
        links += f" ({len(est['transfer'])}/{len(est['probe'])})"
        print(
            f"{name:<28} {ratios[-1]:>14.3%} {statistics.median(ratios):>7.3%} "
            f"{stats.rounds:>6} {stats.succeeded:>4} {failed:<40} {links:>27} {errs:>10} "
            f"{time.perf_counter() - t0:>5.1f}"
        )
        for v in stats.violations[:5]:
            print("  VIOLATION", v)

    print(f"\ncommand: {shlex.join([sys.executable, *sys.argv])}")
    print("targets:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
