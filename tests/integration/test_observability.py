"""A real cooperative's /metrics: promtool's lint passes on it, and every metric the Grafana
dashboard and the alert rules under deploy/ name is one it exports."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from icn_dev.cluster import LocalCluster
from tests.deploy_files import exported_names, promtool, used_metric_names

pytestmark = pytest.mark.integration

SUMWAT = Path(__file__).resolve().parents[2] / "examples" / "sum.wat"


@pytest.fixture(scope="module")
def scrapes():
    """Both nodes' /metrics after one task placed and run, so histograms and labelled
    counters have samples."""
    root = Path(tempfile.mkdtemp(prefix="icn-obs-"))
    with LocalCluster(root, 2, topology="star") as cluster:
        cluster.start_all()
        r = cluster.icnctl(
            0, "compute", "submit", str(SUMWAT), "--arg", "10", "--cpu", "0.5", "--wait"
        )
        assert r.returncode == 0, r.stdout + r.stderr
        texts = []
        for i in range(2):
            addr = cluster.rpc(i, "node.status")["listen"]["metrics"]
            with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
                texts.append(resp.read().decode())
    shutil.rmtree(root, ignore_errors=True)
    return texts


def test_promtool_check_metrics_finds_no_problem(scrapes):
    tool = promtool()
    for text in scrapes:
        assert "icn_compute_placement_duration_seconds_bucket" in text
        r = subprocess.run(
            [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_every_metric_the_dashboard_and_alerts_name_is_exported(scrapes):
    exported = set().union(*(exported_names(text) for text in scrapes))
    used = used_metric_names()
    assert "icn_compute_placement_duration_seconds_bucket" in used  # the scan found names
    unknown = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not unknown, f"named but not exported by icnd: {unknown}"


def test_the_name_check_would_catch_a_typo(scrapes):
    exported = set().union(*(exported_names(text) for text in scrapes))
    assert "icn_mesh_peers" in exported and "icn_mesh_peer" not in exported
    # A labelled family with no child yet still counts, from its # TYPE line.
    assert "icn_compute_executor_penalties_total" in exported
