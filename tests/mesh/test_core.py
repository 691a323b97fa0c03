"""The sans-IO mesh core, driven through its public events with ``now`` as a number."""

from __future__ import annotations

import pytest

from icn_node import wire
from icn_node.errors import LocalProtocolError
from icn_node.limits import RateLimiter
from icn_node.mesh.core import CloseLink, Deliver, Dial, Drop, Reject, RttSample, SeenCache, Send
from icn_node.mesh.states import (
    DialEvent,
    DialState,
    LinkEvent,
    LinkState,
    next_dial_state,
    next_link_state,
)

from .helpers import SimNet, chain, identities, make_core

T0 = 1_700_000_000.0


def actions_of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def sent(actions, kind):
    return [a for a in actions if isinstance(a, Send) and isinstance(a.msg, kind)]


def opened_pair(**cfg):
    """Core a with an authenticated link 1 to b's DID, Hello received: ACTIVE."""
    a_id, b_id = identities(2)
    core = make_core(a_id, [b_id.did], **cfg)
    core.start(T0, ("10.0.0.1:7946",))
    out = core.link_opened(1, b_id.did, "out", "10.0.0.2:7946", T0, "10.0.0.2:7946")
    assert isinstance(sent(out, wire.Hello)[0].msg, wire.Hello)
    return core, b_id


# --- state tables -------------------------------------------------------------------------


def test_state_tables_reject_events_without_a_transition():
    assert next_link_state(LinkState.HELLO_WAIT, LinkEvent.HELLO) is LinkState.ACTIVE
    with pytest.raises(LocalProtocolError, match="event hello has no transition in state active"):
        next_link_state(LinkState.ACTIVE, LinkEvent.HELLO)
    assert next_dial_state(DialState.WAITING, DialEvent.DIAL) is DialState.DIALING
    with pytest.raises(LocalProtocolError, match="dial: event dial .* state dialing"):
        next_dial_state(DialState.DIALING, DialEvent.DIAL)


def test_link_opened_twice_is_our_fault():
    core, b = opened_pair()
    with pytest.raises(LocalProtocolError, match="opened twice"):
        core.link_opened(1, b.did, "out", "x:1", T0)


# --- hello and admission ------------------------------------------------------------------


def test_admission_allowlist_self_and_open():
    a, b, c = identities(3)
    core = make_core(a, [b.did])
    assert core.admission(b.did) is None
    assert core.admission(c.did) == "not-member"
    assert core.admission(a.did) == "self"
    assert make_core(a, [], open=True).admission(c.did) is None


def test_hello_with_another_version_closes_with_a_reason():
    core, b = opened_pair()
    out = core.frame_received(1, wire.Hello(99), T0)
    detail = "peer speaks version 99, we speak 1"
    assert actions_of(out, Reject) == [Reject(b.did, "version", detail)]
    (close,) = actions_of(out, CloseLink)
    assert close.reason == "version" and "99" in close.detail
    assert core.peer_count() == 0


def test_gossip_before_hello_is_a_protocol_error():
    core, _ = opened_pair()
    (close,) = core.frame_received(1, wire.Graft("t"), T0)
    assert close == CloseLink(1, "protocol", "expected hello, got graft")
    assert core.frame_received(1, wire.Graft("t"), T0) == []  # a closed link is ignored


def test_second_hello_and_link_messages_after_hello_are_protocol_errors():
    core, _ = opened_pair()
    core.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION), T0)
    (close,) = actions_of(core.frame_received(1, wire.Hello(1), T0), CloseLink)
    assert close.detail == "a second hello"
    core2, _ = opened_pair()
    core2.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION), T0)
    (close,) = actions_of(core2.frame_received(1, wire.Challenge(b"n" * 32), T0), CloseLink)
    assert close.detail == "challenge is not a mesh message"


def test_peer_close_is_logged_reason_and_closes():
    core, b = opened_pair()
    core.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION), T0)
    assert core.peer_count() == 1
    out = core.frame_received(1, wire.Close("shutdown", "bye"), T0)
    assert actions_of(out, CloseLink) == [CloseLink(1, "peer-closed", "shutdown: bye")]
    assert core.peer_count() == 0


