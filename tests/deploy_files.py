"""What the tests of deploy/ share: the files, promtool, and the metric names they use."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "icnd-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "icnd-alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "icnd-alerts.test.yml"
# Names of ours (icn_) and of prometheus_client's process collector that PromQL may name.
METRIC_NAME = re.compile(r"\b(?:icn|process|python)_[a-z0-9_]+\b")
# CI sets this so that a missing promtool fails instead of skipping (.ci/run installs it).
REQUIRE = "ICN_REQUIRE_PROMTOOL"


def promtool() -> str:
    """The promtool executable; skips the test when there is none (fails under CI)."""
    found = shutil.which("promtool")
    if found is None:
        reason = (
            "promtool not found: it comes with Debian's prometheus package "
            "(`apt-get install prometheus`; `make test` installs it when run as root)"
        )
        if os.environ.get(REQUIRE):
            pytest.fail(f"{reason}; {REQUIRE} is set")
        pytest.skip(reason)
    return found


def panels() -> list[dict]:
    """Every panel of the dashboard, those inside collapsed rows included; rows themselves not."""
    out = []
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in panels() for t in p.get("targets", [])]


def alert_text() -> str:
    """The alert rules without their comment lines."""
    return "\n".join(
        line for line in ALERTS.read_text().splitlines() if not line.lstrip().startswith("#")
    )


def used_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is used ("dashboard: TITLE" or "alerts")."""
    used: dict[str, set[str]] = {}
    for title, expr in dashboard_exprs():
        for name in METRIC_NAME.findall(expr):
            used.setdefault(name, set()).add(f"dashboard: {title}")
    for name in METRIC_NAME.findall(alert_text()):
        used.setdefault(name, set()).add("alerts")
    return used


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape can hold, from its samples and its ``# TYPE`` lines (a labelled
    family with no child yet has only the latter)."""
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    suffixes["summary"] = ("", "_count", "_sum")
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            for suffix in suffixes.get(kind, ()):
                names.add(name if name.endswith(suffix) else name + suffix)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
