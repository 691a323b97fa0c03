"""Compute on real icnd processes (issue 5): placement by negotiation and the legacy protocol,
capacity, fuel, cancel, blobs in and out, bad input, and the failures that matter: an executor
killed mid-run, a submitter restarted mid-flight.

Every wait is a poll with a deadline. Timers are shortened through config (announcements every
second, heartbeats twice a second, leases of a couple of seconds) so failures show in seconds.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from icn_dev.cluster import LocalCluster
from icn_node.scheduler import AvoidDid

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUM = EXAMPLES / "sum.wat"
WORDCOUNT = EXAMPLES / "wordcount.wat"
INFINITE = EXAMPLES / "infinite.wat"
FINAL = {"completed", "failed", "fuel_exhausted", "timed_out", "cancelled"}

SEED_TRUST = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.8, "e": 0.2}

# Fast timers for every node: failures are detected in seconds, not the production 20 s.
FAST = {
    "announce_interval_s": 1.0,
    "heartbeat_interval_s": 0.5,
    "lease_timeout_s": 2.5,
    "claim_timeout_s": 2.0,
    "result_resend_s": 0.5,
}


# --- helpers --------------------------------------------------------------------------------


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def wait_executors(cluster: LocalCluster, i: int, n: int, timeout: float = 15.0) -> list[str]:
    """Wait until node ``i`` knows ``n`` live executors (announcements reached it)."""

    def probe():
        live = cluster.rpc(i, "compute.executors")["executors"]
        return [e["did"] for e in live] if len(live) >= n else None

    return wait_until(f"{n} executors announced to node{i}", probe, timeout)


def submit(
    cluster: LocalCluster,
    i: int,
    module: Path,
    fuel: int,
    args: tuple[str, ...] = (),
    profile: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    """``compute.submit`` on node ``i`` with params built as ``icnctl compute submit`` does."""
    params = {
        "module": base64.b64encode(module.read_bytes()).decode(),
        "module_name": module.name,
        "fuel": fuel,
        "args": list(args),
        "inputs": [],
        "profile": profile,
        "hints": [],
        "max_cost": None,
        "timeout_s": None,
        **extra,
    }
    return cluster.rpc(i, "compute.submit", params)["task"]


def status(cluster: LocalCluster, i: int, task: str) -> dict[str, Any]:
    return cluster.rpc(i, "compute.status", {"task": task})


def wait_final(cluster: LocalCluster, i: int, task: str, timeout: float = 20.0) -> dict[str, Any]:
    def probe():
        st = status(cluster, i, task)
        return st if st["state"] in FINAL else None

    return wait_until(f"task {task[:12]} final on node{i}", probe, timeout)


def expected_sum(n: int) -> str:
    return f"{n * (n + 1) // 2 % 2**64}\n"


def sum_fuel(n: int) -> int:
    return 13 * n + 10_000  # sum.wat burns 13 fuel per iteration plus ~700 to start


def icnctl_json(cluster: LocalCluster, i: int, *args: str) -> Any:
    r = cluster.icnctl(i, "--json", *args)
    assert r.returncode == 0, f"icnctl {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


def cluster_config(executor_cpu: float | None = None, submitter: int | None = 0, **compute):
    """Per-node config: FAST timers; node ``submitter`` (if any) submits only; executors capped
    at ``executor_cpu`` cores (if given)."""

    def config(i: int, dids: list[str]) -> dict[str, Any]:
        c: dict[str, Any] = {"compute": {**FAST, **compute}}
        if i == submitter:
            c["compute"]["executor"] = False
        elif executor_cpu is not None:
            c["capacity"] = {"cpu_cores": executor_cpu}
        return c

    return config


def metrics(cluster: LocalCluster, i: int) -> dict[str, float]:
    """Node ``i``'s unlabelled Prometheus samples."""
    addr = cluster.rpc(i, "node.status")["listen"]["metrics"]
    body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("#") or "{" in line or " " not in line:
            continue
        name, _, value = line.partition(" ")
        out[name] = float(value)
    return out


def check_logs_clean(cluster: LocalCluster) -> None:
    """No node logged an unexpected crash of a task group."""
    for node in cluster.nodes:
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        assert "Traceback" not in text, f"{node.name} logged a traceback:\n{text[-3000:]}"


# --- the seed's scenario --------------------------------------------------------------------