def test_hello_timeout_closes_the_link():
    core, _ = opened_pair(handshake_timeout_s=2.0)
    out = core.tick(T0 + 3.0)
    assert CloseLink(1, "hello-timeout", "no hello in time") in out


def test_duplicate_links_resolve_the_same_way_on_both_ends():
    net = SimNet()
    a, b = identities(2)
    members = [a.did, b.did]
    na = net.add(make_core(a, members), "10.0.0.1:1")
    nb = net.add(make_core(b, members), "10.0.0.2:1")
    net.start_all()
    net.connect("10.0.0.1:1", "10.0.0.2:1")
    net.connect("10.0.0.2:1", "10.0.0.1:1")
    net.run()
    assert na.core.peer_count() == nb.core.peer_count() == 1
    (link_a,) = na.core.active.values()
    (link_b,) = nb.core.active.values()
    assert net.ends[link_a][2] == link_b  # both kept the same TCP link
    low = net.by_did(min(a.did, b.did)).core
    assert low.links[low.active[max(a.did, b.did)]].direction == "out"  # the lower DID dialled


# --- membership ---------------------------------------------------------------------------


def test_chain_bootstrap_learns_every_peer_by_exchange():
    net = chain(6)
    net.advance(2.0)
    assert [n.core.peer_count() for n in net.nodes.values()] == [5] * 6


def test_max_peers_caps_dialling():
    net = chain(8, max_peers=3)
    net.advance(5.0)
    for n in net.nodes.values():
        # Dials stop at max_peers; inbound links may add more (up to twice that).
        assert n.core.peer_count() <= 6
    assert all(n.core.peer_count() >= 1 for n in net.nodes.values())


def test_redial_backoff_doubles_with_jitter_up_to_the_cap():
    a, b = identities(2)
    core = make_core(a, [b.did], bootstrap=("10.9.9.9:1",), redial_min_s=1.0, redial_max_s=8.0)
    now = T0
    (dial,) = core.start(now, ("10.0.0.1:1",))
    assert dial == Dial("10.9.9.9:1", None)
    waits = []
    for _ in range(6):
        core.dial_failed("10.9.9.9:1", "refused", now)
        failed_at = now
        while True:  # follow the core's own timer, as the driver does
            now = core.next_timer()
            dials = actions_of(core.tick(now), Dial)
            if dials:
                break
        waits.append(now - failed_at)
    for wait, cap in zip(waits, [1, 2, 4, 8, 8, 8], strict=True):
        assert cap / 2 <= wait <= cap + 1e-9


def test_a_member_lost_in_a_partition_is_redialled_at_least_every_liveness_timeout():
    """Dials refused all through a long partition must not push the next one past the liveness
    timeout, or the mesh would stay split for up to ``redial_max_s`` after the heal (the chaos
    suite's partition with --partition-mode reset: 22 s with the defaults, limit 2 × 10 s)."""
    a, b = identities(2)
    addr = "10.0.0.2:7946"
    core = make_core(
        a, [b.did], bootstrap=(addr,), liveness_timeout_s=10.0, redial_min_s=0.5,
        redial_max_s=30.0,
    )  # fmt: skip
    core.start(T0, ("10.0.0.1:7946",))
    core.link_opened(1, b.did, "out", addr, T0, addr)
    core.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION, (addr,)), T0)
    assert core.peer_count() == 1
    now = T0 + 1
    core.link_closed(1, "eof", now)  # the cut
    waits = []
    for _ in range(10):
        now = core.candidates[addr].next_at
        assert actions_of(core.tick(now), Dial) == [Dial(addr, b.did)]
        core.dial_failed(addr, "refused", now)
        waits.append(core.candidates[addr].next_at - now)
    assert max(waits) <= 10.0
    assert waits[-1] >= 5.0  # still backing off: at least half the cap (equal jitter)


def test_dial_to_ourselves_is_forgotten():
    (a,) = identities(1)
    core = make_core(a, [], bootstrap=("10.0.0.5:1",))
    core.start(T0, ("10.0.0.1:1",))
    core.dial_failed("10.0.0.5:1", "self", T0, a.did)
    assert core.candidates == {}
    assert core.tick(T0 + 100) == []


