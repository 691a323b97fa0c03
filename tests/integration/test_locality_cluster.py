"""Compute goes to data, on real icnd processes (issue 9; the seed's three locality tests).

One submitter (node0) and three executors alike in trust and capacity. Every executor reaches
node0 through a :class:`DelayProxy`, and peers dial it through another, so the links have real
round-trip times the mesh measures: node1 ≈ 5 ms, node2 ≈ 50 ms, node3 ≈ 100 ms. Regions:
node1 and node3 ``eu``, node2 ``us``. Data is given as task inputs (``--input``), never as a
hint: the placement request carries a task's inputs with their sizes.

- local data wins: the executor holding a task's input runs it, every time;
- lowest RTT wins under ``--max-rtt`` when no executor holds data;
- data beats network: the holder 100 ms away wins over an executor 5 ms away;
- ``--require-region`` never places outside the region.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from icn_dev.cluster import LocalCluster
from tests.integration.delay_proxy import DelayProxy
from tests.integration.test_compute_cluster import (
    FAST,
    SUM,
    check_logs_clean,
    metrics,
    wait_executors,
    wait_final,
    wait_until,
)

pytestmark = pytest.mark.integration

DELAYS = {1: 0.0025, 2: 0.025, 3: 0.05}  # one way; RTT twice that
REGIONS = {0: "eu", 1: "eu", 2: "us", 3: "eu"}


def node_config(i: int, dids: list[str]) -> dict[str, Any]:
    compute: dict[str, Any] = {**FAST}
    if i == 0:
        compute["executor"] = False
    return {
        "node": {"region": REGIONS[i]},
        "compute": compute,
        # Keepalives every second (a third of liveness): RTTs are measured within seconds.
        "mesh": {"liveness_timeout_s": 3.0},
        "trust": {"default": 0.9},
    }


@pytest.fixture(scope="module")
def coop():
    root = Path(tempfile.mkdtemp(prefix="icn-loc-"))
    proxies: list[DelayProxy] = []
    try:
        with LocalCluster(root, 4, node_config=node_config, topology="none") as cluster:
            for i, delay in DELAYS.items():
                to_submitter = DelayProxy(cluster.nodes[0].mesh_port, delay)
                to_me = DelayProxy(cluster.nodes[i].mesh_port, delay)
                proxies += [to_submitter, to_me]
                cluster.rewrite_config(
                    i, {"mesh": {"bootstrap": [to_submitter.address], "advertise": to_me.address}}
                )
            cluster.start_all()
            wait_executors(cluster, 0, 3)
            wait_rtts(cluster)
            yield cluster
            check_logs_clean(cluster)
    finally:
        for p in proxies:
            p.close()
        shutil.rmtree(root, ignore_errors=True)


def wait_rtts(cluster: LocalCluster) -> dict[str, float]:
    """Until node0 has measured every executor's link, in the order of their delays."""
    dids = {cluster.nodes[i].did: i for i in DELAYS}

    def probe() -> dict[int, float] | None:
        rtts = {
            dids[p["did"]]: p["rtt_ms"]
            for p in cluster.rpc(0, "mesh.peers")["peers"]
            if p["did"] in dids and p["rtt_ms"] is not None
        }
        if len(rtts) < 3 or not rtts[1] < 20 < rtts[2] < rtts[3]:
            return None
        return rtts

    return wait_until("node0 measuring the three links' RTTs", probe, timeout=30)


