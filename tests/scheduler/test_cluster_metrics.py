"""Cluster metrics (seed 004): samples, EWMA, selectors, balancer, weighted routees."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icn_node.errors import ResourceError
from icn_node.scheduler import (
    AdaptiveLoadBalancer,
    ClusterMetrics,
    Ewma,
    MetricsSelector,
    NodeMetrics,
    WeightedRoutees,
)


def m(address: str, cpu: float = 0.0, used: int = 0, mx: int = 1, ts: float = 0.0):
    return NodeMetrics(address, ts, cpu, used, mx)


def test_node_metrics_memory_usage_and_validation():
    assert m("a", used=250, mx=1000).memory_usage() == 0.25
    assert m("a", used=0, mx=0).memory_usage() == 0.0
    with pytest.raises(ResourceError, match="node_metrics.cpu_load"):
        m("a", cpu=1.5)
    with pytest.raises(ResourceError, match="node_metrics.memory_used"):
        m("a", used=5, mx=4)
    with pytest.raises(ResourceError, match="node_metrics.timestamp"):
        NodeMetrics("a", float("nan"), 0.0, 0, 0)


def test_publish_get_snapshot_and_stale_samples():
    c = ClusterMetrics()
    assert c.publish(m("b", 0.5, ts=2.0))
    assert c.publish(m("a", 0.1, ts=1.0))
    assert not c.publish(m("b", 0.9, ts=1.0))  # older than held: ignored
    assert c.get("b").cpu_load == 0.5
    assert [x.address for x in c.snapshot()] == ["a", "b"]
    assert c.node_count() == 2
    assert c.prune(older_than=1.5) == ["a"]
    assert c.node_count() == 1 and c.get("a") is None
    assert c.publish_all([m("x", ts=5), m("y", ts=5)]) == 2


def test_smoothed_load():
    c = ClusterMetrics(half_life_samples=1.0)  # alpha = 0.5
    c.publish(m("a", 0.0, ts=0))
    assert c.load("a") == 0.0
    c.publish(m("a", 1.0, ts=1))
    assert c.load("a") == pytest.approx(0.5)
    c.publish(m("a", 1.0, ts=2))
    assert c.load("a") == pytest.approx(0.75)
    assert ClusterMetrics().load("nobody") is None
    raw = ClusterMetrics()
    raw.publish(m("a", 0.7))
    assert raw.load("a") == 0.7


def test_ewma():
    e = Ewma(0.5, 0.3)
    assert e.value == 0.5
    for _ in range(30):
        e = Ewma(e.value, 0.5).update(1.0)
    assert e.value > 0.99
    with pytest.raises(ResourceError, match="ewma.alpha"):
        Ewma(0.0, 0.0)
    with pytest.raises(ResourceError, match="ewma.alpha"):
        Ewma(0.0, 1.5)
    h = Ewma.from_half_life(0.0, 4.0)
    assert h.alpha == pytest.approx(1 - 2 ** (-1 / 4))
    for _ in range(4):
        h = h.update(1.0)
    assert h.value == pytest.approx(0.5)  # exactly half after one half-life
    with pytest.raises(ResourceError, match="half_life"):
        Ewma.from_half_life(0.0, 0.0)


@given(st.floats(0.0, 1.0), st.lists(st.floats(0.0, 1.0), max_size=50), st.floats(0.01, 100.0))
def test_ewma_stays_within_sample_range(initial, samples, half_life):
    e = Ewma.from_half_life(initial, half_life)
    for s in samples:
        e = e.update(s)
        assert -1e-12 <= e.value <= 1.0 + 1e-12


def test_selectors():
    assert MetricsSelector.Cpu is MetricsSelector.CPU
    assert MetricsSelector.CPU.weight(m("a", 0.2)) > MetricsSelector.CPU.weight(m("b", 0.9))
    assert MetricsSelector.HEAP.weight(m("a", used=100, mx=400)) == 0.75
    assert MetricsSelector.MIX.weight(m("a", 0.0, 100, 200)) == pytest.approx(0.75)


def test_adaptive_load_balancer():
    c = ClusterMetrics()
    for a, load in [("a", 0.9), ("b", 0.1), ("c", 0.5)]:
        c.publish(m(a, load))
    lb = AdaptiveLoadBalancer(c)
    assert lb.pick(["a", "b", "c"]) == "b"
    assert lb.pick(["c", "a"]) == "c"
    assert lb.pick(["z", "a"]) == "a"  # unknown counts as fully loaded
    assert AdaptiveLoadBalancer(ClusterMetrics()).pick(["c", "a", "b"]) == "a"
    assert lb.pick([]) is None


def test_weighted_routees():
    c = ClusterMetrics()
    c.publish(m("fast", 0.1))
    c.publish(m("slow", 0.9))
    r = WeightedRoutees(c, MetricsSelector.CPU)
    picks = [r.pick(["fast", "slow"], i / 100) for i in range(100)]
    assert picks.count("fast") == 90  # weights 0.9 : 0.1
    assert r.pick([], 0.5) is None
    with pytest.raises(ResourceError, match="draw"):
        r.pick(["fast"], 1.5)


def test_weighted_routees_zero_weights():
    c = ClusterMetrics()
    c.publish(m("a", 1.0, 1, 1))
    c.publish(m("b", 1.0, 1, 1))
    c.publish(m("c", 0.0, 0, 1))
    r = WeightedRoutees(c, MetricsSelector.MIX)
    assert r.pick(["a", "b"], 0.5) == "a"  # all zero: the first
    # A zero-weight node is never picked while another has weight, even with draw 0.
    assert r.pick(["a", "c"], 0.0) == "c"
    assert r.pick(["c", "a"], 1.0) == "c"
    assert r.weights(["a", "unknown"]) == [0.0, 0.5]
