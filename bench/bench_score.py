"""Benchmark: the cost of scoring one (task, executor) pair with DefaultPlacementPolicy.

Two cases: a task without hints, and a task with a 10-blob DataLocality hint looked up in a
registry of 100,000 (blob, node) locations. Each case scores every executor ``--rounds`` times;
the figure is the median over ``--repeat`` runs of (elapsed / pairs). Target: <= 20 us per pair.

Run: .venv/bin/python bench/bench_score.py   (make bench-score)
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import random
import shlex
import statistics
import sys
import time

from icn_node.scheduler import (
    BlobLocation,
    BlobRegistry,
    DataLocality,
    DefaultPlacementPolicy,
    LocalityContext,
    NodeCapacity,
    NodeState,
    PlacementOffer,
    PlacementRequest,
    PreferLowLatency,
    ResourceProfile,
)

TARGET_US = 20.0


def sha(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def build(n_executors: int, n_locations: int, seed: int):
    rng = random.Random(seed)
    dids = [f"did:key:z6MkExecutor{i:05d}" for i in range(n_executors)]
    # 50,000 blobs held by two nodes each: 100,000 locations.
    n_blobs = n_locations // 2
    locs = []
    for b in range(n_blobs):
        h = sha(b)
        size = rng.randrange(1, 1 << 30)
        for did in rng.sample(dids, 2):
            locs.append(BlobLocation(h, did, size))
    registry = BlobRegistry(locs)
    submitter = "did:key:z6MkSubmitter"
    nodes, contexts = [], []
    for i, did in enumerate(dids):
        cap = NodeCapacity.from_totals(16, 65536, 1_000_000, 1000.0)
        cap.reserve(ResourceProfile.compute_heavy(rng.randrange(0, 8) + 0.5, 4096))
        nodes.append(
            NodeState(did, cap.snapshot(), queue_depth=rng.randrange(0, 12), load=rng.random())
        )
        contexts.append(
            LocalityContext(
                region="eu" if i % 2 else "us",
                blobs=registry,
                rtt_ms={submitter: rng.uniform(1, 200)},
                bandwidth_mbps={submitter: rng.uniform(10, 1000)},
            )
        )
    profile = ResourceProfile.compute_heavy(2, 2048)
    plain = PlacementRequest(sha(10**9), profile, submitter)
    blobs = tuple(sha(rng.randrange(n_blobs)) for _ in range(10))
    hinted = PlacementRequest(
        sha(10**9 + 1), profile, submitter, (DataLocality(blobs), PreferLowLatency(50.0))
    )
    return nodes, contexts, plain, hinted, registry


def run_case(policy, request, nodes, contexts, trusts, rounds: int) -> tuple[float, int]:
    pairs = list(zip(nodes, contexts, trusts, strict=True))
    score = policy.score
    offers = 0
    t0 = time.perf_counter()
    for _ in range(rounds):
        for node, ctx, trust in pairs:
            if isinstance(score(request, node, trust, ctx, 1000.0), PlacementOffer):
                offers += 1
    elapsed = time.perf_counter() - t0
    return elapsed / (rounds * len(pairs)) * 1e6, offers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executors", type=int, default=200)
    ap.add_argument("--locations", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=25, help="passes over the executors per run")
    ap.add_argument("--repeat", type=int, default=7, help="runs; the median is reported")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    nodes, contexts, plain, hinted, registry = build(args.executors, args.locations, args.seed)
    setup_s = time.perf_counter() - t0
    rng = random.Random(args.seed)
    trusts = [rng.uniform(0.3, 1.0) for _ in nodes]
    policy = DefaultPlacementPolicy("phase16c", jitter=random.Random(args.seed))

    print(f"command: {shlex.join(sys.orig_argv)}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {platform.system()}"
    )
    print(
        f"registry: {len(registry):,} locations over {registry.blob_count:,} blobs "
        f"(built in {setup_s:.2f} s); {len(nodes)} executors; "
        f"{args.rounds} rounds x {args.repeat} runs"
    )
    ok = True
    for name, req in [("no hints", plain), ("10-blob DataLocality + PreferLowLatency", hinted)]:
        run_case(policy, req, nodes, contexts, trusts, 1)  # warm-up
        runs = [
            run_case(policy, req, nodes, contexts, trusts, args.rounds) for _ in range(args.repeat)
        ]
        per_pair = [r[0] for r in runs]
        med = statistics.median(per_pair)
        ok &= med <= TARGET_US
        print(
            f"  {name:<42} median {med:6.2f} us/pair  (min {min(per_pair):.2f}, "
            f"max {max(per_pair):.2f}; {runs[0][1]} offers per run)  "
            f"{'OK' if med <= TARGET_US else 'OVER'} (target <= {TARGET_US:g} us)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
