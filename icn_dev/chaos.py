"""``make chaos``: real icnd processes on loopback under crashes and a partition, then a history
check from the nodes' own records (issue 10, "Chaos suite").

Three phases, each bounded in time, all seeded (``--seed``):

1. **Crashes.** ``--tasks`` small wasm tasks (``examples/sum.wat`` with varying N, a fraction
   long enough that kills land mid-run) over ``--nodes`` nodes: ``--submitters`` submit only,
   the rest execute with a capacity cap (``--executor-cores``), so they fill up. While tasks
   are submitted and run, a driver SIGKILLs a random executor every ``--kill-every`` seconds
   (jittered) and starts it again ``--down`` seconds later, and restarts one submitter once
   (``--submitter-signal``: SIGKILL or SIGTERM, then start).
2. **Partition** (``--partition-s``, 0 to skip). Every mesh link crosses a
   :class:`~icn_dev.proxy.Switchboard`; the nodes are split into two groups (even and odd
   indexes, one submitter in each) for ``--partition-s`` seconds, blackholed, while tasks are
   submitted before and during the cut; then healed. The mesh must be whole again (every node
   has an active link to every other, per ``mesh.peers``) within twice the liveness timeout.
3. **Store crashes** (``--store-iterations``, 0 to skip): one node is SIGKILLed at random
   points of a burst of submissions (SQLite writes) and of ``icnctl blob put`` of a large file,
   then started again; the stores must be consistent (see :func:`check_stores`).

Afterwards the executors are stopped, their ``jobs`` tables read, and
:func:`icn_dev.chaos_check.check` looks at every task of phases 1 and 2. The figures table and
the exact command are printed; the exit code is 1 on any lost task, task completed twice, wrong
result, task left non-final, capacity violation, store inconsistency or a mesh that did not heal
in time.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import random
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cbor2

from icn_node.compute.records import JobRecord, TaskRecord
from icn_node.errors import IcnError, RpcError
from icn_node.rpc.client import DaemonUnavailable

from .chaos_check import FINAL, Cap, Report, Submission, check
from .cluster import LocalCluster
from .proxy import PortOwners, Switchboard

ROOT = Path(__file__).resolve().parent.parent
SUM = ROOT / "examples" / "sum.wat"
MB = 1024 * 1024

# Compute timers short enough that losses show in seconds (as the integration tests use);
# the mesh keeps its production timers, so the partition heals on the real liveness timeout.
COMPUTE = {
    "announce_interval_s": 1.0,
    "heartbeat_interval_s": 0.5,
    "lease_timeout_s": 4.0,
    "claim_timeout_s": 2.0,
    "result_resend_s": 0.5,
}


@dataclass(frozen=True)
class Plan:
    """Everything a run depends on besides the daemons' own timing; each field is a command
    line option (``--submit-s``), and :meth:`argv` gives back the command for a plan."""

    seed: int = 1
    nodes: int = 8
    submitters: int = 2
    tasks: int = 1000
    submit_s: float = 90.0  # phase 1 submissions are spread over this long
    long_fraction: float = 0.05  # tasks of ~0.3-1.2 s of wasm each (alone on a core)
    executor_cores: float = 2.0
    executor_memory_mb: int = 512
    kill_every: float = 4.0  # mean seconds between executor kills (uniform 0.5x-1.5x)
    down: tuple[float, float] = (1.0, 4.0)  # an executor stays down this long (uniform)
    max_down: int = 2  # executors down at once, at most
    submitter_signal: str = "kill"  # kill, term or none
    partition_s: float = 30.0
    # blackhole (bytes held, as when packets are dropped), reset (links closed, dials refused),
    # or both: one cut of each, one after the other
    partition_mode: str = "both"
    partition_tasks: int = 120
    liveness_s: float = 10.0  # mesh.liveness_timeout_s
    store_iterations: int = 20
    store_blob_mb: int = 64
    settle_s: float = 90.0  # longest wait for every task to end after the faults stop

    def argv(self) -> list[str]:
        """The command line that runs this plan."""
        out = ["python", "-m", "icn_dev.chaos"]
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, tuple):
                out += [flag, *map(str, value)]
            else:
                out += [flag, str(value)]
        return out


def expected_stdout(n: int) -> str:
    return f"{n * (n + 1) // 2 % 2**64}\n"


def sum_fuel(n: int) -> int:
    return 13 * n + 10_000  # sum.wat: 13 fuel per iteration plus its start


@dataclass
class Fault:
    at: float
    kind: str  # kill, start, stop, signal, partition, heal
    node: str
    detail: str = ""


@dataclass
class Cut:
    """One partition: how it was made, and how the mesh took it."""

    mode: str
    seconds: float
    heal_limit_s: float
    gone_s: float | None = None  # cut → no active link across it (None: not within the cut)
    heal_s: float = math.inf  # heal → every node linked to every other again
    tasks: int = 0  # submitted just before and during it


@dataclass
class Figures:
    """What the table prints, beside the history check's :class:`Report`."""

    kills: int = 0
    restarts: int = 0
    submitter_restarts: list[str] = field(default_factory=list)
    partitions: list[Cut] = field(default_factory=list)
    store_kills: int = 0
    store_sqlite_kills: int = 0
    store_blob_kills: int = 0
    store_acked_tasks: int = 0
    store_acked_blobs: int = 0
    store_put_kills: Counter[str] = field(default_factory=Counter)  # where in the put each landed
    store_scratch_left: int = 0  # temporary files and run directories the kills left
    store_problems: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # a phase that could not go on
    wall_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)

    @property
    def heal_ok(self) -> bool:
        return all(c.heal_s <= c.heal_limit_s for c in self.partitions)


