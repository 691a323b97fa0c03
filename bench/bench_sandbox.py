"""Benchmark: the wasm sandbox (icn_node.runner) on examples/sum.wat and examples/infinite.wat.

Figures (the "Sandbox (runner)" section of docs/PERFORMANCE.md):

* one warm run of sum.wat (N = 100) with run_wasm_blocking, from WAT text and from binary wasm
  (compiled once with wasmtime.wat2wasm): the median of ``--rounds`` runs after a warm-up;
* the first run in a fresh process: a subprocess of this script with ``--first-run`` times
  ``import wasmtime`` + ``import icn_node.runner`` + one run of sum.wat (median of ``--fresh``);
* sum.wat fuel used for N = 100, 1,000 and 10^6 (N is argv[1]);
* the time for infinite.wat to burn 10^9 fuel (it ends fuel_exhausted);
* how long a 0.2 s timeout on infinite.wat takes to stop it: WasmRun under trio.run, real clock
  (the worst of ``--timeouts`` runs).

Targets: warm sum.wat run <= 20 ms; a 0.2 s timeout stops within 0.5 s. Exits 1 on a miss.

Run: .venv/bin/python bench/bench_sandbox.py   (make bench-sandbox)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

# wasmtime and icn_node.runner are imported inside the functions, so that --first-run can
# time the imports.

ROOT = Path(__file__).resolve().parent.parent
SUM_WAT = ROOT / "examples" / "sum.wat"
INFINITE_WAT = ROOT / "examples" / "infinite.wat"

TARGET_WARM_MS = 20.0
TARGET_STOP_S = 0.5
TIMEOUT_S = 0.2
BURN_FUEL = 10**9
FUEL_NS = (100, 1_000, 10**6)
FUEL_LIMIT = 10**12


class Outdirs:
    """Fresh (missing) output directories under one temp dir: a WasmJob wants an empty one."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="icn-bench-sandbox-"))
        self.count = 0

    def new(self) -> Path:
        self.count += 1
        return self.root / f"out{self.count}"

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_sum(module: bytes, out: Outdirs, n: int | None = None):
    from icn_node.runner import TaskState, WasmJob, run_wasm_blocking

    args = () if n is None else (str(n),)
    job = WasmJob(module=module, fuel=FUEL_LIMIT, output_dir=out.new(), args=args)
    result = run_wasm_blocking(job)
    k = 100 if n is None else n
    expect = k * (k + 1) // 2
    if result.state is not TaskState.COMPLETED or result.stdout != f"{expect}\n".encode():
        raise SystemExit(f"sum.wat N={n}: {result.state} {result.message!r} {result.stdout!r}")
    return result


def first_run() -> int:
    """Child mode: one run in this fresh process, imports included; prints JSON."""
    t0 = time.perf_counter()
    import wasmtime  # noqa: F401

    t_wasmtime = time.perf_counter()
    import icn_node.runner  # noqa: F401

    t_runner = time.perf_counter()
    out = Outdirs()
    try:
        run_sum(SUM_WAT.read_bytes(), out)
    finally:
        out.close()
    t1 = time.perf_counter()
    print(
        json.dumps(
            {
                "total_s": t1 - t0,
                "import_wasmtime_s": t_wasmtime - t0,
                "import_runner_s": t_runner - t_wasmtime,
                "run_s": t1 - t_runner,
            }
        )
    )
    return 0


def fresh_process() -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--first-run"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"--first-run failed ({proc.returncode}): {proc.stderr.strip()}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["process_s"] = wall
    return figures


def warm_ms(module: bytes, out: Outdirs, rounds: int) -> list[float]:
    for _ in range(3):
        run_sum(module, out)  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run_sum(module, out)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def burn(out: Outdirs):
    from icn_node.runner import TaskState, WasmJob, run_wasm_blocking

    job = WasmJob(module=INFINITE_WAT.read_bytes(), fuel=BURN_FUEL, output_dir=out.new())
    t0 = time.perf_counter()
    result = run_wasm_blocking(job)
    elapsed = time.perf_counter() - t0
    if result.state is not TaskState.FUEL_EXHAUSTED:
        raise SystemExit(f"infinite.wat with {BURN_FUEL} fuel: {result.state} {result.message}")
    return elapsed, result.fuel_used