def test_seed_five_executors_four_offers_e_excluded_winner_a_or_d(short_tmp):
    """A submitter and executors a-e. The submitter trusts them 0.9/0.7/0.5/0.8/0.2 and each
    trusts the submitter at its own figure, so e (0.2 < min_trust 0.3) declines: four offers
    arrive, e is not among them, and the most trusted offerers (a or d) win."""
    letters = list(SEED_TRUST)

    def config(i: int, dids: list[str]) -> dict[str, Any]:
        c: dict[str, Any] = {"compute": dict(FAST)}
        if i == 0:
            c["compute"]["executor"] = False
            c["trust"] = {"peers": {dids[k + 1]: SEED_TRUST[x] for k, x in enumerate(letters)}}
        else:
            c["trust"] = {"peers": {dids[0]: SEED_TRUST[letters[i - 1]]}}
        return c

    with LocalCluster(short_tmp, 6, node_config=config, topology="star") as cluster:
        cluster.start_all()
        did = {x: cluster.nodes[k + 1].did for k, x in enumerate(letters)}
        wait_executors(cluster, 0, 5)

        out = icnctl_json(
            cluster, 0, "compute", "submit", str(SUM), "--arg", "1000", "--cpu", "1",
            "--memory", "256",
        )  # fmt: skip
        assert out["protocol"] == "placement"
        wait_final(cluster, 0, out["task"])
        st = icnctl_json(cluster, 0, "compute", "status", out["task"])

        assert st["state"] == "completed", st
        offerers = {o["executor"] for o in st["offers"]}
        assert offerers == {did["a"], did["b"], did["c"], did["d"]}, st["offers"]
        assert did["e"] not in offerers
        assert st["executor"] in (did["a"], did["d"]), st
        assert st["result"]["executor"] == st["executor"]
        assert st["result"]["stdout"] == "500500\n"
        assert st["attempt"] == 1

        # e is below the submitter's min_trust, so the submitter does not even ask it (requests
        # go straight to the executors it expects); e offers nothing. The executors asked all
        # received the request.
        e_metrics = metrics(cluster, 5)
        assert e_metrics.get("icn_compute_placement_requests_received_total", 0) == 0
        assert e_metrics.get("icn_compute_placement_offers_sent_total", 0) == 0
        for k in range(1, 5):
            assert metrics(cluster, k)["icn_compute_placement_requests_received_total"] == 1
        check_logs_clean(cluster)


# --- many tasks, capacity -------------------------------------------------------------------


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end at t closes before a start at t)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, step in points:
        cur += step
        best = max(best, cur)
    return best


def test_fifty_tasks_on_five_nodes_complete_within_capacity(short_tmp):
    """Five executors capped at 2 cores; 50 one-core tasks from two of them. Every task ends
    completed with its own sum, and no executor ever ran more than two at once (the runs'
    start/finish times, per executor, never overlap more than twice)."""
    cap = 2
    with LocalCluster(
        short_tmp, 5, node_config=cluster_config(executor_cpu=cap, submitter=None)
    ) as cluster:
        cluster.start_all()
        for i in (0, 1):
            wait_executors(cluster, i, 5)

        tasks: dict[str, tuple[int, int]] = {}
        for k in range(50):
            n = 20_000_000 + k * 1_000_003
            i = k % 2
            task = submit(cluster, i, SUM, sum_fuel(n), (str(n),), {"cpu_cores": 1.0})
            tasks[task] = (i, n)

        def all_final():
            rows = {}
            for i in (0, 1):
                for r in cluster.rpc(i, "compute.list", {"limit": 100})["tasks"]:
                    rows[r["task"]] = r
            done = [t for t in tasks if rows.get(t, {}).get("state") in FINAL]
            return rows if len(done) == len(tasks) else None

        rows = wait_until("50 tasks final", all_final, timeout=45, interval=0.5)

        runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for task, (_i, n) in tasks.items():
            st = rows[task]
            assert st["state"] == "completed", (st["reason"], st)
            res = st["result"]
            assert res["stdout"] == expected_sum(n), (n, res)
            assert res["executor"] == st["executor"]
            runs[res["executor"]].append((res["started_at"], res["finished_at"]))
        assert sum(len(v) for v in runs.values()) == 50
        for ex, intervals in runs.items():
            assert max_overlap(intervals) <= cap, (ex, sorted(intervals))
        assert len(runs) >= 3, f"50 tasks landed on only {len(runs)} executors"
        check_logs_clean(cluster)


# --- the small cluster: one submitter, two executors ----------------------------------------


