"""The Grafana dashboard and the Prometheus alert rules under deploy/: well-formed, valid
PromQL, alerts that fire when they should (``promtool test rules``), and documented. That the
metrics they name exist is checked against a real node in
tests/integration/test_observability.py."""

from __future__ import annotations

import json
import re
import subprocess

from tests.deploy_files import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD,
    ROOT,
    dashboard_exprs,
    panels,
    promtool,
)

# What issue 13 asks the dashboard to show, by panel title.
REQUIRED_PANELS = {
    "Placement rate",
    "Offers per task",
    "Win ratio per executor",
    "Offer score quantiles",
    "Placement latency quantiles",
    "Mesh size",
    "Bytes moved and saved",
    "Task outcomes",
}
ALERT_NAMES = {"IcnNoPeers", "IcnPlacementLatencyHigh", "IcnTasksFailing", "IcnProbesFailing"}


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def test_dashboard_shows_what_the_issue_asks_and_is_laid_out_on_the_grid():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    everything = dashboard["panels"]
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert REQUIRED_PANELS <= {p["title"] for p in panels()}
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for p in everything:
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, p["title"]
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert p.get("description"), f"{p['title']}: say what the panel shows"


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """Each query as a recording rule (JSON is YAML), checked by promtool's PromQL parser."""
    tool = promtool()
    rules = [
        {
            "record": f"icnd_dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*"),
        }
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = run(tool, "check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(rules)} rules found" in r.stdout


def test_promtool_check_rules_accepts_the_alerts():
    r = run(promtool(), "check", "rules", str(ALERTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(ALERT_NAMES)} rules found" in r.stdout


def test_promtool_test_rules_each_alert_fires_when_it_should_and_only_then():
    r = run(promtool(), "test", "rules", str(ALERT_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert tested == ALERT_NAMES


def test_every_alert_is_in_the_file_and_explained_in_operations():
    assert set(re.findall(r"- alert: (\w+)", ALERTS.read_text())) == ALERT_NAMES
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    missing = [name for name in sorted(ALERT_NAMES) if f"`{name}`" not in operations]
    assert not missing, f"docs/OPERATIONS.md does not explain {missing}"
