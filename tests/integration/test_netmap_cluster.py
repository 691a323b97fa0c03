"""The network map across three real icnd processes, driven with icnctl."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from icn_dev.cluster import LocalCluster
from tests.integration.test_mesh_cluster import wait_until

pytestmark = pytest.mark.integration


def topology(cluster: LocalCluster, i: int) -> dict:
    r = cluster.icnctl(i, "--json", "topology")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_topology_shows_the_other_two_with_rtt_and_coordinates(short_tmp):
    def node_config(i, dids):
        # a keepalive (an RTT sample) every second instead of every 3.3 s
        return {"mesh": {"liveness_timeout_s": 3.0}}

    with LocalCluster(short_tmp, 3, node_config=node_config) as cluster:
        cluster.start_all()
        dids = [n.did for n in cluster.nodes]

        def measured():
            res = topology(cluster, 0)
            rows = {n["did"]: n for n in res["nodes"] if n["linked"]}
            ok = all(
                d in rows and rows[d]["rtt_ms"] is not None and rows[d]["coordinate"] is not None
                for d in dids[1:]
            )
            return res if ok and res["updates"] >= 4 else None

        res = wait_until(measured, 60, "node 0 to measure and place both peers")
        assert res["did"] == dids[0]
        assert 0.0 <= res["coordinate"]["error"] <= 1.5
        rows = {n["did"]: n for n in res["nodes"]}
        for d in dids[1:]:
            assert 0.0 <= rows[d]["rtt_ms"] < 1000.0, rows[d]
            assert rows[d]["coordinate_source"] in ("peer", "announce")  # pushed or announced
            assert rows[d]["rtt_estimated_ms"] is not None

        human = cluster.icnctl(0, "topology")
        assert human.returncode == 0, human.stderr
        lines = human.stdout.splitlines()
        assert lines[0].startswith("this node ") and "coordinate (" in lines[0]
        for d in dids[1:]:
            (row,) = [ln for ln in lines if ln.startswith(d[:16])]
            assert re.search(r"\byes\s+\d+\.\dms\s+\d+\.\dms\b", row), row
            assert "err=" in row, row

        r = cluster.icnctl(0, "topology", "--estimate", dids[1], dids[2])
        assert r.returncode == 0, r.stderr
        assert float(r.stdout.strip()) >= 0.0
        r = cluster.icnctl(0, "--json", "topology", "--estimate", dids[1], dids[2])
        assert json.loads(r.stdout)["rtt_ms"] >= 0.0
        r = cluster.icnctl(0, "topology", "--estimate", dids[1], "did:key:z6Mkbogus")
        assert r.returncode == 1 and r.stderr.startswith("Error: b: "), r.stderr

        # the metrics: RTT samples, the coordinate's error, probe and mesh bytes
        status = cluster.rpc(0, "node.status")
        url = f"http://{status['listen']['metrics']}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        count = re.search(r"^icn_netmap_rtt_seconds_count (\S+)$", text, re.M)
        assert count and float(count.group(1)) > 0
        for name in (
            "icn_netmap_coordinate_error",
            "icn_netmap_probe_bytes_total",
            "icn_netmap_mesh_bytes_total",
        ):
            assert re.search(rf"^{name} \S+$", text, re.M), name
