"""Invariants of the mesh core under arbitrary event sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from icn_node import wire
from icn_node.mesh.core import Deliver

from .helpers import identities, make_core

T0 = 1_700_000_000.0
IDS = identities(8)
ME, PEERS = IDS[0], IDS[1:]
MEMBERS = [i.did for i in IDS]
POOL = [
    wire.Gossip.sign(PEERS[i % 3], "t", i, int((T0 + 30 * (i % 4)) * 1000), bytes([i]))
    for i in range(8)
]


def active_core(n_links: int, **cfg):
    core = make_core(ME, MEMBERS, **cfg)
    core.start(T0, ("10.0.0.1:1",))
    core.subscribe("t", T0)
    for lid in range(1, n_links + 1):
        core.link_opened(lid, PEERS[lid - 1].did, "in", f"10.0.1.{lid}:1", T0)
        core.frame_received(lid, wire.Hello(wire.PROTOCOL_VERSION), T0)
        core.frame_received(lid, wire.Subscribe(("t",)), T0)
    return core


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(POOL) - 1), st.integers(1, 4), st.floats(0, 50)),
        max_size=40,
    )
)
def test_dedup_never_delivers_a_message_twice(events):
    core = active_core(4, liveness_timeout_s=1e9)
    now = T0
    delivered = []
    for index, link, dt in events:
        now += dt
        for a in core.frame_received(link, POOL[index], now) + core.tick(now):
            if isinstance(a, Deliver):
                delivered.append(a.delivery.msg_id)
    assert len(delivered) == len(set(delivered))
    # And nothing outside the replay window was ever delivered.
    by_id = {m.msg_id: m for m in POOL}
    assert all(abs(by_id[i].ts_ms / 1000 - T0) <= 200 for i in delivered)


op = st.one_of(
    st.tuples(st.just("open"), st.integers(0, 6)),
    st.tuples(st.just("close"), st.integers(0, 6)),
    st.tuples(st.just("graft"), st.integers(0, 6)),
    st.tuples(st.just("prune"), st.integers(0, 6)),
    st.tuples(st.just("unsub"), st.integers(0, 6)),
    st.tuples(st.just("tick"), st.floats(0.1, 3.0)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(op, max_size=60), st.integers(0, 2**16))
def test_mesh_degree_stays_within_bounds_after_every_heartbeat(ops, seed):
    core = make_core(
        ME, MEMBERS, seed=seed, degree=3, degree_low=2, degree_high=4, liveness_timeout_s=1e9
    )
    core.start(T0, ())
    core.subscribe("t", T0)
    now = T0
    link_of: dict[int, int] = {}
    next_link = 1
    for kind, arg in ops:
        if kind == "tick":
            now += arg
            beats = core._heartbeats
            core.tick(now)
            if core._heartbeats > beats:
                mesh = core.mesh["t"]
                eligible = {d for d, lid in core.active.items() if "t" in core.links[lid].topics}
                assert mesh <= eligible
                assert len(mesh) <= 4
                assert len(mesh) >= min(2, len(eligible))
            continue
        peer = PEERS[arg]
        lid = link_of.get(arg)
        if kind == "open" and lid is None:
            lid = link_of[arg] = next_link
            next_link += 1
            core.link_opened(lid, peer.did, "in", f"10.0.1.{arg}:1", now)
            core.frame_received(lid, wire.Hello(wire.PROTOCOL_VERSION), now)
            core.frame_received(lid, wire.Subscribe(("t",)), now)
        elif kind == "close" and lid is not None:
            core.link_closed(lid, "eof", now)
            del link_of[arg]
        elif kind == "graft" and lid is not None:
            core.frame_received(lid, wire.Graft("t"), now)
        elif kind == "prune" and lid is not None:
            core.frame_received(lid, wire.Prune("t"), now)
        elif kind == "unsub" and lid is not None:
            core.frame_received(lid, wire.Subscribe(("t",), on=False), now)
        # The mesh only ever holds connected peers, whatever happened.
        assert core.mesh["t"] <= set(core.active)
