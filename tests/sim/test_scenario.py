"""Scenario files: the shipped ones load, and a bad one is refused naming its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE, tiny

from icn_sim.cli import main
from icn_sim.scenario import ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))


def test_the_shipped_scenarios_are_found():
    names = {p.stem for p in SHIPPED}
    assert {"bench", "ml-batch", "small-cpu", "gpu", "trust", "churn"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path):
    sc = load_scenario(path)
    assert sc.variants
    for v in sc.variants:
        sc.section(v)  # the daemon's own [compute] checks pass


def test_default_variants_compare_the_seed_weights_and_icnd():
    sc = tiny(asks=["all", "sample:4"])
    names = [v.name for v in sc.variants]
    assert names == [
        "seed-16a ask=all",
        "seed-16c ask=all",
        "icnd ask=all",
        "seed-16a ask=sample:4",
        "seed-16c ask=sample:4",
        "icnd ask=sample:4",
    ]
    weights = {v.name: sc.section(v).placement_weights for v in sc.variants}
    assert weights["seed-16a ask=all"] == "phase16a"
    assert weights["icnd ask=all"] == "phase16c"
    assert sc.variants[-1].sample == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workload": {"rate_per_s": -1}}, "tiny.toml: workload.rate_per_s: must be a number > 0"),
        ({"nodes": {"count": "many"}}, "tiny.toml: nodes.count: must be an integer"),
        ({"nodes": {"colour": "blue"}}, "tiny.toml: nodes.colour: unknown key"),
        ({"network": {"direct": "pigeon"}}, "tiny.toml: network.direct: must be one of"),
        ({"asks": ["some"]}, "tiny.toml: asks: must be 'all' or 'sample:K'"),
        (
            {"compute": {"placement_weights": "phase99"}},
            "tiny.toml: compute.placement_weights: ",
        ),
        (
            {"churn": [{"kind": "partition", "at_s": 1, "duration_s": 1, "regions": ["mars"]}]},
            "tiny.toml: churn[0].regions: must name regions",
        ),
    ],
)
def test_a_bad_scenario_names_the_file_and_key(change, message):
    with pytest.raises(ScenarioError) as e:
        tiny(**change)
    assert str(e.value).startswith(message), str(e.value)


def test_a_missing_table_is_named():
    doc = {k: v for k, v in BASE.items() if k != "workload"}
    with pytest.raises(ScenarioError, match="workload: missing"):
        parse_scenario(doc, "x.toml")


def test_the_cli_exits_2_on_a_bad_scenario(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[nodes]\ncount = 1\n')
    assert main([str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Error: {bad}: nodes.count: must be an integer in [2," in err


def test_the_cli_exits_2_on_toml_it_cannot_parse(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    assert main([str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_set_overrides_a_key_and_is_validated(tmp_path):
    path = ROOT / "scenarios" / "small.toml"
    sc = load_scenario(path, ["network.cpu_scale=0", "workload.tasks=5"])
    assert sc.network.cpu_scale == 0.0
    assert sc.workload.tasks == 5
    with pytest.raises(ScenarioError, match="network.loss: must be a number"):
        load_scenario(path, ["network.loss=0.9"])
    with pytest.raises(ScenarioError, match="--set nodes: expected KEY=VALUE"):
        load_scenario(path, ["nodes"])
