"""Small scenarios for the simulator tests (each runs in well under a second)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from icn_sim.scenario import Scenario, parse_scenario

BASE: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "horizon_s": 5000,
    "nodes": {
        "count": 12,
        "submitters": 2,
        "cpu_cores": [4, 8],
        "bandwidth_mbps": [100, 1000],
        "regions": [
            {"name": "eu", "lat": 50.0, "lon": 10.0},
            {"name": "na", "lat": 40.0, "lon": -95.0},
        ],
    },
    "network": {"links": 0},
    "workload": {
        "tasks": 30,
        "rate_per_s": 2.0,
        "classes": [
            {
                "name": "data",
                "weight": 1,
                "cpu_cores": 2,
                "memory_mb": 1024,
                "duration_s": [2, 6],
                "dataset_gb": [0.2, 2],
                "datasets": 6,
                "holders": [1, 2],
            },
            {"name": "cpu", "weight": 1, "cpu_cores": 1, "memory_mb": 256, "duration_s": [1, 3]},
        ],
    },
}


def tiny(**changes: Any) -> Scenario:
    """The tiny scenario with top-level tables updated (``nodes={...}`` merges into nodes)."""
    doc = copy.deepcopy(BASE)
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k].update(v)
        else:
            doc[k] = v
    return parse_scenario(doc, "tiny.toml")


@pytest.fixture
def scenario() -> Scenario:
    return tiny()