def put_blob(cluster: LocalCluster, i: int, tmp: Path, label: str, size: int) -> str:
    path = tmp / label
    path.write_bytes((label.encode() * (size // len(label) + 1))[:size])
    r = cluster.icnctl(i, "--json", "blob", "put", str(path))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["blob"]


def module(tmp: Path, label: str) -> Path:
    """``sum.wat`` with a comment naming the test: a module no executor holds yet (a module is
    the task's data too, and an executor that fetched it once holds it)."""
    path = tmp / f"{label}.wat"
    path.write_text(SUM.read_text() + f"\n;; {label}\n")
    return path


def submit(cluster: LocalCluster, code: Path, *args: str) -> str:
    """``icnctl compute submit`` on node0, retried while node0 has not heard of an input yet
    (announcements are batched: a fresh blob is known within a second)."""
    argv = ["--json", "compute", "submit", str(code), "--arg", "100", "--cpu", "0.1", *args]

    def probe() -> str | None:
        r = cluster.icnctl(0, *argv)
        if r.returncode == 0:
            return json.loads(r.stdout)["task"]
        assert "no node is known to hold blob" in r.stderr, r.stderr
        return None

    return wait_until("node0 to accept the task", probe, timeout=10, interval=0.2)


def winner(cluster: LocalCluster, task: str) -> int:
    st = wait_final(cluster, 0, task)
    assert st["state"] == "completed", st
    return next(n.index for n in cluster.nodes if n.did == st["executor"])


def test_local_data_wins(coop, tmp_path):
    data = put_blob(coop, 2, tmp_path, "dataset-a", 300_000)
    code = module(tmp_path, "local-data-wins")
    before = metrics(coop, 0)
    placed = [winner(coop, submit(coop, code, "--input", f"data={data}")) for _ in range(3)]
    assert placed == [2, 2, 2]
    after = metrics(coop, 0)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta("icn_compute_placement_with_data_total") == 3
    # Only the first placement moved anything: the module (from node0); node2 then held it
    # (fetched blobs are announced), and the 300 kB input never moved.
    assert delta("icn_compute_placement_data_transfer_needed_bytes_total") == code.stat().st_size
    assert delta("icn_compute_placement_data_local_total") == 2


def test_lowest_rtt_wins_when_no_one_holds_data(coop, tmp_path):
    # --max-rtt 20: node1 (5 ms; up to 10 ms through the delay proxy on a loaded machine)
    # scores 0.75-0.875 on network, node2 and node3 (50 and 100 ms) 0; that 0.071-0.083 of
    # score is more than the 0.048 jitter can swing (with --max-rtt 10 a loaded machine's
    # 8 ms left 0.058: too close). Each task has a module of its own, held by node0 alone: no
    # executor has data the others lack.
    placed = [
        winner(coop, submit(coop, module(tmp_path, f"rtt-{k}"), "--max-rtt", "20"))
        for k in range(3)
    ]
    assert placed == [1, 1, 1]


def test_data_beats_network_when_both_apply(coop, tmp_path):
    data = put_blob(coop, 3, tmp_path, "dataset-b", 300_000)
    code = module(tmp_path, "data-beats-network")
    placed = [
        winner(coop, submit(coop, code, "--input", f"data={data}", "--max-rtt", "10"))
        for _ in range(3)
    ]
    assert placed == [3, 3, 3]  # 100 ms away, but it holds the input


def test_require_region_never_places_outside_it(coop, tmp_path):
    # The input lives in eu (node1), yet the task must run in us: node2 fetches it.
    data = put_blob(coop, 1, tmp_path, "dataset-c", 200_000)
    code = module(tmp_path, "require-region")
    placed = [
        winner(coop, submit(coop, code, "--input", f"data={data}", "--require-region", "us"))
        for _ in range(4)
    ]
    assert placed == [2, 2, 2, 2]
    t0 = time.monotonic()
    task = submit(coop, code, "--require-region", "asia")
    st = wait_final(coop, 0, task, timeout=40)
    assert st["state"] == "failed" and st["executor"] is None, st
    # compute status says why each executor declined the last round
    assert {d["executor"] for d in st["declines"]} == {n.did for n in coop.nodes[1:]}, st
    assert all("region" in d["why"] for d in st["declines"]), st["declines"]
    text = coop.icnctl(0, "compute", "status", task).stdout
    assert text.count("declined ") == 3, text
    assert time.monotonic() - t0 < 40
