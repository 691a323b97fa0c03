"""Benchmark: put and get of a large file through icnctl on one real icnd (issue 9).

One ``icnd`` (LocalCluster on 127.0.0.1, no peers). A source file of ``--size-mb`` (default
2048) is written to a temporary directory (real blocks, not sparse: a 16 MiB random pool written
over and over, hashed as it is written). Then, timed separately:

1. ``icnctl --json blob put FILE``: icnctl hands icnd the open file; icnd reads it in 1 MiB
   chunks into its store, hashing as it goes, fsyncs and renames;
2. ``icnctl --json blob get HASH -o OUT``: icnd writes the blob into the file icnctl opened.

While each runs, the daemon's resident set size is sampled every 10 ms (psutil on its pid).
The bench prints, per phase, the wall time, the throughput (MiB/s of blob), the daemon's RSS
before, its peak and the growth (peak - the RSS before the put), checks that the blob id is the
source's SHA-256 and that the copy's SHA-256 matches, and exits 1 if the RSS growth reaches
``--max-growth-mb`` (64) or a hash differs.

Disk: the source, the stored blob and the copy need three times the size. The bench checks the
free space of ``--dir`` first and, when it is short, scales the size down (saying so); below
64 MiB it gives up.

Run: .venv/bin/python bench/bench_blobs.py   (make bench-blobs)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icn_dev.cluster import LocalCluster  # noqa: E402

MiB = 1 << 20
POOL = 16 * MiB
HEADROOM = 512 * MiB  # left free on the disk, beyond the three copies
MIN_MB = 64


@dataclass
class Phase:
    name: str
    seconds: float
    rss_before: int
    rss_peak: int


class RssSampler:
    """Samples a process's RSS every ``interval`` s in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def fit_size(size_mb: int, where: Path) -> int:
    """The size to use: ``size_mb``, or less when ``where`` lacks room for three copies."""
    free = shutil.disk_usage(where).free
    room_mb = int((free - HEADROOM) // 3 // MiB)
    if room_mb >= size_mb:
        return size_mb
    if room_mb < MIN_MB:
        sys.exit(
            f"not enough free disk in {where}: {free // MiB} MiB free, a run needs three copies "
            f"of at least {MIN_MB} MiB plus {HEADROOM // MiB} MiB headroom"
        )
    scaled = room_mb // 64 * 64
    print(
        f"note: {where} has {free // MiB} MiB free, not enough for three copies of "
        f"{size_mb} MiB plus {HEADROOM // MiB} MiB headroom; running with {scaled} MiB instead"
    )
    return scaled


def write_source(path: Path, size: int) -> str:
    """A file of ``size`` real bytes (the random pool repeated); returns its SHA-256."""
    pool = os.urandom(POOL)
    hasher = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            piece = pool[: min(left, POOL)]
            f.write(piece)
            hasher.update(piece)
            left -= len(piece)
        f.flush()
        os.fsync(f.fileno())
    return hasher.hexdigest()


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            hasher.update(chunk)
    return hasher.hexdigest()


def icnctl(cluster: LocalCluster, *args: str) -> dict:
    argv = [sys.executable, "-m", "icn_cli", "--socket", str(cluster.nodes[0].socket), "--json"]
    r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"icnctl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    out: dict = json.loads(r.stdout)
    return out


def timed(name: str, sampler_pid: int, rss_before: int, fn) -> tuple[Phase, dict]:
    with RssSampler(sampler_pid) as sampler:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    return Phase(name, seconds, rss_before, sampler.peak), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=2048, help="source file size (MiB)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="work here")
    ap.add_argument("--max-growth-mb", type=float, default=64.0, help="RSS growth target")
    args = ap.parse_args()
    command = "bench/bench_blobs.py " + shlex.join(sys.argv[1:])

    size_mb = fit_size(args.size_mb, args.dir)
    size = size_mb * MiB
    root = Path(tempfile.mkdtemp(prefix="icn-bench-blobs-", dir=args.dir))
    try:
        src, out = root / "source.bin", root / "copy.bin"
        t0 = time.perf_counter()
        want = write_source(src, size)
        print(f"source: {size_mb} MiB written in {time.perf_counter() - t0:.1f} s ({src})")
        with LocalCluster(root / "cluster", 1, topology="none", log_level="warning") as cluster:
            cluster.start_all()
            node = cluster.nodes[0]
            assert node.process is not None
            pid = node.process.pid
            time.sleep(1.0)  # let start-up settle before the baseline
            baseline = psutil.Process(pid).memory_info().rss

            put, put_out = timed(
                "put", pid, baseline, lambda: icnctl(cluster, "blob", "put", str(src))
            )
            before_get = psutil.Process(pid).memory_info().rss
            get, get_out = timed(
                "get",
                pid,
                before_get,
                lambda: icnctl(cluster, "blob", "get", want, "-o", str(out)),
            )
        got = sha256_file(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ok_hash = put_out["blob"] == want and put_out["size"] == get_out["size"] == size
    ok_hash = ok_hash and got == want
    growth = max(put.rss_peak, get.rss_peak) - baseline
    print()
    print(f"host: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"blob: {size_mb} MiB ({size} bytes), sha256 {want[:16]}…")
    print(f"{'phase':5}  {'time':>8}  {'MiB/s':>7}  {'RSS before':>11}  {'RSS peak':>9}  growth")
    for ph in (put, get):
        print(
            f"{ph.name:5}  {ph.seconds:7.2f}s  {size_mb / ph.seconds:7.0f}  "
            f"{ph.rss_before / MiB:9.1f} M  {ph.rss_peak / MiB:7.1f} M  "
            f"{(ph.rss_peak - baseline) / MiB:+.1f} MiB"
        )
    print(f"daemon RSS growth over both: {growth / MiB:.1f} MiB (target < {args.max_growth_mb:g})")
    print(
        f"hashes: put id {'=' if put_out['blob'] == want else '≠'} source, copy "
        f"{'=' if got == want else '≠'} source"
    )
    print(f"command: .venv/bin/python {command}".rstrip())
    failed = []
    if growth >= args.max_growth_mb * MiB:
        failed.append(f"RSS growth {growth / MiB:.1f} MiB >= {args.max_growth_mb:g} MiB")
    if not ok_hash:
        failed.append("hash mismatch")
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