def stop_after_timeout(out: Outdirs) -> tuple[float, float]:
    """(seconds from trio.run to the result, the result's wall_time_s) for one timed-out run."""
    import trio

    from icn_node.runner import TaskState, WasmJob, WasmRun
    from icn_node.runner.wasm import MAX_FUEL

    job = WasmJob(
        module=INFINITE_WAT.read_bytes(), fuel=MAX_FUEL, output_dir=out.new(), timeout_s=TIMEOUT_S
    )
    t0 = time.perf_counter()
    result = trio.run(WasmRun(job).run)
    elapsed = time.perf_counter() - t0
    if result.state is not TaskState.TIMED_OUT:
        raise SystemExit(f"infinite.wat with a {TIMEOUT_S} s timeout: {result.state}")
    return elapsed, result.wall_time_s


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def mark(ok: bool) -> str:
    return "OK" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50, help="warm runs per case; median reported")
    ap.add_argument("--fresh", type=int, default=3, help="fresh processes for the first run")
    ap.add_argument("--timeouts", type=int, default=3, help="0.2 s timeout runs; worst reported")
    ap.add_argument(
        "--first-run",
        action="store_true",
        help="(internal) time one run in this process, imports included; print JSON",
    )
    args = ap.parse_args(argv)
    if args.first_run:
        return first_run()
    if min(args.rounds, args.fresh, args.timeouts) < 1:
        ap.error("--rounds, --fresh and --timeouts must be >= 1")

    print(f"command: {shlex.join(sys.orig_argv)}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {platform.system()}; {cpu_model()}, {os.cpu_count()} cores; "
        f"wasmtime {metadata.version('wasmtime')}"
    )
    print(f"{args.rounds} warm rounds, {args.fresh} fresh processes, {args.timeouts} timeout runs")

    # Fresh processes first, before this process has the module cache warm in memory.
    fresh = [fresh_process() for _ in range(args.fresh)]

    import wasmtime

    wat = SUM_WAT.read_bytes()
    wasm = bytes(wasmtime.wat2wasm(wat.decode()))
    out = Outdirs()
    try:
        text_ms = warm_ms(wat, out, args.rounds)
        bin_ms = warm_ms(wasm, out, args.rounds)
        fuel = {n: run_sum(wasm, out, n).fuel_used for n in FUEL_NS}
        burn_s, burn_fuel = burn(out)
        stops = [stop_after_timeout(out) for _ in range(args.timeouts)]
    finally:
        out.close()

    ok = True
    med_text = statistics.median(text_ms)
    med_bin = statistics.median(bin_ms)
    ok &= (warm_ok := med_text <= TARGET_WARM_MS)
    print(
        f"  sum.wat run from WAT text      median {med_text:6.2f} ms  (min {min(text_ms):.2f}, "
        f"max {max(text_ms):.2f})  {mark(warm_ok)} (target <= {TARGET_WARM_MS:g} ms)"
    )
    ok &= (warm_ok := med_bin <= TARGET_WARM_MS)
    print(
        f"  sum.wat run from binary wasm   median {med_bin:6.2f} ms  (min {min(bin_ms):.2f}, "
        f"max {max(bin_ms):.2f}; {len(wasm)} bytes)  {mark(warm_ok)} "
        f"(target <= {TARGET_WARM_MS:g} ms)"
    )

    def fresh_med(key: str) -> float:
        return statistics.median(f[key] for f in fresh) * 1e3

    print(
        f"  first run in a fresh process   median {fresh_med('total_s'):6.1f} ms  "
        f"(import wasmtime {fresh_med('import_wasmtime_s'):.1f} + import icn_node.runner "
        f"{fresh_med('import_runner_s'):.1f} + run {fresh_med('run_s'):.1f} ms; "
        f"whole process {fresh_med('process_s'):.0f} ms)"
    )

    per_iter = (fuel[10**6] - fuel[1_000]) / (10**6 - 1_000)
    print(
        f"  sum.wat fuel, N = 100 / 1,000 / 10^6   "
        f"{fuel[100]:,} / {fuel[1_000]:,} / {fuel[10**6]:,}  ({per_iter:.2f} fuel per iteration)"
    )
    print(
        f"  infinite.wat burning 10^9 fuel {burn_s:6.3f} s  (fuel_used {burn_fuel:,}, "
        f"{burn_fuel / burn_s / 1e9:.2f} G fuel/s)"
    )

    worst = max(s[0] for s in stops)
    ok &= (stop_ok := worst <= TARGET_STOP_S)
    print(
        f"  {TIMEOUT_S:g} s timeout on infinite.wat  stops at {worst:.3f} s worst  "
        f"(runs: {', '.join(f'{s[0]:.3f}' for s in stops)} s; wall_time_s "
        f"{', '.join(f'{s[1]:.3f}' for s in stops)})  {mark(stop_ok)} "
        f"(target <= {TARGET_STOP_S:g} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