def test_non_member_bootstrap_is_not_redialled():
    a, b = identities(2)
    core = make_core(a, [], bootstrap=("10.0.0.5:1",))
    core.start(T0, ())
    core.dial_failed("10.0.0.5:1", "not-member", T0, b.did)
    assert actions_of(core.tick(T0 + 1000), Dial) == []


def test_a_silent_peer_is_dropped_and_redialled_later():
    net = chain(3, liveness_timeout_s=3.0, redial_min_s=1.0, redial_max_s=2.0)
    net.advance(1.0)
    assert net.nodes["10.0.0.0:7946"].core.peer_count() == 2
    net.crash("10.0.0.2:7946")
    net.advance(1.0)
    assert net.nodes["10.0.0.0:7946"].core.peer_count() == 1
    net.nodes["10.0.0.2:7946"].up = True  # it comes back (same key, same address)
    net.nodes["10.0.0.2:7946"].core = make_core(
        identities(3)[2], [i.did for i in identities(3)], seed=9
    )
    net.nodes["10.0.0.2:7946"].core.start(net.now, ("10.0.0.2:7946",))
    net.advance(4.0)
    assert [n.core.peer_count() for n in net.nodes.values()] == [2, 2, 2]


def test_liveness_timeout_closes_a_silent_link():
    core, _ = opened_pair(liveness_timeout_s=5.0, heartbeat_interval_s=1.0)
    core.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION), T0)
    assert not actions_of(core.tick(T0 + 4.0), CloseLink)
    core.frame_received(1, wire.Heartbeat(), T0 + 4.0)
    assert not actions_of(core.tick(T0 + 8.0), CloseLink)
    (close,) = actions_of(core.tick(T0 + 9.5), CloseLink)
    assert close.reason == "liveness"
    assert core.peer_count() == 0


def test_keepalive_goes_to_every_active_peer_every_third_of_the_liveness_timeout():
    net = chain(3)  # heartbeat tick 1 s, liveness 10 s: a keepalive every 10/3 s
    net.advance(1.0)
    core = net.nodes["10.0.0.1:7946"].core
    times = []
    t = net.now
    for _ in range(9):  # only this node ticks: stay inside its peers' liveness timeout
        t += 1.0
        hb = sent(core.tick(t), wire.Ping)
        if hb:
            assert sorted(hb[0].links) == sorted(core.active.values())
            times.append(t)
    assert len(times) >= 2
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(10 / 3 <= g <= 10 / 3 + 1.0 for g in gaps), gaps


# --- gossip -------------------------------------------------------------------------------


def subscribed_chain(n=6, topic="t", **cfg):
    net = chain(n, **cfg)
    net.advance(1.0)
    for addr, node in net.nodes.items():
        net.do(addr, node.core.subscribe(topic, net.now))
    net.advance(2.0)
    return net


def test_publish_reaches_every_subscriber_exactly_once():
    net = subscribed_chain()
    first = "10.0.0.0:7946"
    net.do(first, net.nodes[first].core.publish("t", b"hello", net.now))
    for addr, node in net.nodes.items():
        got = [d.payload for d in node.delivered]
        assert got == ([] if addr == first else [b"hello"]), addr


def test_mesh_degree_reaches_target_and_stays_in_bounds():
    net = subscribed_chain(n=12, degree=3, degree_low=2, degree_high=4)
    # Grafts from others may push a mesh past degree_high between heartbeats; each node's own
    # heartbeat brings it back within bounds.
    for addr, node in net.nodes.items():
        out = node.core.tick(net.now + 1.0)
        assert 2 <= len(node.core.mesh["t"]) <= 4
        net.do(addr, out)


