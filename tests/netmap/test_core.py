"""NetmapCore through its public API: RTT samples, coordinates, bandwidth, probes, budget."""

from __future__ import annotations

import random

import pytest

from icn_dev.netsim import ProbeSim
from icn_node import wire
from icn_node.netmap.core import (
    PROBE_MSG_OVERHEAD,
    PROBE_RESERVE,
    Bandwidth,
    Measured,
    NetmapConfig,
    NetmapCore,
    ProbeDone,
    Send,
    bandwidth_from,
)
from icn_node.scheduler.coordinates import MAX_ERROR, Coordinate

T0 = 1_700_000_000.0
ME, A, B, C = "did:me", "did:a", "did:b", "did:c"
CFG = NetmapConfig()
ROUND = CFG.round_bytes
LOTS = 10**9  # mesh bytes: a budget of 10 MB


def core(**cfg) -> NetmapCore:
    return NetmapCore(ME, random.Random(1), NetmapConfig(**cfg) if cfg else CFG)


def sends(actions, kind=wire.Message):
    return [a for a in actions if isinstance(a, Send) and isinstance(a.msg, kind)]


def linked(c: NetmapCore, did: str, now: float = T0, room: int = LOTS, rtt: float = 20.0):
    """``did`` is a linked peer running the netmap, with probe room to spare."""
    c.rtt_sample(did, rtt, now)
    c.coordinate_heard(did, Coordinate((10.0, 0.0), 1.0, 0.5), now, "peer", room)


# --- RTT samples and coordinates --------------------------------------------------------------


def test_a_sample_is_smoothed_and_moves_the_coordinate_once_the_peer_is_known():
    c = core()
    (push,) = c.rtt_sample(A, 20.0, T0)  # the peer does not know us yet: our coordinate
    assert push == Send(A, wire.NetmapCoordMsg(c.coordinate, 0))
    assert c.coordinate == Coordinate() and c.vivaldi.updates == 0  # A's coordinate unknown
    c.coordinate_heard(A, Coordinate((30.0, 40.0), 5.0, 0.2), T0, "peer", 0)
    c.rtt_sample(A, 60.0, T0 + 3.3)
    assert c.vivaldi.updates == 1 and c.coordinate.error < MAX_ERROR
    assert c.rtt_ms(A, T0 + 3.3) == pytest.approx(0.75 * 20.0 + 0.25 * 60.0)
    assert c.estimate_rtt_ms(ME, A) == c.coordinate.distance_ms(c.coordinate_of(A))


def test_vivaldi_takes_the_median_of_the_last_three_samples():
    c = core()
    c.coordinate_heard(A, Coordinate((0.0, 0.0), 1.0, 0.01), T0, "peer")
    c.vivaldi.coordinate = Coordinate((49.0, 0.0), 1.0, 0.5)  # 51 ms from A
    for rtt in (51.0, 51.0):
        c.rtt_sample(A, rtt, T0)
    before = c.coordinate
    c.rtt_sample(A, 5000.0, T0)  # one late pong: the median is still 51
    assert c.coordinate.vec[0] == pytest.approx(before.vec[0], abs=0.5)


def test_our_coordinate_goes_once_to_any_peer_then_to_netmap_peers_when_it_matters():
    c = core(coord_push_s=3.0, coord_refresh_s=30.0)
    assert sends(c.rtt_sample(A, 10.0, T0), wire.NetmapCoordMsg)
    assert not c.rtt_sample(A, 10.0, T0 + 100)  # A never answered: an old peer, left alone
    c.coordinate_heard(A, Coordinate((10.0, 0.0), 0.5, 0.01), T0 + 100, "peer", 0)
    # it answered: our coordinate has moved since (the first sample against A's moves it)
    assert sends(c.rtt_sample(A, 10.0, T0 + 100), wire.NetmapCoordMsg)
    assert not c.rtt_sample(A, 10.0, T0 + 102)  # within coord_push_s: never
    for t in range(105, 130, 3):  # samples that agree with the coordinates: nothing to tell...
        assert not c.rtt_sample(A, c.estimate_rtt_ms(ME, A), T0 + t)
    assert sends(c.rtt_sample(A, 10.0, T0 + 131), wire.NetmapCoordMsg)  # ...until the refresh
    c.vivaldi.coordinate = Coordinate((50.0, 0.0), 1.0, 0.5)  # moved a lot
    assert sends(c.rtt_sample(A, 10.0, T0 + 134.5), wire.NetmapCoordMsg)
    c.tick(T0 + 135, 10**8)  # traffic: room for a probe round now
    (push,) = sends(c.rtt_sample(A, c.estimate_rtt_ms(ME, A), T0 + 138), wire.NetmapCoordMsg)
    assert push.msg.probe_room >= ROUND


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 1e9])
def test_a_sample_that_is_no_rtt_is_ignored(bad):
    c = core()
    assert c.rtt_sample(A, bad, T0) == [] and A not in c.peers
    assert c.rtt_sample(ME, 5.0, T0) == []  # nor one to ourselves


