"""Benchmark: memory and lookup time of the blob location table at a million locations.

Builds ``--blobs`` blobs × ``--holders`` holders drawn from ``--dids`` DIDs (default 200,000 ×
5 from 2,000: 1,000,000 (blob, holder) locations) in :class:`BlobLocations`, the way
announcements fill it (one ``add`` per location, hashes as fresh ``bytes``), and reports:

* bytes per location: Python allocations held by the table (tracemalloc, measured on a second,
  identical build), and the process RSS growth of the first build; the DID strings exist before
  (a node has them in its member list anyway), the blob hashes are counted;
* lookup time: median over batches of 1,000 random known hashes, for ``holders()`` (what a
  fetch reads) and the live registry's ``lookup`` (what placement reads), and for unknown
  hashes;
* refresh: ``add`` of a location already there (what a full announcement costs per blob);
* sweep: ``expire`` when nothing is due (the periodic case) and when everything is.

Targets (issue 9): ≤ 300 bytes per location, lookup ≤ 5 µs. Exit 1 when one is missed.
``--snapshot`` also times an immutable ``BlobRegistry`` rebuilt from the table, the O(N) cost
the live view avoids on every change.

Run: .venv/bin/python bench/bench_locations.py   (make bench-locations)
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import platform
import random
import shlex
import statistics
import sys
import time
import tracemalloc

import psutil

from icn_node.blobs.locations import BlobLocations

TARGET_BYTES = 300.0
TARGET_US = 5.0
NOW = 1_700_000_000.0
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def fake_did(rng: random.Random) -> str:
    """A string shaped like an Ed25519 did:key (56 characters)."""
    return "did:key:z6Mk" + "".join(rng.choice(ALPHABET) for _ in range(44))


def build(n_blobs: int, holders: int, dids: list[str], seed: int) -> BlobLocations:
    rng = random.Random(seed)
    loc = BlobLocations()
    for b in range(n_blobs):
        h = hashlib.sha256(b.to_bytes(8, "big")).digest()
        size = rng.randrange(1, 1 << 34)
        for did in rng.sample(dids, holders):
            loc.add(h, did, size, NOW + rng.random() * 600)
    return loc


def per_call_us(fn, keys: list, batch: int = 1000) -> float:
    """Median over batches of the mean time per call, in µs."""
    times = []
    for i in range(0, len(keys) - batch + 1, batch):
        chunk = keys[i : i + batch]
        t = time.perf_counter()
        for k in chunk:
            fn(k)
        times.append((time.perf_counter() - t) / batch * 1e6)
    return statistics.median(times)


def measure(args: argparse.Namespace, dids: list[str], rng: random.Random) -> dict:
    """Build the table once (RSS growth) and time what is read and written on it."""
    gc.collect()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t = time.perf_counter()
    loc = build(args.blobs, args.holders, dids, args.seed)
    out: dict = {"build_s": time.perf_counter() - t, "count": len(loc)}
    gc.collect()
    out["rss_per"] = (proc.memory_info().rss - rss0) / len(loc)

    hashes = [
        hashlib.sha256(rng.randrange(args.blobs).to_bytes(8, "big")).digest()
        for _ in range(args.lookups)
    ]
    unknown = [hashlib.sha256(b"x" + i.to_bytes(8, "big")).digest() for i in range(50_000)]
    loc.tick(NOW + 600)
    view = loc.view()
    out["holders_us"] = per_call_us(loc.holders, hashes)
    out["lookup_us"] = per_call_us(view.lookup, hashes)
    out["miss_us"] = per_call_us(view.lookup, unknown)
    known = []
    for h in hashes[:50_000]:
        size, hs = view.lookup(h) or (0, frozenset())
        known.append((h, next(iter(hs)), size))
    out["refresh_us"] = per_call_us(lambda k: loc.add(k[0], k[1], k[2], NOW + 601), known)

    t = time.perf_counter()
    out["expired"] = loc.expire(NOW + 700)
    out["sweep_none_s"] = time.perf_counter() - t
    if args.snapshot:
        t = time.perf_counter()
        loc.frozen()
        out["snapshot_s"] = time.perf_counter() - t
    t = time.perf_counter()
    out["expired_all"] = loc.expire(NOW + 1e6)
    out["sweep_all_s"] = time.perf_counter() - t
    return out


def traced_bytes_per_location(args: argparse.Namespace, dids: list[str]) -> float:
    """The same build again, under tracemalloc: bytes the table holds per location."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    loc = build(args.blobs, args.holders, dids, args.seed)
    per = (tracemalloc.get_traced_memory()[0] - base) / len(loc)
    tracemalloc.stop()
    return per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blobs", type=int, default=200_000)
    ap.add_argument("--holders", type=int, default=5)
    ap.add_argument("--dids", type=int, default=2_000)
    ap.add_argument("--lookups", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--snapshot", action="store_true", help="also time a BlobRegistry rebuild")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    dids = [fake_did(rng) for _ in range(args.dids)]
    m = measure(args, dids, rng)
    traced = traced_bytes_per_location(args, dids)

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    bytes_ok = traced <= TARGET_BYTES
    lookup_ok = max(m["holders_us"], m["lookup_us"]) <= TARGET_US
    count, us = m["count"], m["build_s"] / m["count"] * 1e6
    print(
        f"blob locations: {count:,} ({args.blobs:,} blobs x {args.holders} holders"
        f" of {args.dids:,} DIDs)"
    )
    print(f"  build (one add per location)     {m['build_s']:.1f} s, {us:.2f} us each")
    print(
        f"  bytes per location (tracemalloc) {traced:.1f}  target <= {TARGET_BYTES:.0f}"
        f"  {verdict(bytes_ok)}"
    )
    print(f"  bytes per location (RSS growth)  {m['rss_per']:.1f}")
    for name, key in (("holders(h)", "holders_us"), ("view().lookup(h)", "lookup_us")):
        us = m[key]
        print(
            f"  {name + ', median':<32} {us:.2f} us  target <= {TARGET_US:g}"
            f"  {verdict(us <= TARGET_US)}"
        )
    print(f"  lookup of an unknown hash        {m['miss_us']:.2f} us")
    print(f"  refresh of a known location      {m['refresh_us']:.2f} us")
    print(f"  expire, nothing due              {m['sweep_none_s'] * 1000:.0f} ms")
    print(
        f"  expire, everything due           {m['sweep_all_s'] * 1000:.0f} ms"
        f" ({m['expired_all']:,} freed)"
    )
    if "snapshot_s" in m:
        print(f"  immutable BlobRegistry rebuild   {m['snapshot_s']:.2f} s (avoided: live view)")
    print(
        f"  python {platform.python_version()} on {platform.machine()}, {psutil.cpu_count()} cores"
    )
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    return 0 if bytes_ok and lookup_ok else 1


if __name__ == "__main__":
    sys.exit(main())
