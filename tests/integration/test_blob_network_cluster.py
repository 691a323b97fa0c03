"""Blobs across real icnd processes on 127.0.0.1, driven with ``icnctl``.

Three nodes bootstrapped as a chain (0 ← 1 ← 2). The same file put on two nodes is one blob
with two holders on every node (``blob locate``, ``blob list --all``); a holder killed with
SIGKILL in the middle of a transfer leaves the fetch to the other holder; a killed holder's
location expires after three missed refreshes.

Until streaming put lands, ``icnctl blob put`` takes files up to ~786 KB (one RPC line), so the
big blob for the kill test is laid into the two holders' stores on disk before they start,
exactly as the store keeps it (``blobs/<hh>/<hash>``); they announce it like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from icn_dev.cluster import LocalCluster
from tests.integration.test_compute_cluster import icnctl_json
from tests.integration.test_mesh_cluster import wait_until

pytestmark = pytest.mark.integration

BIG = 64 << 20


def metric(cluster: LocalCluster, i: int, name: str, **labels: str) -> float:
    addr = cluster.rpc(i, "node.status")["listen"]["metrics"]
    body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    want = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in body.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name + (want if labels else ""):
            return float(value)
    return 0.0


def lay_blob(data_dir: Path, data: bytes) -> str:
    """Put ``data`` into a (stopped) node's store as the store lays it out."""
    hx = hashlib.sha256(data).hexdigest()
    path = data_dir / "blobs" / hx[:2] / hx
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o444)
    return hx


def test_the_same_blob_put_on_two_nodes_is_one_blob_with_two_holders(short_tmp):
    src = short_tmp / "shared.bin"
    src.write_bytes(os.urandom(300_000))
    with LocalCluster(short_tmp / "c", 3) as cluster:
        cluster.start_all()
        dids = [n.did for n in cluster.nodes]
        h = icnctl_json(cluster, 0, "blob", "put", str(src))["blob"]
        assert icnctl_json(cluster, 1, "blob", "put", str(src))["blob"] == h

        def two_holders(i: int) -> dict | None:
            out = icnctl_json(cluster, i, "blob", "locate", h)
            return out if len(out["holders"]) == 2 else None

        out = wait_until(lambda: two_holders(2), 15, "node 2 to see both holders", step=0.3)
        assert out["size"] == 300_000
        assert {x["did"] for x in out["holders"]} == {dids[0], dids[1]}
        assert all(0 <= x["age_s"] < 15 and not x["self"] for x in out["holders"])
        for i in range(3):
            wait_until(lambda i=i: two_holders(i), 15, f"node {i} to see both holders", 0.3)
            listed = icnctl_json(cluster, i, "blob", "list", "--all")["blobs"]
            assert [(b["blob"], b["size"], b["holders"]) for b in listed] == [(h, 300_000, 2)]
        text = cluster.icnctl(2, "blob", "locate", h)
        assert text.returncode == 0 and dids[0] in text.stdout and dids[1] in text.stdout


def test_a_holder_killed_mid_transfer_leaves_the_fetch_to_the_other(short_tmp):
    data = os.urandom(BIG)
    cluster = LocalCluster(short_tmp / "c", 3).init()
    with cluster:
        h = lay_blob(cluster.nodes[0].data_dir, data)
        lay_blob(cluster.nodes[1].data_dir, data)
        del data
        cluster.start_all()
        wait_until(
            lambda: len(cluster.rpc(2, "blob.locate", {"blob": h})["holders"]) == 2,
            20,
            "node 2 to learn both holders",
            step=0.3,
        )
        argv = [sys.executable, "-m", "icn_cli", "--socket", str(cluster.nodes[2].socket)]
        fetch = subprocess.Popen(
            [*argv, "--json", "blob", "fetch", h],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        tmp = cluster.nodes[2].data_dir / "blobs" / "tmp"

        def partial() -> int:
            """Bytes in node 2's partial file (0 when there is none)."""
            sizes = [0]
            for p in tmp.glob("in-*"):
                try:
                    sizes.append(p.stat().st_size)
                except FileNotFoundError:  # committed or discarded meanwhile
                    continue
            return max(sizes)

        seen = wait_until(
            lambda: partial() >= 4 << 20 or fetch.poll() is not None,
            30,
            "the transfer to start",
            step=0.005,
        )
        assert seen and fetch.poll() is None, "the fetch ended before the kill"
        at_kill = partial()
        cluster.kill(0)
        out, err = fetch.communicate(timeout=60)
        assert fetch.returncode == 0, f"{out}\n{err}\n{cluster.tail_log(2)}"
        assert 0 < at_kill < BIG  # killed mid-transfer
        assert json.loads(out) == {"blob": h, "size": BIG, "fetched": True}
        got = cluster.nodes[2].data_dir / "blobs" / h[:2] / h
        digest = hashlib.sha256()
        with open(got, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        assert digest.hexdigest() == h
        assert metric(cluster, 2, "icn_blob_bytes_total", direction="in", cause="replica") >= BIG
        assert metric(cluster, 1, "icn_blob_bytes_total", direction="out", cause="replica") > 0
        assert metric(cluster, 2, "icn_blob_fetches_total", result="ok") == 1
        # node 2 holds it now too, and says so
        wait_until(
            lambda: (
                cluster.nodes[2].did
                in {x["did"] for x in cluster.rpc(1, "blob.locate", {"blob": h})["holders"]}
            ),
            10,
            "node 1 to see node 2 as a holder",
        )


def test_a_dead_holders_location_expires_after_three_missed_refreshes(short_tmp):
    src = short_tmp / "f.bin"
    src.write_bytes(os.urandom(1000))
    refresh = 2.0
    config = {"blobs": {"announce_interval_s": refresh}}
    with LocalCluster(short_tmp / "c", 3, node_config=lambda i, dids: config) as cluster:
        cluster.start_all()
        h = icnctl_json(cluster, 0, "blob", "put", str(src))["blob"]
        icnctl_json(cluster, 1, "blob", "put", str(src))

        def holders(i: int) -> set[str]:
            return {x["did"] for x in cluster.rpc(i, "blob.locate", {"blob": h})["holders"]}

        both = {cluster.nodes[0].did, cluster.nodes[1].did}
        wait_until(lambda: holders(2) == both, 15, "node 2 to see both holders")
        time.sleep(3 * refresh)  # refreshed meanwhile: still both
        assert holders(2) == both
        cluster.kill(0)
        t0 = time.monotonic()
        wait_until(lambda: holders(2) == {cluster.nodes[1].did}, 30, "node 0's location to expire")
        gone = time.monotonic() - t0
        # three missed refreshes (plus 5 s of slack) after its last one, which was at most one
        # period before the kill; lookups see the expiry at the next timer tick (<= 2 s)
        assert 2 * refresh + 5.0 - 1.0 <= gone <= 3 * refresh + 5.0 + 2.0 + 1.0, gone