def test_estimates_between_any_two_known_nodes():
    c = core()
    c.vivaldi.coordinate = Coordinate((0.0, 0.0), 2.0, 0.1)
    c.coordinate_heard(A, Coordinate((3.0, 4.0), 1.0, 0.1), T0, "announce")
    c.coordinate_heard(B, Coordinate((3.0, -4.0), 1.0, 0.1), T0, "peer")
    assert c.estimate_rtt_ms(A, B) == pytest.approx(8.0 + 1.0 + 1.0)
    assert c.estimate_rtt_ms(ME, A) == c.estimate_rtt_ms(A, ME) == pytest.approx(5 + 2 + 1)
    assert c.estimate_rtt_ms(A, A) == 0.0
    assert c.estimate_rtt_ms(A, C) is None
    # not linked: the RTT to A is the coordinates' estimate
    assert c.rtt_ms(A, T0) == pytest.approx(8.0)
    assert c.coordinate_heard(ME, Coordinate((1.0, 1.0)), T0, "peer") is None
    assert c.coordinate_of(ME) == c.coordinate  # nobody sets our coordinate but us


def test_coordinates_expire_and_the_map_is_bounded():
    c = core(coord_ttl_s=100.0, max_nodes=3)
    for i, did in enumerate((A, B, C)):
        c.coordinate_heard(did, Coordinate((float(i), 0.0)), T0 + i, "announce")
    c.coordinate_heard("did:d", Coordinate(), T0 + 3, "announce")
    assert list(c.known) == [B, C, "did:d"]  # the oldest went
    c.coordinate_heard(B, Coordinate(), T0 + 50, "announce")  # heard again: kept longer
    c.tick(T0 + 102.5, 0)
    assert list(c.known) == ["did:d", B]


# --- bandwidth --------------------------------------------------------------------------------


def test_a_transfer_measures_bandwidth_after_one_rtt_and_spares_the_peer_a_probe():
    c = core()
    linked(c, A, rtt=20.0)
    # 10 MB in 1.02 s with a 20 ms RTT: 80 Mbit/s
    (m,) = c.observe_transfer(A, 10_000_000, 1.02, T0)
    assert m == Measured(A, Bandwidth(pytest.approx(80.0), T0, "transfer"))
    bw = c.bandwidth(A, T0 + 5)
    assert bw.source == "transfer" and bw.at == T0
    assert c.estimate(A, T0 + 5) == (20.0, pytest.approx(80.0))
    assert c.transfer_s(A, 1_000_000, T0 + 5) == pytest.approx(0.02 + 0.1)
    assert A not in c.probe_candidates(T0 + 5)
    # a second measurement within recent_s is averaged in; a stale one is replaced
    c.observe_transfer(A, 10_000_000, 0.52, T0 + 10)
    assert c.bandwidth(A, T0 + 10).mbps == pytest.approx((80 + 160) / 2)
    c.rtt_sample(A, 20.0, T0 + 2000)
    c.observe_transfer(A, 10_000_000, 2.02, T0 + 2000)
    assert c.bandwidth(A, T0 + 2000).mbps == pytest.approx(40.0)
    assert c.bandwidth(A, T0 + 2000 + 3601) is None  # too old to plan with
    assert c.transfer_s(A, 1, T0 + 2000 + 3601) is None


def test_transfers_that_time_the_rtt_rather_than_the_link_are_ignored():
    c = core()
    linked(c, A, rtt=100.0)
    assert c.observe_transfer(A, 1000, 1.0, T0) == []  # below min_transfer_bytes
    assert c.observe_transfer(A, 1_000_000, 0.15, T0) == []  # shorter than two RTTs
    assert c.observe_transfer(A, 1_000_000, 0.0, T0) == []
    assert c.observe_transfer(A, 1_000_000, float("nan"), T0) == []
    assert c.bandwidth(A, T0) is None and c.estimate(A, T0) == (100.0, None)


def test_bandwidth_from_the_slope_of_time_over_size():
    # 1 KiB, 10 KiB, 100 KiB at 8 Mbit/s (1 byte per microsecond) plus a 30 ms RTT
    points = [(n, 0.030 + n * 1e-6) for n in (1024, 10240, 102400)]
    assert bandwidth_from(points) == pytest.approx(8.0)
    assert bandwidth_from([(1024, 0.03), (102400, 0.03)]) is None  # no slope: no signal
    assert bandwidth_from([(1024, 0.05), (102400, 0.03)]) is None


