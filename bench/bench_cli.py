"""How long one ``icnctl node status`` takes, as a script calling it in a loop sees it: the
wall time of the whole process (interpreter start, imports, one RPC to a real icnd, output).

Starts one real icnd in a temp dir, runs the command once to warm the page cache, then
``--runs`` times; prints the median and p90 wall time, the import time of ``icn_cli.main``
(``python -X importtime``, median of 3) and the exact command. Exits 1 when the median is over
``--limit-ms`` (150 ms, issue 13).

    .venv/bin/python bench/bench_cli.py
    .venv/bin/python bench/bench_cli.py --runs 3 --limit-ms 0   # a smoke run, no limit
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from icn_dev.cluster import LocalCluster


def icnctl_argv() -> list[str]:
    """The installed ``icnctl`` beside this interpreter, else ``python -m icn_cli``."""
    script = Path(sys.executable).with_name("icnctl")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "icn_cli"]


def clean_env() -> dict[str, str]:
    """The caller's environment without ICN_* (the command names its socket itself)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ICN_")}


def wall_ms(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    elapsed = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {r.returncode}:\n{r.stderr}")
    return elapsed


def import_ms(env: dict[str, str]) -> float:
    """Cumulative import time of icn_cli.main in a fresh interpreter, in ms."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import icn_cli.main"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    m = re.search(r"^import time:\s*\d+ \|\s*(\d+) \| icn_cli\.main$", r.stderr, re.M)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"could not measure the import time:\n{r.stderr[-2000:]}")
    return int(m.group(1)) / 1000


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="timed runs after one warm-up")
    ap.add_argument(
        "--limit-ms", type=float, default=150.0, help="fail above this median (0: no limit)"
    )
    args = ap.parse_args()
    env = clean_env()
    root = Path(tempfile.mkdtemp(prefix="icn-"))  # short: a socket path fits in 108 bytes
    try:
        with LocalCluster(root, 1, topology="none") as cluster:
            cluster.start_all()
            argv = [*icnctl_argv(), "--socket", str(cluster.nodes[0].socket), "node", "status"]
            wall_ms(argv, env)  # warm-up: page cache, .pyc files
            times = [wall_ms(argv, env) for _ in range(args.runs)]
        imports = statistics.median(import_ms(env) for _ in range(3))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    median = statistics.median(times)
    print(f"icnctl node status: median {median:.0f} ms, p90 {p90(times):.0f} ms wall")
    print(f"  runs (ms): {' '.join(f'{t:.0f}' for t in times)}")
    print(f"import icn_cli.main: {imports:.0f} ms (python -X importtime, median of 3)")
    print(f"command: {shlex.join(argv)}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.limit_ms and median > args.limit_ms:
        print(f"FAIL: the median is over {args.limit_ms:g} ms", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
