"""Vivaldi with height: accuracy on synthetic latency matrices, and stability (hypothesis)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icn_dev.netsim import accuracy
from icn_node.netmap.core import Vivaldi
from icn_node.scheduler.coordinates import (
    MAX_COMPONENT_MS,
    MAX_ERROR,
    MIN_HEIGHT_MS,
    Coordinate,
)

# --- accuracy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("geometry", ["plane", "globe"])
def test_median_relative_error_on_a_synthetic_100_node_matrix(geometry):
    """100 nodes, access-link heights 1-15 ms, +-5 % jitter, 32 random neighbours each (the
    mesh's max_peers), 300 rounds of one sample per node. The Vivaldi paper's 2-D + height
    figure on real Internet RTTs is 11 %; docs/PERFORMANCE.md has the figures over 8 seeds
    (.venv/bin/python bench/bench_netmap.py)."""
    result = accuracy(geometry, seed=1)
    assert result.median <= 0.15, str(result)
    assert result.median_error_estimate <= 0.25, str(result)  # the nodes know they converged


def test_accuracy_needs_the_rounds():
    """The figure is Vivaldi's doing: after only 20 rounds the same matrix is still far off."""
    early = accuracy("plane", seed=1, rounds=20)
    assert early.median > 0.3, str(early)


# --- the update ---------------------------------------------------------------------------


def test_two_nodes_converge_on_their_rtt():
    a, b = Vivaldi(random.Random(1)), Vivaldi(random.Random(2))
    for _ in range(200):
        a.update(50.0, b.coordinate)
        b.update(50.0, a.coordinate)
    assert a.coordinate.distance_ms(b.coordinate) == pytest.approx(50.0, rel=0.02)
    assert a.coordinate.error < 0.05 and b.coordinate.error < 0.05


def test_coincident_nodes_part_in_a_random_direction_from_the_injected_rng():
    """Both start at the origin: the first push needs a direction, drawn from the RNG."""
    first = Vivaldi(random.Random(7)).update(40.0, Coordinate())
    again = Vivaldi(random.Random(7)).update(40.0, Coordinate())
    other = Vivaldi(random.Random(8)).update(40.0, Coordinate())
    assert first == again != other
    assert math.hypot(*first.vec) > 1.0  # it moved off the origin...
    assert first.height == MIN_HEIGHT_MS  # ...in the plane


def test_coincident_nodes_too_far_apart_shrink_their_heights_only():
    v = Vivaldi(random.Random(1))
    v.coordinate = Coordinate((5.0, 5.0), 30.0, 1.0)
    out = v.update(10.0, Coordinate((5.0, 5.0), 30.0, 1.0))
    assert out.vec == (5.0, 5.0) and out.height < 30.0


def test_a_sure_node_moves_less_than_an_unsure_one():
    """Adaptive timestep: the weight is local error / (local + remote error)."""
    remote = Coordinate((100.0, 0.0), 1.0, 0.5)
    sure, unsure = Vivaldi(random.Random(1)), Vivaldi(random.Random(1))
    sure.coordinate = Coordinate((0.0, 0.0), 1.0, 0.05)
    unsure.coordinate = Coordinate((0.0, 0.0), 1.0, 1.0)
    moved_sure = abs(sure.update(50.0, remote).vec[0])
    moved_unsure = abs(unsure.update(50.0, remote).vec[0])
    assert 0 < moved_sure < moved_unsure / 5


def test_height_grows_when_everyone_is_farther_than_the_plane_says():
    """A node behind a slow access link: every peer is 40 ms further than the plane says."""
    v = Vivaldi(random.Random(1))
    peers = [Coordinate((50 * math.cos(k), 50 * math.sin(k)), 1.0, 0.1) for k in range(8)]
    for _ in range(60):
        for p in peers:
            v.update(50.0 + 1.0 + 40.0, p)  # planar distance from the centre + their height
    assert 30.0 < v.coordinate.height < 50.0


# --- stability --------------------------------------------------------------------------------

component = st.floats(-MAX_COMPONENT_MS, MAX_COMPONENT_MS, allow_nan=False)
coordinates = st.builds(
    Coordinate,
    st.tuples(component, component),
    st.floats(0.0, MAX_COMPONENT_MS),
    st.floats(0.0, MAX_ERROR),
)
rtts = st.one_of(st.just(0.0), st.floats(0.0, 1e-6), st.floats(0.0, 600_000.0))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**32),
    st.lists(st.tuples(rtts, st.one_of(coordinates, st.just(None))), max_size=60),
)
def test_coordinates_stay_finite_bounded_and_sane(seed, samples):
    """Whatever the samples (zero RTTs, a remote at our very point, huge or tiny values), the
    coordinate stays a valid one: finite, inside the bounds, height positive, error in
    [MIN_ERROR, MAX_ERROR]."""
    v = Vivaldi(random.Random(seed))
    for rtt, remote in samples:
        c = v.update(rtt, remote if remote is not None else v.coordinate)
        assert all(math.isfinite(x) and abs(x) <= MAX_COMPONENT_MS for x in c.vec)
        assert MIN_HEIGHT_MS <= c.height <= MAX_COMPONENT_MS
        assert 0.0 < c.error <= MAX_ERROR
        assert math.isfinite(c.distance_ms(remote or c))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.floats(1.0, 500.0))
def test_a_steady_rtt_to_a_fixed_peer_is_learnt_from_any_start(seed, rtt):
    rng = random.Random(seed)
    v = Vivaldi(rng)
    v.coordinate = Coordinate(
        (rng.uniform(-1000, 1000), rng.uniform(-1000, 1000)), rng.uniform(0.01, 100), MAX_ERROR
    )
    peer = Coordinate((0.0, 0.0), 0.5, 0.05)
    for _ in range(300):
        v.update(rtt, peer)
    assert v.coordinate.distance_ms(peer) == pytest.approx(rtt, rel=0.05, abs=0.5)