# --- probes -----------------------------------------------------------------------------------


def run_round(c: NetmapCore, did: str, now: float, byte_s: float = 1e-6, rtt_s: float = 0.03):
    """Answer the round's probes as a link of ``1 / byte_s`` bytes/s would; the actions."""
    (first,) = sends(c.tick(now, LOTS), wire.NetmapProbeMsg)
    assert first.to == did
    out, msg = [], first.msg
    while True:
        now += rtt_s + msg.size * byte_s
        reply = wire.NetmapProbeReplyMsg(msg.probe, Coordinate(), bytes(msg.size))
        acts = c.on_probe_reply(did, reply, now)
        out += acts
        nxt = sends(acts, wire.NetmapProbeMsg)
        if not nxt:
            return out
        msg = nxt[0].msg


def test_a_round_asks_for_1_10_and_100_kib_and_measures_the_slope():
    c = core()
    linked(c, A)
    asked = []
    orig = c._send_probe

    def spy(r, now):
        s = orig(r, now)
        asked.append(s.msg.size)
        return s

    c._send_probe = spy
    out = run_round(c, A, T0 + 1)
    assert asked == [1024, 10240, 102400]
    assert ProbeDone(A, pytest.approx(8.0)) in out
    (m,) = [a for a in out if isinstance(a, Measured)]
    assert m.did == A and m.bandwidth.mbps == pytest.approx(8.0) and m.bandwidth.source == "probe"
    assert c.bandwidth(A, T0 + 2).source == "probe"
    # counted: three requests, three replies with their payloads, never over the round's hold
    assert c.probe_bytes == 6 * PROBE_MSG_OVERHEAD + sum(asked) <= ROUND
    # measured now: no second round to A within recent_s
    assert c.tick(T0 + 100, LOTS) == []


def test_no_probe_without_budget_and_the_budget_counts_the_reserve():
    c = core()
    linked(c, A)
    need = ROUND + PROBE_RESERVE  # 1 % of the mesh bytes must cover the round and the reserve
    assert c.tick(T0, (need - 1) * 100) == [] and c.rounds_deferred == 1
    assert sends(c.tick(T0 + 10, need * 100), wire.NetmapProbeMsg)


def test_only_linked_netmap_peers_with_room_and_no_recent_measurement_are_probed():
    c = core()
    linked(c, A, room=ROUND - 1)  # too little room: it would refuse
    c.rtt_sample(B, 10.0, T0)  # linked, but never said it has room (an old peer)
    c.coordinate_heard(C, Coordinate(), T0, "announce")  # known, not linked
    assert c.probe_candidates(T0) == []
    linked(c, "did:d")
    assert c.probe_candidates(T0) == ["did:d"]
    assert c.probe_candidates(T0 + CFG.linked_s + 1) == []  # no sample for a while: gone


def test_never_measured_peers_go_first_then_the_oldest_measurement():
    c = core()
    for did in (A, B, C):
        linked(c, did)
    c.observe_transfer(A, 10**6, 1.0, T0 - 1000)
    c.observe_transfer(B, 10**6, 1.0, T0 - 2000)
    assert c.probe_candidates(T0) == [C, B, A]


def test_a_round_that_times_out_or_is_refused_fails_and_the_peer_rests():
    c = core()
    linked(c, A)
    linked(c, B)
    (p,) = sends(c.tick(T0, LOTS))
    first = p.to
    assert c.next_deadline() == T0 + CFG.probe_timeout_s
    (done,) = c.tick(T0 + CFG.probe_timeout_s, LOTS)
    assert done == ProbeDone(first, None, "timeout")
    second = B if first == A else A
    c.rtt_sample(first, 10.0, T0 + 10)
    c.rtt_sample(second, 10.0, T0 + 10)
    (p,) = sends(c.tick(T0 + 10, LOTS))
    assert p.to == second  # the failed peer is not asked again within recent_s
    refusal = wire.NetmapProbeReplyMsg(p.msg.probe, Coordinate(), error="budget")
    assert c.on_probe_reply(second, refusal, T0 + 10.1) == [
        ProbeDone(second, None, "refused: budget")
    ]
    c.rtt_sample(first, 10.0, T0 + 20)
    c.rtt_sample(second, 10.0, T0 + 20)
    assert c.tick(T0 + 20, LOTS) == []


def test_a_late_or_unsolicited_reply_is_counted_but_changes_nothing():
    c = core()
    linked(c, A)
    (p,) = sends(c.tick(T0, LOTS))
    stray = wire.NetmapProbeReplyMsg(p.msg.probe + 1, Coordinate(), bytes(10))
    assert c.on_probe_reply(A, stray, T0 + 0.1) == []
    assert c.on_probe_reply(B, stray, T0 + 0.1) == []
    assert c._round is not None and c._round.step == 0
    assert c.coordinate_of(B) == Coordinate()  # its coordinate was learnt all the same


