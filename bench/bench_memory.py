"""Idle memory of one icnd, before and after it has run tasks, and what the first wasm run
costs in-process (issue 13's target: ≤ 60 MB RSS after tasks have run).

    .venv/bin/python bench/bench_memory.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icn_dev.cluster import LocalCluster  # noqa: E402
from icn_node.runner.wasm import WasmJob, run_wasm_blocking  # noqa: E402

SUM = ROOT / "examples" / "sum.wat"


def mb(rss: int) -> float:
    return round(rss / 2**20, 1)


def daemon() -> None:
    root = Path(tempfile.mkdtemp(prefix="icn-mem-"))
    try:
        with LocalCluster(root, 1, node_config=lambda i, d: {"mesh": {"open": True}}) as c:
            c.start_all()
            time.sleep(3)
            assert c.nodes[0].process is not None
            p = psutil.Process(c.nodes[0].process.pid)
            full = p.memory_full_info()
            print(f"icnd idle: RSS {mb(full.rss)} MB (USS {mb(full.uss)} MB)")
            for _ in range(5):
                r = c.icnctl(0, "compute", "submit", str(SUM), "--arg", "1000", "--cpu", "0.5",
                             "--wait")  # fmt: skip
                assert r.returncode == 0, r.stderr
            time.sleep(2)
            print(f"icnd after 5 wasm tasks: RSS {mb(p.memory_info().rss)} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def in_process() -> None:
    me = psutil.Process()
    rss = [mb(me.memory_info().rss)]
    for _ in range(4):
        out = Path(tempfile.mkdtemp(prefix="icn-mem-run-")) / "out"
        run_wasm_blocking(WasmJob(module=SUM.read_bytes(), fuel=10**8, output_dir=out,
                                  args=("1000",)))  # fmt: skip
        shutil.rmtree(out.parent, ignore_errors=True)
        rss.append(mb(me.memory_info().rss))
    print("in-process RSS before and after each of 4 runs (MB): " + " -> ".join(map(str, rss)))


def main() -> int:
    daemon()
    in_process()
    print("command: .venv/bin/python bench/bench_memory.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