def test_relays_drop_forged_replayed_and_stale_gossip():
    net = subscribed_chain(n=3)
    a, b, c = identities(3)
    relay = net.nodes["10.0.0.1:7946"]
    link = relay.core.active[a.did]
    other = relay.core.active[c.did]
    now = net.now
    good = wire.Gossip.sign(a, "t", 1, int(now * 1000), b"ok")
    forged = wire.Gossip(**{**good.to_fields(), "payload": b"evil"})
    stale = wire.Gossip.sign(a, "t", 2, int((now - 61) * 1000), b"old")
    future = wire.Gossip.sign(a, "t", 3, int((now + 61) * 1000), b"new")
    # The forgery arrives first, over c's link: it does not make the genuine message a duplicate.
    out = relay.core.frame_received(other, forged, now)
    assert [d.reason for d in actions_of(out, Drop)] == ["bad-signature"]
    # Honest relays verify before they forward, so the link that carried it is the forger's.
    (close,) = actions_of(out, CloseLink)
    assert close.link == other and close.reason == "bad-signature"
    net.do("10.0.0.1:7946", out)
    for msg in (good, good, stale, future):
        net.do("10.0.0.1:7946", relay.core.frame_received(link, msg, now))
    reasons = [d.reason for d in relay.drops]
    assert reasons.count("bad-signature") == 1
    assert reasons.count("duplicate") >= 1
    assert reasons.count("replay-window") == 2
    assert [d.payload for d in relay.delivered] == [b"ok"]
    assert relay.core.peer_count() == 1  # replays and stale copies cost nobody their link
    assert c.did not in relay.core.active and a.did in relay.core.active


def test_messages_over_an_origins_rate_on_a_link_are_dropped_before_verification():
    net = subscribed_chain(n=3)
    a, b, c = identities(3)
    relay = net.nodes["10.0.0.1:7946"]
    relay.core.gossip_limit = RateLimiter(10.0, 20.0)
    relay.core.direct_limit = RateLimiter(10.0, 20.0)
    link = relay.core.active[a.did]
    other = relay.core.active[c.did]
    now = net.now
    msgs = [wire.Gossip.sign(a, "t", i, int(now * 1000), b"%d" % i) for i in range(25)]
    for m in msgs:
        net.do("10.0.0.1:7946", relay.core.frame_received(link, m, now))
    assert len(relay.delivered) == 20
    assert [d.reason for d in relay.drops] == ["rate-limit"] * 5
    # Not verified, so not seen: the same message over another link is taken...
    net.do("10.0.0.1:7946", relay.core.frame_received(other, msgs[-1], now))
    assert len(relay.delivered) == 21
    # ...and the budget refills with time. A forgery's budget is its own link's, not a's.
    net.do("10.0.0.1:7946", relay.core.frame_received(link, msgs[-2], now + 0.5))
    assert len(relay.delivered) == 22
    # Direct frames from the link's peer have a budget of their own.
    for _ in range(25):
        net.do("10.0.0.1:7946", relay.core.frame_received(link, wire.Direct("t", b"d"), now))
    assert [d.reason for d in relay.drops].count("rate-limit") == 5 + 5


def test_gossip_from_a_non_member_origin_is_dropped():
    net = subscribed_chain(n=2)
    outsider = identities(5)[4]
    relay = net.nodes["10.0.0.1:7946"]
    link = next(iter(relay.core.active.values()))
    msg = wire.Gossip.sign(outsider, "t", 1, int(net.now * 1000), b"x")
    out = relay.core.frame_received(link, msg, net.now)
    assert actions_of(out, Drop)[0].reason == "not-member"


def test_unsubscribed_topic_is_not_delivered():
    net = subscribed_chain(n=2)
    a = identities(1)[0]
    relay = net.nodes["10.0.0.1:7946"]
    link = relay.core.active[a.did]
    msg = wire.Gossip.sign(a, "other", 1, int(net.now * 1000), b"x")
    out = relay.core.frame_received(link, msg, net.now)
    assert actions_of(out, Drop)[0].reason == "unsubscribed"
    assert not actions_of(out, Deliver)


def test_direct_rides_the_link_unsigned_when_there_is_one():
    net = chain(3)
    net.advance(1.0)
    a, _b, c = identities(3)
    core = net.nodes["10.0.0.0:7946"].core
    (send,) = core.send_direct(c.did, "offers", b"x", net.now)
    assert isinstance(send.msg, wire.Direct)
    net.do("10.0.0.0:7946", [send])
    (d,) = net.nodes["10.0.0.2:7946"].delivered
    assert (d.origin, d.payload, d.direct) == (a.did, b"x", True)