def test_a_short_reply_fails_the_round():
    c = core()
    linked(c, A)
    (p,) = sends(c.tick(T0, LOTS))
    short = wire.NetmapProbeReplyMsg(p.msg.probe, Coordinate(), bytes(10))
    assert c.on_probe_reply(A, short, T0 + 0.1) == [ProbeDone(A, None, "short reply")]


def test_a_probe_is_served_only_within_our_own_budget():
    ask = wire.NetmapProbeMsg(5, 10240)
    rich, poor, broke = core(), core(), core()
    (reply,) = rich.on_probe(A, ask, T0, LOTS)
    assert reply.to == A and reply.msg == wire.NetmapProbeReplyMsg(5, rich.coordinate, bytes(10240))
    assert rich.probe_bytes == 2 * PROBE_MSG_OVERHEAD + 10240
    # enough for a refusal only: say so, so the asker need not wait for its timeout
    (refusal,) = poor.on_probe(A, ask, T0, (PROBE_RESERVE + 3 * PROBE_MSG_OVERHEAD) * 100)
    assert refusal.msg.error == "budget" and refusal.msg.payload == b""
    assert broke.on_probe(A, ask, T0, 0) == []  # not even that: silence
    assert broke.probe_bytes == PROBE_MSG_OVERHEAD  # what arrived is counted all the same


def test_probe_room_is_what_is_left_of_the_budget_less_the_reserve():
    c = core()
    assert c.probe_room() == 0
    c.tick(T0, 10_000_000)  # 100 kB of budget
    assert c.probe_room() == 100_000 - PROBE_RESERVE
    (push,) = c.rtt_sample(A, 5.0, T0)
    assert push.msg.probe_room == 100_000 - PROBE_RESERVE


def test_a_round_holds_its_bytes_so_serving_cannot_spend_them_twice():
    c = core()
    linked(c, A)
    # room for one round and a refusal, not one more reply
    mesh = (ROUND + PROBE_RESERVE + 2 * PROBE_MSG_OVERHEAD + 100) * 100
    assert sends(c.tick(T0, mesh), wire.NetmapProbeMsg)
    (refusal,) = c.on_probe(B, wire.NetmapProbeMsg(1, 1024), T0, mesh)
    assert refusal.msg.error == "budget"


BIG = Coordinate((-999_999.123456, 999_999.654321), 999_999.5, MAX_ERROR)


def test_the_probe_allowance_covers_the_real_frame():
    """The budget counts payload + PROBE_MSG_OVERHEAD per probe message: never less than the
    frame that actually crosses the link (the direct envelope included), even at the extremes."""
    for msg in (
        wire.NetmapProbeMsg(wire.MAX_PROBE_ID - 1, wire.MAX_PROBE_BYTES),
        wire.NetmapProbeReplyMsg(wire.MAX_PROBE_ID - 1, BIG, bytes(wire.MAX_PROBE_BYTES)),
        wire.NetmapProbeReplyMsg(wire.MAX_PROBE_ID - 1, BIG, error="x" * 64),
    ):
        body = wire.encode_message(msg)
        frame = wire.encode_frame(wire.Direct(wire.NETMAP_TOPIC, body))
        payload = len(getattr(msg, "payload", b""))
        assert len(frame) <= payload + PROBE_MSG_OVERHEAD, msg.TAG


# --- the budget under a simulated mesh ------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, probing",
    [
        ({"transfer_every_s": 300.0}, True),  # fetches every 5 min per node, 64 KiB-50 MiB
        ({"transfer_every_s": 60.0}, True),  # busy: most links measured by transfers
        ({"transfer_every_s": 3600.0, "max_transfer": 5 * 2**20}, False),  # quiet: no budget
    ],
)
def test_probes_stay_within_one_percent_of_mesh_bytes_and_avoid_measured_peers(pattern, probing):
    """12 nodes, 6 links each, 40 simulated minutes: keepalives and coordinate pushes, 200 B/s
    of chatter per node, fetches reported with observe_transfer, and the probes. After every
    event every node's probe bytes are within 1 % of its mesh bytes, and no round goes to a
    peer a transfer measured within recent_s (icn_dev.netsim.ProbeSim checks both)."""
    sim = ProbeSim(12, seed=3, **pattern)
    stats = sim.run(2400)
    assert stats.violations == []
    assert max(sim.ratios()) <= 0.01
    # probes happen where traffic pays for them and transfers leave gaps; never otherwise
    assert (stats.succeeded > 0) == probing, stats