@pytest.fixture(scope="class")
def small():
    """A submitter (node0, executor = false) and two executors of one core each."""
    root = Path(tempfile.mkdtemp(prefix="icn-"))
    try:
        with LocalCluster(
            root, 3, node_config=cluster_config(executor_cpu=1.0), topology="star"
        ) as cluster:
            cluster.start_all()
            wait_executors(cluster, 0, 2)
            yield cluster
            check_logs_clean(cluster)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class TestSmallCluster:
    def test_legacy_task_without_a_profile(self, small):
        out = icnctl_json(small, 0, "compute", "submit", str(SUM), "--arg", "1000")
        assert out["protocol"] == "legacy"
        st = wait_final(small, 0, out["task"])
        assert st["state"] == "completed", st
        assert st["protocol"] == "legacy"
        assert st["result"]["stdout"] == "500500\n"
        assert st["result"]["fuel_used"] == 13_297
        assert st["executor"] in {small.nodes[1].did, small.nodes[2].did}

    def test_infinite_loop_ends_fuel_exhausted(self, small):
        r = small.icnctl(
            0, "--json", "compute", "submit", str(INFINITE), "--fuel", "5000000", "--cpu", "1",
            "--wait",
        )  # fmt: skip
        assert r.returncode == 1, r.stderr  # --wait exits 1 when the task did not complete
        out = json.loads(r.stdout)
        assert out["status"]["state"] == "fuel_exhausted", out
        assert out["result"]["state"] == "fuel_exhausted"
        assert out["result"]["fuel_used"] >= 5_000_000 - 1000

    def test_input_blob_and_output_files(self, small, tmp_path):
        text = tmp_path / "poem.txt"
        text.write_text("the quick brown fox\njumps over\nthe lazy dog\n")
        r = small.icnctl(
            0, "--json", "compute", "submit", str(WORDCOUNT), "--input", f"poem={text}",
            "--arg", "poem", "--arg", "counts.txt", "--cpu", "1", "--wait",
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["result"]["stdout"] == "3 9 44\n"
        assert [o["name"] for o in out["result"]["outputs"]] == ["counts.txt"]
        # The output blob lives on the executor; the submitter fetches it through the mesh.
        dest = tmp_path / "out"
        res = icnctl_json(
            small, 0, "compute", "result", out["status"]["task"], "--output", str(dest)
        )
        assert res["state"] == "completed"
        assert (dest / "counts.txt").read_text() == "3 9 44\n"

    def test_cancel_running_infinite_loop_frees_capacity(self, small):
        out = icnctl_json(
            small, 0, "compute", "submit", str(INFINITE), "--fuel", str(10**15), "--cpu", "1"
        )
        task = out["task"]
        st = wait_until(
            "the infinite loop running",
            lambda: (s := status(small, 0, task))["state"] == "running" and s,
            timeout=10,
        )
        node = next(n.index for n in small.nodes if n.did == st["executor"])

        def own_cpu_free() -> float:
            mine = [
                e
                for e in small.rpc(node, "compute.executors")["executors"]
                if e["did"] == st["executor"]
            ]
            return mine[0]["capacity"]["cpu_cores_available"]

        # Its one core is held and the sandbox runs (the announcement and gauge may lag a bit).
        wait_until("the executor's core taken", lambda: own_cpu_free() == 0.0, timeout=5)
        wait_until(
            "the sandbox running",
            lambda: metrics(small, node)["icn_compute_runs_active"] == 1,
            timeout=5,
        )

        r = icnctl_json(small, 0, "compute", "cancel", task)
        assert r["task"] == task
        st = wait_final(small, 0, task, timeout=10)
        assert st["state"] == "cancelled", st
        wait_until("the executor's core freed", lambda: own_cpu_free() == 1.0, timeout=5)
        assert metrics(small, node)["icn_compute_runs_active"] == 0

        # The freed core takes a new one-core task, kept off the other executor.
        other = next(n.did for n in small.nodes[1:] if n.index != node)
        again = submit(
            small, 0, SUM, sum_fuel(100), ("100",), {"cpu_cores": 1.0},
            hints=[AvoidDid(other).to_dict(json_safe=True)],
        )  # fmt: skip
        st = wait_final(small, 0, again)
        assert st["state"] == "completed", st
        assert st["executor"] == small.nodes[node].did

    def test_module_that_does_not_compile_fails_with_a_message(self, small, tmp_path):
        wat = tmp_path / "bad.wat"
        wat.write_text('(module (func (export "_start") (i32.frobnicate)))\n')
        wasm = tmp_path / "bad.wasm"
        wasm.write_bytes(b"\0asm\x01\0\0\0\x01\xff\xff")  # a truncated type section
        for module, problem in ((wat, "not valid WAT"), (wasm, "does not compile")):
            out = icnctl_json(small, 0, "compute", "submit", str(module), "--cpu", "1")
            st = wait_final(small, 0, out["task"])
            assert st["state"] == "failed", st
            assert st["result"]["state"] == "failed"
            assert problem in st["result"]["message"], st["result"]

    def test_a_task_nobody_could_fit_fails_at_once_saying_why(self, small):
        t0 = time.monotonic()
        for args, why in (
            (("--cpu", "64"), "no executor is large enough (asked 64 cores)"),
            (("--profile", "gpu"), "no executor has a GPU"),
        ):
            out = icnctl_json(small, 0, "compute", "submit", str(SUM), *args)
            st = wait_final(small, 0, out["task"], timeout=5)
            assert st["state"] == "failed" and why in st["reason"], st
            assert "largest of 2 live: 1 cores" in st["reason"], st
        assert time.monotonic() - t0 < 5.0  # not four rounds and 11-12 s each
        # --wait-for-capacity keeps it pending with the reason instead
        out = icnctl_json(
            small, 0, "compute", "submit", str(SUM), "--cpu", "64", "--wait-for-capacity"
        )
        st = wait_until(
            "the task pending for capacity",
            lambda: (s := status(small, 0, out["task"]))["state"] == "pending" and s,
            10,
        )
        assert st["reason"].startswith("waiting for capacity: no executor is large enough")
        small.icnctl(0, "compute", "cancel", out["task"])

    def test_executors_lists_trust_and_effective_trust(self, small):
        out = icnctl_json(small, 0, "compute", "executors")
        rows = {r["did"]: r for r in out["executors"]}
        assert set(rows) == {small.nodes[1].did, small.nodes[2].did}
        for r in rows.values():
            assert r["trust"] == 0.5 and r["effective_trust"] == 0.5
        text = small.icnctl(0, "compute", "executors").stdout
        assert "EFFECTIVE" in text and text.count("1/1") + text.count("0/1") == 2, text

    def test_negative_cpu_is_a_usage_error(self, small):
        r = small.icnctl(0, "compute", "submit", str(SUM), "--cpu", "-1")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "cpu" in r.stderr.lower()
        assert small.rpc(0, "compute.list", {"state": "negotiating"})["tasks"] == []


# --- failures -------------------------------------------------------------------------------


def test_kill_9_of_the_executor_running_a_task_completes_it_elsewhere(short_tmp):
    """A task that runs a few seconds; its executor is SIGKILLed mid-run. The submitter's lease
    lapses (no heartbeats), the task is placed again and completes on another executor."""
    n = 2_500_000_000  # about 2.5 s of wasm here
    with LocalCluster(
        short_tmp, 4, node_config=cluster_config(executor_cpu=1.0), topology="star"
    ) as cluster:
        cluster.start_all()
        wait_executors(cluster, 0, 3)
        task = submit(cluster, 0, SUM, sum_fuel(n), (str(n),), {"cpu_cores": 1.0})
        st = wait_until(
            "the task running",
            lambda: (s := status(cluster, 0, task))["state"] == "running" and s,
            timeout=10,
        )
        first = st["executor"]
        victim = next(node.index for node in cluster.nodes if node.did == first)
        t_kill = time.monotonic()
        cluster.kill(victim)

        st = wait_final(cluster, 0, task, timeout=30)
        assert st["state"] == "completed", st
        assert st["attempt"] >= 2
        assert st["executor"] != first
        assert st["result"]["executor"] == st["executor"]
        assert st["result"]["stdout"] == expected_sum(n)
        assert time.monotonic() - t_kill < 25


def test_submitter_restart_mid_flight_loses_no_task(short_tmp):
    """Tasks submitted, then the submitter is stopped at once and started again: every task
    still reaches a final state, completed with its own result. Each task has its own module,
    so the executors fetch code blobs from the submitter while it goes down and comes back."""
    with LocalCluster(
        short_tmp, 3, node_config=cluster_config(executor_cpu=2.0), topology="star"
    ) as cluster:
        cluster.start_all()
        wait_executors(cluster, 0, 2)
        wat = SUM.read_text()
        tasks = {}
        for k in range(6):
            module = short_tmp / f"sum{k}.wat"
            module.write_text(f"{wat}\n;; task {k}\n")  # a distinct code blob per task
            n = 300_000_000 + k
            profile = {"cpu_cores": 1.0} if k % 3 else None  # some legacy ones too
            tasks[submit(cluster, 0, module, sum_fuel(n), (str(n),), profile)] = n
        assert cluster.stop(0) == 0
        cluster.start(0)

        for task, n in tasks.items():
            st = wait_final(cluster, 0, task, timeout=30)
            assert st["state"] == "completed", (st["reason"], st)
            assert st["result"]["stdout"] == expected_sum(n)
        listed = cluster.rpc(0, "compute.list", {"limit": 100})
        assert {r["task"] for r in listed["tasks"]} == set(tasks)
        check_logs_clean(cluster)