def test_direct_without_a_link_is_signed_and_routed_through_the_mesh():
    net = chain(3, max_peers=1)
    net.advance(1.0)
    a, _b, c = identities(3)
    core = net.nodes["10.0.0.0:7946"].core
    assert c.did not in core.active
    out = core.send_direct(c.did, "offers", b"x", net.now)
    assert isinstance(out[0].msg, wire.Gossip) and out[0].msg.to == c.did
    net.do("10.0.0.0:7946", out)
    (d,) = net.nodes["10.0.0.2:7946"].delivered
    assert (d.origin, d.payload, d.direct) == (a.did, b"x", True)
    assert net.nodes["10.0.0.1:7946"].delivered == []  # the relay only relays


def test_graft_for_a_topic_we_do_not_follow_is_answered_with_prune():
    core, b = opened_pair()
    core.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION), T0)
    (reply,) = core.frame_received(1, wire.Graft("x"), T0)
    assert reply.msg == wire.Prune("x")


def test_unsubscribe_prunes_and_announces():
    net = subscribed_chain(n=3)
    core = net.nodes["10.0.0.0:7946"].core
    out = core.unsubscribe("t", net.now)
    assert sent(out, wire.Prune) and sent(out, wire.Subscribe)
    net.do("10.0.0.0:7946", out)
    for addr in ("10.0.0.1:7946", "10.0.0.2:7946"):
        assert core.did not in net.nodes[addr].core.mesh["t"]


def test_peers_view_reports_direction_state_and_counts():
    net = chain(2)
    net.advance(3.0)
    rows = net.nodes["10.0.0.1:7946"].core.peers(net.now)
    (row,) = rows
    assert row["direction"] == "out" and row["state"] == "active"
    assert row["messages_in"] > 0 and row["messages_out"] > 0
    assert row["connected_s"] == pytest.approx(3.0)


def test_shutdown_says_goodbye_on_every_link():
    net = chain(3)
    net.advance(1.0)
    core = net.nodes["10.0.0.1:7946"].core
    closes = actions_of(core.shutdown(net.now), CloseLink)
    assert {c.reason for c in closes} == {"shutdown"} and len(closes) == 2
    assert not actions_of(core.tick(net.now + 100), Dial)


def test_seen_cache_expires_in_order_and_is_bounded():
    cache = SeenCache(ttl=10, max_entries=3)
    for i in range(4):
        assert cache.add(bytes([i]), float(i))
    assert len(cache) == 3 and bytes([0]) not in cache
    assert not cache.add(bytes([3]), 5.0)
    cache.expire(12.5)
    assert list(cache._expiry) == [bytes([3])]


# --- RTT --------------------------------------------------------------------------------------


def test_ping_on_activation_and_pong_give_a_smoothed_rtt():
    core, b = opened_pair()
    acts = core.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION), T0)
    (ping,) = sent(acts, wire.Ping)  # a first sample without waiting for the keepalive
    assert core.rtt_ms() == {}
    (sample,) = core.frame_received(1, wire.Pong(ping.msg.nonce), T0 + 0.020)
    assert sample == RttSample(b.did, pytest.approx(20.0))  # each sample, for the netmap
    assert core.rtt_ms() == {b.did: pytest.approx(20.0)}
    # a late or unsolicited pong is no sample
    assert core.frame_received(1, wire.Pong(ping.msg.nonce), T0 + 5.0) == []
    assert core.frame_received(1, wire.Pong(999), T0 + 5.0) == []
    assert core.rtt_ms() == {b.did: pytest.approx(20.0)}
    # the next keepalive ping; a 60 ms answer moves the average a quarter of the way
    (ping2,) = sent(core.tick(T0 + 10 / 3 + 0.1), wire.Ping)
    core.frame_received(1, wire.Pong(ping2.msg.nonce), T0 + 10 / 3 + 0.16)
    assert core.rtt_ms()[b.did] == pytest.approx(0.75 * 20.0 + 0.25 * 60.0)
    assert core.peers(T0 + 4)[0]["rtt_ms"] == pytest.approx(30.0)


def test_a_ping_is_answered_with_its_nonce():
    core, _ = opened_pair()
    core.frame_received(1, wire.Hello(wire.PROTOCOL_VERSION), T0)
    (pong,) = sent(core.frame_received(1, wire.Ping(42), T0 + 1), wire.Pong)
    assert pong.msg.nonce == 42 and pong.links == (1,)