# --- the cooperative --------------------------------------------------------------------------


class Coop:
    """A :class:`LocalCluster` whose mesh links all cross a :class:`Switchboard`, with the
    driver's own log of what it did to it."""

    def __init__(self, root: Path, plan: Plan) -> None:
        self.plan = plan
        self.submitters = list(range(plan.submitters))
        self.executors = list(range(plan.submitters, plan.nodes))
        self.cluster = LocalCluster(root, plan.nodes, node_config=self._config, topology="none")
        self.board = Switchboard(identify=PortOwners(self._pids))
        self.faults: list[Fault] = []
        self.down: set[int] = set()
        self.lock = threading.Lock()
        self.generation: dict[int, int] = defaultdict(int)  # starts per node

    def _config(self, i: int, dids: list[str]) -> dict[str, Any]:
        c: dict[str, Any] = {
            "compute": dict(COMPUTE),
            "mesh": {"liveness_timeout_s": self.plan.liveness_s},
            "log": {"level": "warning"},
        }
        if i < self.plan.submitters:
            c["compute"]["executor"] = False
        else:
            c["capacity"] = {
                "cpu_cores": self.plan.executor_cores,
                "memory_mb": self.plan.executor_memory_mb,
            }
        return c

    def _pids(self) -> dict[int, str]:
        return {n.process.pid: n.name for n in self.cluster.nodes if n.process is not None}

    def start(self) -> None:
        self.cluster.init()
        fronts = [self.board.add_front(n.name, n.mesh_port) for n in self.cluster.nodes]
        for i in range(self.plan.nodes):
            self.cluster.rewrite_config(
                i,
                {
                    "mesh": {
                        "advertise": f"127.0.0.1:{fronts[i]}",
                        "bootstrap": [f"127.0.0.1:{p}" for k, p in enumerate(fronts) if k != i],
                    }
                },
            )
        self.cluster.start_all()

    def name(self, i: int) -> str:
        return self.cluster.nodes[i].name

    def log(self, kind: str, i: int | None, detail: str = "") -> None:
        with self.lock:
            self.faults.append(Fault(time.time(), kind, "" if i is None else self.name(i), detail))

    def kill(self, i: int) -> None:
        with self.lock:
            self.down.add(i)
        self.cluster.kill(i)
        self.log("kill", i)

    def term(self, i: int) -> None:
        with self.lock:
            self.down.add(i)
        self.cluster.stop(i)
        self.log("stop", i, "SIGTERM")

    def bring_up(self, i: int) -> None:
        self.cluster.nodes[i].restarts += 1
        self.cluster.start(i)
        with self.lock:
            self.down.discard(i)
            self.generation[i] += 1
        self.log("start", i)

    def is_down(self, i: int) -> bool:
        with self.lock:
            return i in self.down

    def deaths(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(list)
        for f in self.faults:
            if f.kind in ("kill", "stop"):
                out[f.node].append(f.at)
        return out

    def rpc(
        self, i: int, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> Any:
        return self.cluster.rpc(i, method, params, timeout=timeout)

    def close(self) -> None:
        self.cluster.close()
        self.board.close()


# --- workload ---------------------------------------------------------------------------------


class Submitter:
    """Submits tasks through ``compute.submit``; remembers every answer, and every call whose
    answer never came (indeterminate: the task may exist)."""

    def __init__(self, coop: Coop, rng: random.Random) -> None:
        self.coop = coop
        self.rng = rng
        self.module = base64.b64encode(SUM.read_bytes()).decode()
        self.submissions: list[Submission] = []
        self._used: set[int] = set()
        self.lock = threading.Lock()

    def task_n(self, long_fraction: float) -> int:
        """A fresh N (so every task's output differs): mostly short, some long."""
        while True:
            if self.rng.random() < long_fraction:
                n = self.rng.randrange(300_000_000, 1_200_000_000)
            else:
                n = self.rng.randrange(10_000, 3_000_000)
            if n not in self._used:
                self._used.add(n)
                return n

    def profile(self) -> dict[str, Any]:
        cores = self.rng.choice((0.25, 0.5, 0.5, 1.0))
        return {"cpu_cores": cores, "memory_mb": self.rng.choice((32, 64, 128))}

    def submit(self, preferred: int, n: int, profile: dict[str, Any]) -> Submission | None:
        """Submit to ``preferred``, or to another submitter while it is down."""
        order = [preferred, *[s for s in self.coop.submitters if s != preferred]]
        for i in order:
            if self.coop.is_down(i):
                continue
            name = self.coop.name(i)
            params = {
                "module": self.module,
                "module_name": SUM.name,
                "fuel": sum_fuel(n),
                "args": [str(n)],
                "profile": profile,
            }
            at = time.time()
            try:
                task = self.coop.rpc(i, "compute.submit", params)["task"]
            except DaemonUnavailable as e:
                # Refused before the request went out: nothing happened. Otherwise unknown.
                sent = "no icnd is listening" not in str(e)
                if sent:
                    with self.lock:
                        self.submissions.append(Submission(name, n, at))
                continue
            s = Submission(name, n, at, task)
            with self.lock:
                self.submissions.append(s)
            return s
        return None

    def run(
        self, count: int, duration_s: float, long_fraction: float, stop: threading.Event
    ) -> None:
        """``count`` tasks at an even pace over ``duration_s``, alternating submitters."""
        t0 = time.monotonic()
        for k in range(count):
            if stop.is_set():
                return
            due = t0 + k * duration_s / max(1, count)
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            n = self.task_n(long_fraction)
            preferred = self.coop.submitters[k % len(self.coop.submitters)]
            for _ in range(100):  # every submitter down: wait for one
                if self.submit(preferred, n, self.profile()) is not None or stop.is_set():
                    break
                time.sleep(0.1)


class WatchRecorder:
    """Polls ``compute.watch`` on every submitter and keeps each task's state changes."""

    def __init__(self, coop: Coop) -> None:
        self.coop = coop
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.gaps = 0
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        after = {i: 0 for i in self.coop.submitters}
        gen = {i: 0 for i in self.coop.submitters}
        while not self.stop.is_set():
            for i in self.coop.submitters:
                if self.coop.generation[i] != gen[i]:  # restarted: its log starts again
                    gen[i], after[i] = self.coop.generation[i], 0
                if self.coop.is_down(i):
                    continue
                try:
                    out = self.coop.rpc(i, "compute.watch", {"after": after[i], "timeout_s": 0.2})
                except (DaemonUnavailable, RpcError):
                    continue
                events = out["events"]
                if events and events[0]["seq"] > after[i] + 1:
                    self.gaps += events[0]["seq"] - after[i] - 1
                for e in events:
                    self.events[e["task"]].append(e)
                after[i] = out["next"]
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)


class FaultDriver:
    """Kills and restarts executors at random (seeded) until told to stop; restarts one
    submitter once at ``submitter_at`` seconds."""

    def __init__(self, coop: Coop, rng: random.Random, submitter_at: float | None) -> None:
        self.coop = coop
        self.rng = rng
        self.submitter_at = submitter_at
        self.stop = threading.Event()
        self.kills = 0
        self.restarts = 0
        self.submitter_restarts: list[str] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        plan, coop = self.coop.plan, self.coop
        t0 = time.monotonic()
        comeback: dict[int, float] = {}
        next_kill = t0 + plan.kill_every * self.rng.uniform(0.5, 1.5)
        submitter_due = None if self.submitter_at is None else t0 + self.submitter_at
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                for i, due in sorted(comeback.items()):
                    if due <= now:
                        del comeback[i]
                        coop.bring_up(i)
                        self.restarts += 1
                if submitter_due is not None and now >= submitter_due:
                    submitter_due = None
                    self._restart_submitter()
                if now >= next_kill and plan.kill_every > 0:
                    up = [i for i in coop.executors if not coop.is_down(i)]
                    if up and len(comeback) < plan.max_down:
                        victim = self.rng.choice(up)
                        coop.kill(victim)
                        self.kills += 1
                        comeback[victim] = time.monotonic() + self.rng.uniform(*plan.down)
                    next_kill = time.monotonic() + plan.kill_every * self.rng.uniform(0.5, 1.5)
                time.sleep(0.05)
        except IcnError as e:
            self.errors.append(str(e))
        for i in comeback:  # nobody stays down
            try:
                coop.bring_up(i)
                self.restarts += 1
            except IcnError as e:
                self.errors.append(str(e))

    def _restart_submitter(self) -> None:
        coop, plan = self.coop, self.coop.plan
        if plan.submitter_signal == "none" or not coop.submitters:
            return
        i = self.rng.choice(coop.submitters)
        if plan.submitter_signal == "term":
            coop.term(i)
        else:
            coop.kill(i)
        coop.bring_up(i)
        self.submitter_restarts.append(f"{coop.name(i)} (SIG{plan.submitter_signal.upper()})")

    def close(self) -> None:
        self.stop.set()
        self._thread.join(60)


# --- phases -------------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if out := probe():
                return out
        except (DaemonUnavailable, RpcError):
            pass
        if time.monotonic() > deadline:
            raise IcnError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_executors(coop: Coop, timeout: float = 30.0) -> None:
    want = len(coop.executors)
    for i in coop.submitters:

        def enough(i: int = i) -> bool:
            return len(coop.rpc(i, "compute.executors")["executors"]) >= want

        wait_for(f"{want} executors announced to {coop.name(i)}", enough, timeout)


def executor_caps(coop: Coop) -> dict[str, Cap]:
    caps = {}
    for i in coop.executors:
        cap = coop.rpc(i, "node.capacity")
        caps[coop.name(i)] = Cap(float(cap["cpu_cores_total"]), int(cap["memory_mb_total"]))
    return caps


def records(coop: Coop) -> dict[str, dict[str, dict[str, Any]]]:
    """Each submitter's task rows (``compute.list``)."""
    out = {}
    for i in coop.submitters:
        rows = coop.rpc(i, "compute.list", {"limit": 10_000}, timeout=60)["tasks"]
        out[coop.name(i)] = {r["task"]: r for r in rows}
    return out


def settle(coop: Coop, timeout: float) -> float:
    """Wait until no submitter holds a task that is not final; the seconds it took."""
    t0 = time.monotonic()

    def quiet() -> bool:
        for i in coop.submitters:
            counts = coop.rpc(i, "compute.list", {"limit": 1})["counts"]
            if any(state not in FINAL for state in counts):
                return False
        return True

    try:
        wait_for("every task final", quiet, timeout, interval=0.5)
    except IcnError:
        pass  # the check reports what is stuck
    return time.monotonic() - t0


def phase_crashes(coop: Coop, plan: Plan, workload: Submitter, rng: random.Random) -> FaultDriver:
    stop = threading.Event()
    faults = FaultDriver(coop, random.Random(rng.random()), submitter_at=plan.submit_s * 0.5)
    faults.start()
    try:
        workload.run(plan.tasks, plan.submit_s, plan.long_fraction, stop)
        time.sleep(min(10.0, plan.submit_s / 4))  # a few more faults while the tail runs
    finally:
        stop.set()
        faults.close()
    return faults


def mesh_whole(coop: Coop) -> bool:
    dids = {n.did for n in coop.cluster.nodes}
    for node in coop.cluster.nodes:
        peers = coop.rpc(node.index, "mesh.peers", timeout=5)["peers"]
        active = {p["did"] for p in peers if p["state"] == "active"}
        if active != dids - {node.did}:
            return False
    return True


def cross_links_gone(coop: Coop, groups: list[set[str]]) -> bool:
    side = {name: k for k, g in enumerate(groups) for name in g}
    by_did = {n.did: n.name for n in coop.cluster.nodes}
    for node in coop.cluster.nodes:
        peers = coop.rpc(node.index, "mesh.peers", timeout=5)["peers"]
        for p in peers:
            if p["state"] == "active" and side[by_did[p["did"]]] != side[node.name]:
                return False
    return True


def phase_partition(coop: Coop, plan: Plan, workload: Submitter, fig: Figures) -> None:
    """One cut per mode the plan names (``both``: blackhole, then reset)."""
    modes = ["blackhole", "reset"] if plan.partition_mode == "both" else [plan.partition_mode]
    for mode in modes:
        cut = Cut(mode, plan.partition_s, heal_limit_s=2 * plan.liveness_s)
        fig.partitions.append(cut)
        partition_once(coop, plan, workload, cut)
        settle(coop, plan.settle_s)


def partition_once(coop: Coop, plan: Plan, workload: Submitter, cut: Cut) -> None:
    """Tasks go in, the even and odd nodes are cut apart for ``plan.partition_s`` while more go
    in, then healed; ``cut`` gets the timings."""
    groups = [
        {coop.name(i) for i in range(plan.nodes) if i % 2 == 0},
        {coop.name(i) for i in range(plan.nodes) if i % 2 == 1},
    ]
    wait_for("the mesh whole before the cut", lambda: mesh_whole(coop), 4 * plan.liveness_s)
    stop = threading.Event()
    before = plan.partition_tasks // 4
    n0 = len(workload.submissions)
    workload.run(before, 4.0, 0.2, stop)  # some long ones, so runs cross the cut
    coop.board.partition(groups, mode=cut.mode)
    coop.log("partition", None, f"{cut.mode}: " + " | ".join(",".join(sorted(g)) for g in groups))
    t_cut = time.monotonic()
    during = threading.Thread(
        target=workload.run,
        args=(plan.partition_tasks - before, plan.partition_s * 0.8, 0.1, stop),
        daemon=True,
    )
    during.start()
    try:
        wait_for(
            "the cross-group links dropped",
            lambda: cross_links_gone(coop, groups),
            plan.partition_s,
            interval=0.5,
        )
        cut.gone_s = time.monotonic() - t_cut
    except IcnError:
        pass  # a cut shorter than the liveness timeout: nothing was noticed
    if (left := plan.partition_s - (time.monotonic() - t_cut)) > 0:
        time.sleep(left)
    during.join()
    coop.board.heal()
    coop.log("heal", None)
    t_heal = time.monotonic()
    try:
        wait_for("the mesh whole after the heal", lambda: mesh_whole(coop), 4 * plan.liveness_s)
        cut.heal_s = time.monotonic() - t_heal
    except IcnError:
        pass  # never: heal_s stays infinite
    cut.tasks = len(workload.submissions) - n0


# --- reading the stores -------------------------------------------------------------------------


@contextmanager
def read_db(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def read_jobs(data_dir: Path) -> list[JobRecord]:
    with read_db(data_dir / "node.db") as db:
        rows = db.execute("SELECT doc FROM jobs").fetchall()
    return [JobRecord.from_dict(cbor2.loads(doc)) for (doc,) in rows]


def read_tasks(data_dir: Path) -> list[TaskRecord]:
    with read_db(data_dir / "node.db") as db:
        rows = db.execute("SELECT doc FROM tasks").fetchall()
    return [TaskRecord.from_dict(cbor2.loads(doc)) for (doc,) in rows]


def integrity(data_dir: Path) -> str:
    with read_db(data_dir / "node.db") as db:
        return ", ".join(str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchall())


def blob_problems(data_dir: Path) -> list[str]:
    """Blob files whose content does not hash to their name."""
    root = data_dir / "blobs"
    out: list[str] = []
    if not root.is_dir():
        return out
    for sub in sorted(root.iterdir()):
        if sub.name == "tmp":
            continue
        for f in sorted(sub.iterdir()):
            h = hashlib.sha256()
            with open(f, "rb") as fin:
                while chunk := fin.read(MB):
                    h.update(chunk)
            if h.hexdigest() != f.name:
                out.append(f"blob {f.name[:16]} hashes to {h.hexdigest()[:16]}")
    return out


# --- phase 3: SIGKILL during SQLite and blob writes ---------------------------------------------


def scratch(data_dir: Path) -> set[Path]:
    """Temporary blob files and run directories: what a crash may leave behind."""
    out: set[Path] = set()
    for folder in (data_dir / "blobs" / "tmp", data_dir / "runs"):
        if folder.is_dir():
            out.update(folder.iterdir())
    return out


def check_stores(
    cluster: LocalCluster, i: int, acked: set[str], blobs: set[str], crash_left: set[Path]
) -> list[str]:
    """After a restart of node ``i``: it answers, ``compute.list`` decodes every record and holds
    every acknowledged task, the database passes ``PRAGMA integrity_check`` and every row decodes,
    every blob hashes to its name (acknowledged puts are there), and nothing of ``crash_left``
    (the temporary files and run directories the killed daemon left) is still there (runs the
    restarted node began since may be). Returns the problems found."""
    node = cluster.nodes[i]
    problems = []
    try:
        listed = cluster.rpc(i, "compute.list", {"limit": 10_000}, timeout=30)
        tasks = {r["task"] for r in listed["tasks"]}
        if missing := acked - tasks:
            problems.append(f"{len(missing)} acknowledged tasks missing after restart")
    except (DaemonUnavailable, RpcError) as e:
        problems.append(f"compute.list failed: {e}")
    if (ok := integrity(node.data_dir)) != "ok":
        problems.append(f"integrity_check: {ok}")
    try:
        read_tasks(node.data_dir)
        read_jobs(node.data_dir)
    except Exception as e:  # any decoding failure is the finding
        problems.append(f"a record does not decode: {e}")
    problems += blob_problems(node.data_dir)
    held = {f.name for sub in (node.data_dir / "blobs").iterdir() for f in sub.iterdir()}
    if missing_blobs := blobs - held:
        problems.append(f"{len(missing_blobs)} acknowledged blobs missing after restart")
    if still := sorted(str(p.relative_to(node.data_dir)) for p in crash_left if p.exists()):
        problems.append(f"left by the crash and still there after the start: {still}")
    return problems


def _largest(folder: Path) -> int:
    """The size of the largest file in ``folder`` (0 when none)."""
    sizes = [0]
    try:
        for f in folder.iterdir():
            try:
                sizes.append(f.stat().st_size)
            except FileNotFoundError:
                continue
    except FileNotFoundError:
        pass
    return max(sizes)


def big_file(path: Path, label: str, size: int) -> str:
    """Write ``size`` bytes distinct per ``label`` (a label header before one repeated random
    MiB) to ``path``; their SHA-256 (the blob's name), in hex."""
    block = random.Random(7).randbytes(MB)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        piece = hashlib.sha256(label.encode()).digest()
        left = size
        while left > 0:
            f.write(piece)
            h.update(piece)
            left -= len(piece)
            piece = block[: min(left, MB)]
    return h.hexdigest()


class StoreCrasher:
    """One node, SIGKILLed again and again during writes and started again, its stores checked
    after each start (phase 3)."""

    def __init__(self, root: Path, plan: Plan, rng: random.Random, fig: Figures) -> None:
        self.plan, self.rng, self.fig = plan, rng, fig
        self.cluster = LocalCluster(root, 1, node_config=self._config, topology="none")
        self.root = root
        self.acked: set[str] = set()
        self.blobs: set[str] = set()
        self.module = base64.b64encode(SUM.read_bytes()).decode()

    @staticmethod
    def _config(i: int, dids: list[str]) -> dict[str, Any]:
        return {
            "compute": dict(COMPUTE),
            "capacity": {"cpu_cores": 2.0, "memory_mb": 512},
            "log": {"level": "warning"},
        }

    def _put_argv(self, path: Path) -> list[str]:
        sock = str(self.cluster.nodes[0].socket)
        return [
            sys.executable,
            "-m",
            "icn_cli",
            "--socket",
            sock,
            "--json",
            "blob",
            "put",
            str(path),
        ]

    def run(self) -> None:
        with self.cluster:
            self.cluster.start_all()
            data = self.root / "big.bin"
            for k in range(self.plan.store_iterations):
                if k % 2 == 0:
                    self.kill_during_submissions(k)
                else:
                    self.kill_during_put(k, data)
                self.fig.store_kills += 1
                left = scratch(self.cluster.nodes[0].data_dir)
                self.fig.store_scratch_left += len(left)
                try:
                    self.cluster.start(0)
                except IcnError as e:
                    self.fig.store_problems.append(f"iteration {k}: the node did not start: {e}")
                    return
                problems = check_stores(self.cluster, 0, self.acked, self.blobs, left)
                self.fig.store_problems += [f"iteration {k}: {p}" for p in problems]
            self.fig.store_acked_tasks = len(self.acked)
            self.fig.store_acked_blobs = len(self.blobs)
            self.fig.tracebacks += tracebacks(self.cluster)

    def kill_during_submissions(self, k: int) -> None:
        """Submissions back to back (the node runs them too: tasks and jobs rows are written),
        and a SIGKILL at a random point of the burst."""
        stop = threading.Event()

        def burst(n: int) -> None:
            while not stop.is_set():
                n += 1
                params = {
                    "module": self.module,
                    "fuel": sum_fuel(n),
                    "args": [str(n)],
                    "profile": {"cpu_cores": 0.5, "memory_mb": 32},
                }
                try:
                    self.acked.add(self.cluster.rpc(0, "compute.submit", params, timeout=5)["task"])
                except (DaemonUnavailable, RpcError):
                    return

        worker = threading.Thread(target=burst, args=(1000 + k * 100_000,), daemon=True)
        worker.start()
        time.sleep(self.rng.uniform(0.05, 1.5))
        self.cluster.kill(0)
        self.fig.store_sqlite_kills += 1
        stop.set()
        worker.join(10)

    def kill_during_put(self, k: int, data: Path) -> None:
        """``icnctl blob put`` of a new large file, and a SIGKILL at a random point of it."""
        size = self.plan.store_blob_mb * MB
        blob = big_file(data, f"put {k}", size)
        blobs = self.cluster.nodes[0].data_dir / "blobs"
        tmp = blobs / "tmp"
        # The kill lands when the daemon's temporary file has reached a random size (a quarter
        # of the time: the whole size, i.e. during the fsync, the rename or the answer).
        target = size if self.rng.random() < 0.25 else self.rng.randrange(1, size)
        late = self.rng.uniform(0.0, 0.05)
        put = subprocess.Popen(self._put_argv(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while put.poll() is None and time.monotonic() < deadline:
            if _largest(tmp) >= target:
                time.sleep(late if target == size else 0.0)
                break
            time.sleep(0.002)
        self.cluster.kill(0)
        self.fig.store_blob_kills += 1
        out, _ = put.communicate(timeout=30)
        if put.returncode == 0:
            self.blobs.add(json.loads(out)["blob"])
            when = "after the answer"
        elif tmp.is_dir() and any(tmp.iterdir()):
            when = "mid-write"  # the partial file must be gone after the start
        elif (blobs / blob[:2] / blob).exists():
            when = "stored, before the answer"
        else:
            when = "before the daemon wrote"
        self.fig.store_put_kills[when] += 1


# --- the run ------------------------------------------------------------------------------------


def tracebacks(cluster: LocalCluster) -> list[str]:
    out: list[str] = []
    for node in cluster.nodes:
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        if "Traceback" in text:
            out.append(f"{node.name}: {node.log_path}")
    return out


@dataclass
class Outcome:
    plan: Plan
    report: Report
    figures: Figures
    faults: list[Fault]
    root: Path

    @property
    def ok(self) -> bool:
        f = self.figures
        return self.report.ok and f.heal_ok and not (f.store_problems or f.tracebacks or f.errors)


def run(plan: Plan, root: Path, log: Callable[[str], None] = print) -> Outcome:
    """Every phase the plan asks for (a phase with nothing to do is skipped)."""
    rng = random.Random(plan.seed)
    fig = Figures()
    t_start = time.monotonic()
    report, faults = Report(), []
    if plan.tasks > 0 or plan.partition_s > 0:
        coop = Coop(root / "coop", plan)
        try:
            report = coop_phases(coop, plan, rng, fig, log)
        finally:
            coop.close()
        faults = coop.faults
    if plan.store_iterations > 0:
        t = time.monotonic()
        log(f"phase 3: {plan.store_iterations} SIGKILLs during SQLite and blob writes")
        StoreCrasher(root / "store", plan, rng, fig).run()
        fig.phase_s["store crashes"] = time.monotonic() - t
    fig.wall_s = time.monotonic() - t_start
    return Outcome(plan, report, fig, faults, root)


def coop_phases(
    coop: Coop, plan: Plan, rng: random.Random, fig: Figures, log: Callable[[str], None]
) -> Report:
    """Phases 1 and 2 on one cooperative, then the history check of every task they placed."""
    log(f"starting {plan.nodes} icnd processes under {coop.cluster.root}")
    coop.start()
    wait_executors(coop)
    caps = executor_caps(coop)
    workload = Submitter(coop, random.Random(rng.random()))
    watch = WatchRecorder(coop)
    watch.start()
    try:
        if plan.tasks > 0:
            t = time.monotonic()
            log(f"phase 1: {plan.tasks} tasks, executor kills every ~{plan.kill_every:g} s")
            faults = phase_crashes(coop, plan, workload, rng)
            fig.kills, fig.restarts = faults.kills, faults.restarts
            fig.submitter_restarts = faults.submitter_restarts
            fig.errors += [f"fault driver: {e}" for e in faults.errors]
            settled = settle(coop, plan.settle_s)
            fig.phase_s["crashes"] = time.monotonic() - t
            log(f"phase 1 done in {fig.phase_s['crashes']:.0f} s (settled in {settled:.0f} s)")
        if plan.partition_s > 0:
            t = time.monotonic()
            log(f"phase 2: partition ({plan.partition_mode}) for {plan.partition_s:g} s")
            phase_partition(coop, plan, workload, fig)
            fig.phase_s["partition"] = time.monotonic() - t
            log(f"phase 2 done in {fig.phase_s['partition']:.0f} s")
    except IcnError as e:  # a node that would not start, a mesh that never formed: reported
        fig.errors.append(str(e))
        coop.board.heal()
    finally:
        watch.close()
    rows = records(coop)
    for i in coop.executors:  # an executor's rows are read once it has stopped
        coop.cluster.stop(i)
        coop.log("stop", i, "end of run")
    for i in coop.submitters:
        coop.cluster.stop(i)
    jobs = {coop.name(i): read_jobs(coop.cluster.nodes[i].data_dir) for i in coop.executors}
    report = check(
        workload.submissions,
        _args_of(coop, rows),
        watch.events,
        jobs,
        caps,
        coop.deaths(),
        {n.did: n.name for n in coop.cluster.nodes},
        expected_stdout,
    )
    report.watch_gaps = watch.gaps
    fig.tracebacks += tracebacks(coop.cluster)
    return report


def _args_of(
    coop: Coop, rows: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """The rows with each task's N and the executors it claimed (from the submitter's stored
    record, read once it has stopped) added as ``n`` and ``claimed``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for i in coop.submitters:
        name = coop.name(i)
        stored = {r.task_hash.hex(): r for r in read_tasks(coop.cluster.nodes[i].data_dir)}
        out[name] = {}
        for task, row in rows[name].items():
            rec = stored.get(task)
            n = int(rec.spec.args[0]) if rec is not None and rec.spec.args else None
            claimed = list(rec.claimed) if rec is not None else []
            out[name][task] = {**row, "n": n, "claimed": claimed}
    return out


# --- the table ----------------------------------------------------------------------------------


def table(o: Outcome) -> str:
    r, f, p = o.report, o.figures, o.plan
    failed = ", ".join(f"{k}: {v}" for k, v in sorted(r.failed_reasons.items())) or "-"
    rows: list[tuple[str, str]] = [
        ("nodes", f"{p.nodes} ({p.submitters} submitting only, {p.nodes - p.submitters} "
                  f"executors capped at {p.executor_cores:g} cores / {p.executor_memory_mb} MB)"),
        ("faults: executor SIGKILLs", str(f.kills)),
        ("faults: executor restarts", str(f.restarts)),
        ("faults: submitter restarts", ", ".join(f.submitter_restarts) or "0"),
        ("faults: partitions", ", ".join(f"{c.seconds:g} s {c.mode}" for c in f.partitions)
            or "0"),
        ("tasks submitted (acknowledged)", str(r.tasks)),
        ("submissions without an answer", f"{r.indeterminate} ({r.indeterminate_found} recorded)"),
        ("completed", str(r.states.get("completed", 0))),
        ("ended otherwise (by reason)", failed),
        ("claimed from more than one executor", str(r.replaced)),
        ("lost", str(len(r.lost))),
        ("left non-final", str(len(r.stuck))),
        ("completed twice", str(len(r.completed_twice))),
        ("wrong results", str(len(r.wrong_results))),
        ("duplicate runs (re-placed)", f"{r.duplicate_runs} ({len(r.unexplained_duplicates)} "
                                       "unexplained)"),
        ("capacity violations", f"{len(r.capacity_violations)} (peak cores: "
            + ", ".join(f"{k} {v:g}" for k, v in sorted(r.peak_cores.items())) + ")"),
        ("executor jobs (by state)", ", ".join(
            f"{k}: {v}" for k, v in sorted(r.job_states.items()))),
        ("state changes watched", f"{r.watch_events} ({r.watch_gaps} missed by the poller)"),
    ]  # fmt: skip
    if not (p.tasks or p.partition_s):
        rows = []
    for c in f.partitions:
        gone = "-" if c.gone_s is None else f"{c.gone_s:.1f} s"
        heal = "never" if c.heal_s == math.inf else f"{c.heal_s:.1f} s"
        rows += [
            (f"partition ({c.mode}): cross links gone after", gone),
            (
                f"partition ({c.mode}): mesh whole after heal",
                f"{heal} (limit {c.heal_limit_s:g} s)",
            ),
            (f"partition ({c.mode}): tasks submitted around it", str(c.tasks)),
        ]
    if f.store_kills:
        rows += [
            ("store: SIGKILLs (SQLite / blob put)", f"{f.store_kills} ({f.store_sqlite_kills} / "
                                                    f"{f.store_blob_kills})"),
            ("store: acknowledged tasks / blobs", f"{f.store_acked_tasks} / {f.store_acked_blobs}"),
            ("store: put kills landed", ", ".join(
                f"{k}: {v}" for k, v in sorted(f.store_put_kills.items()))),
            ("store: scratch left by kills (cleared at start)", str(f.store_scratch_left)),
            ("store: inconsistencies", str(len(f.store_problems))),
        ]  # fmt: skip
    rows += [
        ("daemon tracebacks", str(len(f.tracebacks))),
        ("wall time", f"{f.wall_s:.0f} s (" + ", ".join(
            f"{k} {v:.0f} s" for k, v in f.phase_s.items()) + ")"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def details(o: Outcome) -> str:
    out = []
    f = o.figures
    more = [("store", f.store_problems), ("tracebacks", f.tracebacks), ("errors", f.errors)]
    for kind, items in [*o.report.violations.items(), *more]:
        if items:
            out.append(f"{kind}: {len(items)}")
            out += [f"  {x}" for x in items[:10]]
    for c in f.partitions:
        if c.heal_s > c.heal_limit_s:
            out.append(f"{c.mode} cut: mesh not whole within {c.heal_limit_s:g} s of the heal")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m icn_dev.chaos", description=__doc__.split("\n")[0])
    for f in fields(Plan):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, tuple):
            ap.add_argument(flag, type=float, nargs=2, default=f.default)
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default)
    ap.add_argument("--root", type=Path, help="keep the run's files here (default: a temp dir)")
    ns = ap.parse_args(argv)
    values = {f.name: getattr(ns, f.name) for f in fields(Plan)}
    values["down"] = tuple(values["down"])
    if values["submitter_signal"] not in ("kill", "term", "none"):
        ap.error("--submitter-signal: expected kill, term or none")
    if values["partition_mode"] not in ("blackhole", "reset", "both"):
        ap.error("--partition-mode: expected blackhole, reset or both")
    return Plan(**values), ns


def main(argv: list[str] | None = None) -> int:
    plan, ns = parse_args(argv)
    root = ns.root or Path(tempfile.mkdtemp(prefix="icn-chaos-"))
    keep = ns.root is not None
    try:
        outcome = run(plan, root, log=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
        return 130
    print()
    print(table(outcome))
    print()
    print("command:", shlex.join(plan.argv()))
    if not outcome.ok:
        print()
        print(details(outcome))
        with open(root / "faults.jsonl", "w") as f:
            for fault in outcome.faults:
                f.write(json.dumps(vars(fault)) + "\n")
        print(f"files kept in {root} (node logs, databases, faults.jsonl: what was done when)")
        return 1
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
