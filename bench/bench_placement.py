"""Benchmark: placement on real icnd processes (LocalCluster on 127.0.0.1), issue 5.

One submitter (node0, ``compute.executor = false``) and the rest executors, star topology (every
executor dials node0), a trust table in which every node trusts every other 0.9, executors
announcing every ``--announce-interval`` s (2 s: short, so executors are live soon after start;
the idle background it causes is measured and printed), ``compute.offer_window_ms = 1000`` (the
cap; the window closes early once every expected executor has offered or declined) and no
deliberation.
Before measuring, the bench waits (bounded) until ``compute.executors`` on the submitter lists
every executor, and runs ``--warmup`` unmeasured tasks (each executor fetches the code blob once).

Tasks are tiny on purpose: an empty wasm module (``_start`` returns at once), fuel 1,000, a
resource profile of 0.05 cores / 16 MB, so what is measured is placement, not the sandbox.

Phases:

1. sequential (``--nodes`` cluster): ``--tasks`` tasks, one at a time; each waits for its claim
   to be accepted (state ``running``) before the next is submitted;
2. concurrent (same cluster): ``--tasks`` tasks from ``--concurrency`` client threads, each
   submitting and waiting for its claim in a loop (``--concurrency`` placements in flight);
3. burst (a second cluster, one submitter + ``--executors``): ``--burst`` tasks submitted from
   ``--concurrency`` threads back to back, without waiting; placements/s sustained = placements
   / (last claim accepted - first submission request);
4. reference (the first cluster, node0 restarted with a registry that never sees an executor
   live, so no window closes early): ``--reference`` tasks with the full 1 s window.

Figures:

* latency = the submitter's ``started_at - negotiation_started_at`` from ``compute.status``
  timings: the request is published, offers are ranked, the claim is sent and accepted. It is
  exactly what ``icn_compute_placement_duration_seconds`` observes (the histogram is
  cross-checked);
* messages per placement = sum over all nodes of ``icn_gossip_messages_total{direction="out"}``
  deltas over the phase / placements (frames per link: a gossip to 6 peers counts 6), also with
  the idle background (announcements, measured for ``--idle`` s before the phases) subtracted;
  each placed task also runs, so its result and acknowledgement are counted too;
* winner vs a full 1 s window: a window that ran to its 1 s deadline *is* a full window. A
  window closes early only when every executor the submitter expected (live in its registry)
  has offered or declined, and an executor answers a round once, so after an early close only
  an executor it did not expect can still offer. The bench checks that the submitter saw every
  executor live before and after the phase (``compute.executors``); then an early close had
  every answer and the pick is the full window's. So ``differs <= (placements whose winner is
  not the top-ranked offer received: its claim was rejected) + (only if some executor was not
  live: min(early closes, late offers))``, late offers = executors' ``offers_sent_total`` -
  the submitter's ``offers_received_total``. The reference phase checks that a full window gets
  the same offers (count per placement) as an early close. Not captured: with a full window
  executors hold tentative reservations longer, so under load they would offer differently.

Targets (2-core machine): p50 <= 25 ms and p99 <= 150 ms in the sequential and concurrent
phases; >= 300 placements/s sustained with 8 executors. Exits 1 on a miss.

Run: .venv/bin/python bench/bench_placement.py --nodes 16   (make bench-placement)
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_sandbox import cpu_model  # noqa: E402  (bench/ is on sys.path as the script's dir)

from icn_dev.cluster import LocalCluster  # noqa: E402
from icn_node.rpc.client import RpcClient  # noqa: E402

TARGET_P50_MS = 25.0
TARGET_P99_MS = 150.0
TARGET_RATE = 300.0
WINDOW_MS = 1000

# (module (func (export "_start"))): returns at once.
EMPTY_WASM = bytes.fromhex(
    "0061736d01000000"  # magic, version
    "010401600000"  # type section: () -> ()
    "03020100"  # function section: one function of type 0
    "070a01065f73746172740000"  # export section: "_start" = function 0
    "0a040102000b"  # code section: an empty body
)
PROFILE = {"cpu_cores": 0.05, "memory_mb": 16}
FUEL = 1000


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def submit_params() -> dict[str, Any]:
    return {
        "module": base64.b64encode(EMPTY_WASM).decode(),
        "fuel": FUEL,
        "args": [],
        "inputs": [],
        "profile": PROFILE,
        "hints": [],
    }


# --- metrics -------------------------------------------------------------------------------------


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Scraper:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.addresses: dict[int, str] = {}

    def address(self, i: int) -> str:
        if i not in self.addresses:
            self.addresses[i] = self.cluster.rpc(i, "node.status")["listen"]["metrics"]
        return self.addresses[i]

    def forget(self, i: int) -> None:
        self.addresses.pop(i, None)

    def all(self) -> list[dict]:
        return [scrape(self.address(i)) for i in range(self.cluster.n)]


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def out_by_topic(snaps: list[dict]) -> Counter[str]:
    c: Counter[str] = Counter()
    for s in snaps:
        for (n, lab), v in s.items():
            d = dict(lab)
            if n == "icn_gossip_messages_total" and d.get("direction") == "out":
                c[d.get("topic", "?")] += v
    return c


def bytes_out(snaps: list[dict]) -> float:
    return sum(total(s, "icn_gossip_bytes_total", direction="out") for s in snaps)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_all(cluster: LocalCluster) -> list[float]:
    return [cpu_seconds(n.process.pid) if n.process else 0.0 for n in cluster.nodes]


# --- watching claims -----------------------------------------------------------------------------


class Watcher(threading.Thread):
    """Follows ``compute.watch`` on the submitter: when each task was claimed-and-accepted
    (``running``, the node's clock) and whether it failed; wakes waiting client threads."""

    def __init__(self, socket: Path, poll_s: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.socket = socket
        self.poll_s = poll_s
        self.running_at: dict[str, float] = {}
        self.final: dict[str, str] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.after = 0
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            with RpcClient(self.socket, timeout=60) as c:
                self.after = c.call("compute.watch", {"after": 0, "timeout_s": 0.001})["next"]
                self.ready.set()
                while not self.stop.is_set():
                    page = c.call("compute.watch", {"after": self.after, "timeout_s": 1})
                    self.after = page["next"]
                    with self.cond:
                        for ev in page["events"]:
                            if ev["state"] == "running":
                                self.running_at.setdefault(ev["task"], ev["at"])
                            elif ev["state"] in ("failed", "cancelled") and ev["old"] != "running":
                                self.final[ev["task"]] = ev["state"]
                        self.cond.notify_all()
                    if self.poll_s and page["events"]:
                        time.sleep(self.poll_s)
        except BaseException as e:  # noqa: BLE001
            self.error = e
            self.ready.set()
            with self.cond:
                self.cond.notify_all()

    def start(self) -> None:
        super().start()
        self.ready.wait(30)
        if self.error:
            raise self.error

    def wait_for(self, task: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while task not in self.running_at and task not in self.final:
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return False
                self.cond.wait(left)
        return task in self.running_at

    def wait_all(self, tasks: list[str], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                done = sum(1 for t in tasks if t in self.running_at or t in self.final)
                left = deadline - time.monotonic()
                if done == len(tasks) or left <= 0 or self.error is not None:
                    return done
                self.cond.wait(min(left, 1.0))


# --- cluster -------------------------------------------------------------------------------------


def make_cluster(root: Path, n: int, args: argparse.Namespace) -> LocalCluster:
    def node_config(i: int, dids: list[str]) -> dict[str, Any]:
        return {
            "trust": {"default": 0.0, "peers": {d: 0.9 for d in dids}},
            "compute": {
                "executor": i != 0,
                "announce_interval_s": args.announce_interval,
                "offer_window_ms": WINDOW_MS,
                "deliberation_ms": 0,
            },
        }

    return LocalCluster(
        root, n, node_config=node_config, topology="star", log_level=args.log_level
    ).init()


def live_count(cluster: LocalCluster) -> int:
    return len(cluster.rpc(0, "compute.executors")["executors"])


def wait_live(cluster: LocalCluster, want: int, timeout: float) -> float:
    t0 = time.monotonic()
    while True:
        live = live_count(cluster)
        if live >= want:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise SystemExit(
                f"the submitter sees {live} of {want} executors live after {timeout} s"
            )
        time.sleep(0.1)


def wait_peers(cluster: LocalCluster, want: int, timeout: float) -> None:
    t0 = time.monotonic()
    while cluster.rpc(0, "node.status")["peers"] < want:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"node0 has fewer than {want} mesh peers after {timeout} s")
        time.sleep(0.1)


def views(cluster: LocalCluster, tasks: list[str], threads: int = 4) -> list[dict[str, Any]]:
    """``compute.status`` of each task (one small call each, after the phase)."""
    rows: dict[str, dict[str, Any]] = {}

    def work(part: list[str]) -> None:
        with RpcClient(cluster.nodes[0].socket, timeout=60) as c:
            for t in part:
                rows[t] = c.call("compute.status", {"task": t})

    pool = [threading.Thread(target=work, args=(tasks[i::threads],)) for i in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return [rows[t] for t in tasks if t in rows]


# --- phases --------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    tasks: list[str] = field(default_factory=list)
    submit_at: dict[str, float] = field(default_factory=dict)
    t_start: float = 0.0
    t_end: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    before: list[dict] = field(default_factory=list)
    after: list[dict] = field(default_factory=list)
    cpu_before: list[float] = field(default_factory=list)
    cpu_after: list[float] = field(default_factory=list)
    live_before: int = 0
    live_after: int = 0
    load: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def placed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if "started" in r["timings"]]

    def split_ms(self) -> tuple[list[float], list[float]]:
        """(request -> window closed and claim sent, claim sent -> claim accepted) per task."""
        placed = self.placed
        return (
            [
                (r["timings"]["claimed"] - r["timings"]["negotiation_started"]) * 1000
                for r in placed
            ],
            [(r["timings"]["started"] - r["timings"]["claimed"]) * 1000 for r in placed],
        )

    def latencies_ms(self) -> list[float]:
        return [
            (r["timings"]["started"] - r["timings"]["negotiation_started"]) * 1000
            for r in self.placed
        ]


def run_clients(
    phase: Phase, sock: Path, watcher: Watcher, n_tasks: int, threads: int, wait: bool
) -> None:
    """Submit n_tasks from ``threads`` client threads; with ``wait`` each waits for its claim."""
    lock = threading.Lock()
    left = [n_tasks]

    def client() -> None:
        params = submit_params()
        try:
            with RpcClient(sock, timeout=60) as c:
                while True:
                    with lock:
                        if left[0] == 0:
                            return
                        left[0] -= 1
                    t = time.time()
                    task = c.call("compute.submit", params)["task"]
                    with lock:
                        phase.tasks.append(task)
                        phase.submit_at[task] = t
                    if wait and not watcher.wait_for(task):
                        with lock:
                            phase.errors.append(f"{task[:16]} not claimed in 30 s")
        except Exception as e:  # noqa: BLE001
            with lock:
                phase.errors.append(repr(e))

    pool = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    phase.t_start = time.time()
    for th in pool:
        th.start()
    for th in pool:
        th.join()


def run_phase(
    name: str,
    cluster: LocalCluster,
    scraper: Scraper,
    watcher: Watcher,
    n_tasks: int,
    threads: int,
    wait: bool,
    profile: Path | None = None,
) -> Phase:
    phase = Phase(name)
    phase.before = scraper.all()
    phase.live_before = live_count(cluster)
    phase.cpu_before = cpu_all(cluster)
    spies = start_spies(cluster, profile, name) if profile else []
    run_clients(phase, cluster.nodes[0].socket, watcher, n_tasks, threads, wait)
    done = watcher.wait_all(phase.tasks, timeout=60)
    if done < len(phase.tasks):
        phase.errors.append(f"{len(phase.tasks) - done} tasks not claimed 60 s after the last")
    phase.t_end = time.time()
    time.sleep(0.3)  # let the runs' results and acknowledgements land
    phase.cpu_after = cpu_all(cluster)
    phase.load = os.getloadavg()[0]
    phase.after = scraper.all()
    phase.live_after = live_count(cluster)
    phase.rows = views(cluster, phase.tasks)
    for proc in spies:
        proc.wait()
    return phase


PROFILE_S = 4


def start_spies(cluster: LocalCluster, root: Path, name: str) -> list[subprocess.Popen]:
    """py-spy (``pip install py-spy``) on the submitter and the first executor for PROFILE_S s:
    raw folded stacks under ``root``, summarised by :func:`spy_summary`."""
    root.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    procs = []
    for i in (0, 1):
        node = cluster.nodes[i]
        assert node.process is not None
        out = root / f"{name}-{node.name}.txt"
        argv = [spy, "record", "-p", str(node.process.pid), "-d", str(PROFILE_S), "-r", "250"]
        argv += ["-f", "raw", "-o", str(out)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def spy_summary(path: Path, top: int = 14) -> list[str]:
    """Share of samples per icn_node function, inclusive (on the stack) and self (innermost
    icn_node frame: time in a library called from it is charged to it)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return [f"  (no profile at {path})"]
    incl: Counter[str] = Counter()
    own: Counter[str] = Counter()
    n = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        k = int(count)
        frames = [f for f in stack.split(";") if "icn_node/" in f]
        n += k
        if not frames:
            own["(outside icn_node: trio loop, idle, threads)"] += k
            continue
        short = [
            f.split(" (")[0] + " " + f.split("icn_node/")[1].rstrip(")").split(":")[0]
            for f in frames
        ]
        own[short[-1]] += k
        for f in set(short):
            incl[f] += k
    out = [f"  {path.name}: {n} samples at 250 Hz; self (innermost icn_node frame):"]
    out += [f"    {100 * v / n:5.1f}%  {f}" for f, v in own.most_common(top)]
    out.append("  inclusive:")
    out += [f"    {100 * v / n:5.1f}%  {f}" for f, v in incl.most_common(top)]
    return out


# --- reporting -----------------------------------------------------------------------------------


@dataclass
class Report:
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def check(self, label: str, value: float, target: float, higher_is_better: bool) -> str:
        good = value >= target if higher_is_better else value <= target
        self.ok &= good
        sign = ">=" if higher_is_better else "<="
        return f"{'OK' if good else 'MISS'} (target {sign} {target:g})"


def message_figures(phase: Phase, idle_rate: float, placements: int) -> str:
    delta = out_by_topic(phase.after) - out_by_topic(phase.before)
    msgs = sum(delta.values())
    span = max(1e-9, phase.t_end - phase.t_start + 0.3)
    net = msgs - idle_rate * span
    by = ", ".join(f"{k} {v / max(1, placements):.1f}" for k, v in sorted(delta.items()))
    b = bytes_out(phase.after) - bytes_out(phase.before)
    return (
        f"messages/placement {msgs / max(1, placements):.1f} "
        f"({net / max(1, placements):.1f} without the idle background; by topic: {by}; "
        f"{b / max(1, placements) / 1024:.1f} KiB out)"
    )


def cpu_figures(phase: Phase, placements: int, idle_cpu: float) -> str:
    d = [a - b for a, b in zip(phase.cpu_after, phase.cpu_before, strict=True)]
    n = max(1, placements)
    span = phase.t_end - phase.t_start + 0.3
    net = sum(d) - idle_cpu * span
    ceiling = ((os.cpu_count() or 1) - idle_cpu) * n / max(1e-9, net)
    return (
        f"CPU per placement (all threads, over the phase): submitter {1000 * d[0] / n:.1f} ms, "
        f"executors {1000 * sum(d[1:]) / n:.1f} ms in all; {1000 * net / n:.1f} ms without the "
        f"idle background: at most {ceiling:.0f} placements/s on {os.cpu_count()} cores if "
        f"nothing else ran; load average after {phase.load:.1f}"
    )


def winner_figures(phase: Phase, sub: int, execs: range) -> str:
    """How often an early close may have changed the winner (see the module docstring)."""
    placed = phase.placed
    n = max(1, len(placed))
    not_top = sum(1 for r in placed if r["offers"] and r["offers"][0]["executor"] != r["executor"])
    early = sum(
        1
        for r in placed
        if r["timings"]["claimed"] - r["timings"]["negotiation_started"] < 0.95 * WINDOW_MS / 1000
    )
    retried = sum(1 for r in placed if r["attempt"] > 1)

    def delta(i: int, name: str) -> float:
        return total(phase.after[i], name) - total(phase.before[i], name)

    sent = sum(delta(i, "icn_compute_placement_offers_sent_total") for i in execs)
    requests = sum(delta(i, "icn_compute_placement_requests_received_total") for i in execs)
    received = delta(sub, "icn_compute_placement_offers_received_total")
    late = max(0, round(sent - received))
    complete = phase.live_before == phase.live_after == len(execs)
    # With every executor expected, an early close means every executor answered: no offer can
    # come later. Otherwise each offer that came after its window may have changed one winner.
    bound = min(n, not_top + (0 if complete else min(early, late)))
    offers = [len(r["offers"]) for r in placed]
    return (
        f"offers/placement mean {statistics.fmean(offers) if offers else 0:.1f} "
        f"(min {min(offers, default=0)}) of {len(execs)}; executors live at the submitter "
        f"before/after {phase.live_before}/{phase.live_after}; requests seen {requests:.0f}, "
        f"offers sent {sent:.0f}, in a window {received:.0f} ({late} late); window closed early "
        f"{early}, at its 1 s deadline {len(placed) - early} (a full window), re-negotiated "
        f"{retried}; winner != top offer {not_top}; winner may differ from a full 1 s window's "
        f"in <= {bound}/{len(placed)} ({100 * bound / n:.1f}%)"
    )


def latency_line(rep: Report, phase: Phase, targets: bool) -> str:
    lat = phase.latencies_ms()
    if not lat:
        rep.ok = False
        return f"{phase.name}: no placements (MISS)"
    p50, p99 = pct(lat, 50), pct(lat, 99)
    hist = phase_hist(phase)
    window, claim = phase.split_ms()
    line = (
        f"{phase.name}: {len(lat)}/{len(phase.tasks)} placed; latency p50 {p50:.1f} ms "
        f"{rep.check('p50', p50, TARGET_P50_MS, False) if targets else ''}, p99 {p99:.1f} ms "
        f"{rep.check('p99', p99, TARGET_P99_MS, False) if targets else ''}, "
        f"max {max(lat):.1f} ms, mean {statistics.fmean(lat):.1f} ms (p50 request -> claim "
        f"sent {pct(window, 50):.1f} ms, claim sent -> accepted {pct(claim, 50):.1f} ms); {hist}"
    )
    return line


def phase_hist(phase: Phase) -> str:
    name = "icn_compute_placement_duration_seconds"

    def get(snap: dict, suffix: str, **lab: str) -> float:
        return total(snap, name + suffix, **lab)

    a, b = phase.after[0], phase.before[0]
    count = get(a, "_count") - get(b, "_count")
    le25 = get(a, "_bucket", le="0.025") - get(b, "_bucket", le="0.025")
    le100 = get(a, "_bucket", le="0.1") - get(b, "_bucket", le="0.1")
    if not count:
        return "histogram: no observations"
    return (
        f"histogram: {count:.0f} observations, {100 * le25 / count:.0f}% <= 25 ms, "
        f"{100 * le100 / count:.0f}% <= 100 ms"
    )


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=16, help="nodes in the latency cluster")
    ap.add_argument("--executors", type=int, default=8, help="executors in the burst cluster")
    ap.add_argument("--tasks", type=int, default=200, help="tasks per latency phase")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads")
    ap.add_argument("--burst", type=int, default=300, help="tasks in the throughput burst")
    ap.add_argument("--reference", type=int, default=24, help="full-window reference tasks")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--announce-interval", type=float, default=2.0)
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle background")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directories")
    ap.add_argument(
        "--profile",
        type=Path,
        help=f"py-spy the submitter and one executor for {PROFILE_S} s of each phase into DIR",
    )
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: sequential,concurrent,burst,reference",
    )
    args = ap.parse_args(argv)
    if args.nodes < 2 or args.executors < 1:
        ap.error("--nodes >= 2 and --executors >= 1")
    skip = set(filter(None, args.skip.split(",")))

    print(f"command: {shlex.join(sys.orig_argv)}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {platform.system()}; {cpu_model()}, {os.cpu_count()} cores; "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    rep = Report()
    out: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="icn-bench-placement-"))
    try:
        if not ({"sequential", "concurrent", "reference"} <= skip):
            big(args, tmp / "latency", rep, out, skip)
        if "burst" not in skip:
            burst(args, tmp / "burst", rep, out)
    finally:
        if args.keep:
            print(f"cluster directories kept under {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for line in out:
        print(line)
    print("result:", "OK" if rep.ok else "MISS")
    return 0 if rep.ok else 1


def start(cluster: LocalCluster, args: argparse.Namespace, n: int) -> float:
    t0 = time.monotonic()
    cluster.start_all()
    wait_peers(cluster, n - 1, 60)
    wait_live(cluster, n - 1, 60)
    return time.monotonic() - t0


def prepare(
    cluster: LocalCluster, args: argparse.Namespace, n: int, poll_s: float
) -> tuple[float, Scraper, Watcher, Idle]:
    """Start, wait for every executor live, warm up, measure the idle message rate."""
    up = start(cluster, args, n)
    scraper = Scraper(cluster)
    watcher = Watcher(cluster.nodes[0].socket, poll_s=poll_s)
    watcher.start()
    warm(cluster, scraper, watcher, args.warmup, 1)
    return up, scraper, watcher, idle_rate(cluster, scraper, args.idle)


def warm(cluster: LocalCluster, scraper: Scraper, watcher: Watcher, n: int, threads: int) -> None:
    ph = Phase("warm-up")
    run_clients(ph, cluster.nodes[0].socket, watcher, n, threads, True)
    watcher.wait_all(ph.tasks, 30)


@dataclass
class Idle:
    """The background with no task: messages/s out over all nodes and CPU (cores busy)."""

    rate: float
    cpu: float

    def __str__(self) -> str:
        per = 1e6 * self.cpu / self.rate if self.rate else float("nan")
        return (
            f"idle background {self.rate:.0f} messages/s and {100 * self.cpu:.0f}% of a core "
            f"over all nodes ({per:.0f} us CPU per message sent + received)"
        )


def idle_rate(cluster: LocalCluster, scraper: Scraper, seconds: float) -> Idle:
    a, ca = scraper.all(), sum(cpu_all(cluster))
    t0 = time.time()
    time.sleep(seconds)
    b, cb = scraper.all(), sum(cpu_all(cluster))
    dt = time.time() - t0
    return Idle(sum((out_by_topic(b) - out_by_topic(a)).values()) / dt, (cb - ca) / dt)


def details(
    out: list[str],
    rep: Report,
    ph: Phase,
    args: argparse.Namespace,
    idle: Idle,
    placed: int,
    execs: range,
    name: str,
) -> None:
    """Messages, CPU, winner figures, errors and (with --profile) the profiles of a phase."""
    out.append("  " + message_figures(ph, idle.rate, placed))
    out.append("  " + cpu_figures(ph, placed, idle.cpu))
    out.append("  " + winner_figures(ph, 0, execs))
    out.extend(f"  error: {e}" for e in ph.errors[:5])
    if ph.errors:
        rep.ok = False
    if args.profile:
        for node in ("node0", "node1"):
            out += spy_summary(args.profile / f"{name}-{node}.txt")


def big(args, root: Path, rep: Report, out: list[str], skip: set[str]) -> None:
    n = args.nodes
    execs = range(1, n)
    with make_cluster(root, n, args) as cluster:
        up, scraper, watcher, idle = prepare(cluster, args, n, 0.0)
        out.append(
            f"\n== latency cluster: {n} nodes (1 submitter + {n - 1} executors), up and all "
            f"executors live in {up:.1f} s; {idle} =="
        )
        for name, threads in (("sequential", 1), ("concurrent", args.concurrency)):
            if name in skip:
                continue
            ph = run_phase(name, cluster, scraper, watcher, args.tasks, threads, True, args.profile)
            label = f"{name} (1 in flight)" if threads == 1 else f"{name} ({threads} in flight)"
            ph.name = label
            out.append(latency_line(rep, ph, True))
            span = ph.t_end - ph.t_start
            out.append(f"  {len(ph.placed) / span:.0f} placements/s closed-loop over {span:.1f} s")
            details(out, rep, ph, args, idle, len(ph.placed), execs, name)
        watcher.stop.set()
        if "reference" not in skip and args.reference:
            reference(args, cluster, scraper, rep, out)


def reference(args, cluster: LocalCluster, scraper: Scraper, rep: Report, out: list[str]) -> None:
    # A registry TTL of 3 us: the submitter never expects anyone, so every window runs its 1 s.
    n = cluster.n
    cluster.rewrite_config(0, {"compute": {"announce_interval_s": 1e-6}})
    cluster.restart(0)
    scraper.forget(0)
    wait_peers(cluster, n - 1, 60)
    watcher = Watcher(cluster.nodes[0].socket)
    watcher.start()
    ph = run_phase("reference", cluster, scraper, watcher, args.reference, args.concurrency, True)
    watcher.stop.set()
    lat = ph.latencies_ms()
    offers = [len(r["offers"]) for r in ph.placed]
    not_top = sum(
        1 for r in ph.placed if r["offers"] and r["offers"][0]["executor"] != r["executor"]
    )
    out.append(
        f"reference (node0 restarted with no live executors: no early close, full "
        f"{WINDOW_MS} ms window, {args.concurrency} in flight): {len(ph.placed)}/{len(ph.tasks)} "
        f"placed, latency p50 {pct(lat, 50):.0f} ms; offers/placement mean "
        f"{statistics.fmean(offers) if offers else 0:.1f} (min {min(offers, default=0)}) of "
        f"{n - 1}; winner != top offer {not_top}"
    )


def burst(args, root: Path, rep: Report, out: list[str]) -> None:
    n = args.executors + 1
    with make_cluster(root, n, args) as cluster:
        up, scraper, watcher, idle = prepare(cluster, args, n, 0.05)
        out.append(
            f"\n== burst cluster: 1 submitter + {args.executors} executors, up in {up:.1f} s; "
            f"{idle} =="
        )
        ph = run_phase(
            "burst", cluster, scraper, watcher, args.burst, args.concurrency, False, args.profile
        )
        watcher.stop.set()
        ran = [watcher.running_at[t] for t in ph.tasks if t in watcher.running_at]
        first = min(ph.submit_at.values())
        last_submit = max(ph.submit_at.values())
        placed = len(ran)
        span = max(ran) - first if ran else float("inf")
        rate = placed / span
        ran.sort()
        lo, hi = ran[len(ran) // 10], ran[(9 * len(ran)) // 10] if ran else (0, 0)
        mid = (0.8 * len(ran)) / (hi - lo) if hi > lo else float("nan")
        sub_rate = len(ph.tasks) / max(1e-9, last_submit - first)
        out.append(
            f"burst: {len(ph.tasks)} tasks from {args.concurrency} client threads without "
            f"waiting; submissions accepted at {sub_rate:.0f}/s; {placed} claims accepted in "
            f"{span:.2f} s: {rate:.0f} placements/s sustained "
            f"{rep.check('rate', rate, TARGET_RATE, True)} (middle 80%: {mid:.0f}/s)"
        )
        out.append("  " + latency_line(rep, ph, False).split(": ", 1)[1])
        details(out, rep, ph, args, idle, placed, range(1, n), "burst")


if __name__ == "__main__":
    sys.exit(main())
