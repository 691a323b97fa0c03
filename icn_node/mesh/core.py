"""The sans-IO mesh core: membership, links, and gossip decisions. No sockets, no clock.

Events go in as method calls, each taking ``now`` (seconds since the Unix epoch, supplied by
the driver) and returning a list of actions for the driver to carry out:

=========================  ============================================================
event                      typical actions
=========================  ============================================================
``start(now, listen)``     :class:`Dial` the bootstrap addresses
``link_opened(...)``       :class:`Send` our Hello
``frame_received(...)``    :class:`Send` (forward, reply), :class:`Deliver`, :class:`Drop`,
                           :class:`CloseLink`, :class:`PeerUp`, :class:`RttSample` (a pong)
``link_closed(...)``       :class:`PeerDown`
``dial_failed(...)``       (backoff only)
``tick(now)``              heartbeats, liveness :class:`CloseLink`, mesh graft/prune,
                           peer exchange, redial :class:`Dial`
``publish`` / ``send_direct`` / ``subscribe`` / ``unsubscribe``  :class:`Send`
=========================  ============================================================

The driver authenticates a link (TLS, challenge, admission through :meth:`MeshCore.admission`)
before :meth:`MeshCore.link_opened`; everything after that — Hello, duplicate links, liveness,
subscriptions, the per-topic mesh, signature and replay checks, dedup, forwarding and peer
exchange — is decided here. Randomness comes from the injected ``random.Random``.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import LocalProtocolError
from ..identity import NodeIdentity
from ..limits import RateLimiter
from ..wire import (
    PROTOCOL_VERSION,
    Close,
    Direct,
    Gossip,
    Graft,
    Heartbeat,
    Hello,
    Message,
    Peers,
    Ping,
    Pong,
    Prune,
    Subscribe,
    check_topic,
)
from .states import (
    DialEvent,
    DialState,
    LinkEvent,
    LinkState,
    next_dial_state,
    next_link_state,
)

if TYPE_CHECKING:
    from ..config import MeshSection

PEX_EVERY_HEARTBEATS = 10
PEX_MAX_PEERS = 64
MAX_CANDIDATES = 1024
SEEN_MAX_ENTRIES = 100_000
MAX_ORIGIN_BUCKETS = 65_536  # (link, origin) rate buckets kept (least recently used go first)
FEATURES = ("gossip-v1", "pex-v1", "direct-v1")


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreConfig:
    """The knobs the core needs (a subset of ``[mesh]``; build with :meth:`from_section`)."""

    members: frozenset[str] = frozenset()
    open: bool = False
    bootstrap: tuple[str, ...] = ()
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    max_peers: int = 32
    heartbeat_interval_s: float = 1.0
    liveness_timeout_s: float = 10.0
    handshake_timeout_s: float = 5.0
    redial_min_s: float = 0.5
    redial_max_s: float = 30.0
    replay_window_s: float = 60.0
    max_gossip_per_origin_s: float = 200.0
    max_direct_per_peer_s: float = 2000.0
    region: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("need 1 <= degree_low <= degree <= degree_high")

    @classmethod
    def from_section(cls, mesh: MeshSection, region: str = "") -> CoreConfig:
        return cls(
            members=frozenset(mesh.members),
            open=mesh.open,
            bootstrap=tuple(mesh.bootstrap),
            degree=mesh.degree,
            degree_low=mesh.degree_low,
            degree_high=mesh.degree_high,
            max_peers=getattr(mesh, "max_peers", 32),
            heartbeat_interval_s=mesh.heartbeat_interval_s,
            liveness_timeout_s=mesh.liveness_timeout_s,
            handshake_timeout_s=mesh.handshake_timeout_s,
            redial_min_s=mesh.redial_min_s,
            redial_max_s=mesh.redial_max_s,
            replay_window_s=mesh.replay_window_s,
            max_gossip_per_origin_s=mesh.max_gossip_per_origin_s,
            max_direct_per_peer_s=mesh.max_direct_per_peer_s,
            region=region,
        )


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` on each of ``links`` (encode once, enqueue on each)."""

    links: tuple[int, ...]
    msg: Message


@dataclass(frozen=True, slots=True)
class Dial:
    address: str
    did: str | None  # the DID the listener must prove, when known


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Send a Close frame with ``reason`` (best effort), then close the link."""

    link: int
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    origin: str
    payload: bytes
    seq: int
    ts_ms: int
    direct: bool
    msg_id: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class Drop:
    """A gossip or direct message was dropped (counted by reason, logged at debug)."""

    reason: str
    link: int | None
    topic: str = ""
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Reject:
    """A peer was refused after authentication (e.g. protocol version); counted by reason."""

    did: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PeerUp:
    did: str
    link: int
    address: str
    direction: str


@dataclass(frozen=True, slots=True)
class PeerDown:
    did: str
    link: int
    reason: str


@dataclass(frozen=True, slots=True)
class RttSample:
    """One round-trip time measured to a linked peer (a ping and its pong; not smoothed)."""

    did: str
    rtt_ms: float


Action = Send | Dial | CloseLink | Deliver | Drop | Reject | PeerUp | PeerDown | RttSample


# --- state --------------------------------------------------------------------------------


@dataclass(slots=True)
class Link:
    id: int
    did: str
    direction: str  # "in" (they dialled) or "out" (we dialled)
    address: str  # the remote address as seen on the socket (or dialled)
    opened_at: float
    state: LinkState = LinkState.HELLO_WAIT
    last_recv: float = 0.0
    active_since: float | None = None
    msgs_in: int = 0
    msgs_out: int = 0
    hello: Hello | None = None
    topics: set[str] = field(default_factory=set)
    dial_address: str | None = None
    ping_nonce: int | None = None  # the ping in flight, if any
    ping_sent_at: float = 0.0
    rtt_ms: float | None = None  # smoothed round-trip time (EWMA, 1/4 weight per sample)

    def advance(self, event: LinkEvent) -> None:
        self.state = next_link_state(self.state, event)


@dataclass(slots=True)
class Candidate:
    address: str
    did: str | None
    source: str  # bootstrap, pex, hello
    state: DialState = DialState.WAITING
    next_at: float = 0.0
    backoff: float = 0.0

    def advance(self, event: DialEvent) -> None:
        self.state = next_dial_state(self.state, event)


class SeenCache:
    """Message ids seen recently, each kept ``ttl`` seconds; bounded, oldest evicted first."""

    def __init__(self, ttl: float, max_entries: int = SEEN_MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, msg_id: bytes, now: float) -> bool:
        """Record ``msg_id``; False if it was already there."""
        if msg_id in self._expiry:
            return False
        self._expiry[msg_id] = now + self.ttl
        while len(self._expiry) > self.max_entries:
            self._expiry.popitem(last=False)
        return True

    def expire(self, now: float) -> None:
        # Insertion order is expiry order, because ttl is fixed and now never goes back.
        while self._expiry:
            msg_id, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[msg_id]


@dataclass(slots=True)
class TopicStats:
    received: int = 0  # gossip copies that arrived (duplicates included)
    duplicates: int = 0
    delivered: int = 0


def _unspecified_host(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    return host in ("0.0.0.0", "::", "")


def _with_host(address: str, host: str) -> str:
    port = address.rpartition(":")[2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the core -----------------------------------------------------------------------------


class MeshCore:
    def __init__(
        self,
        identity: NodeIdentity,
        config: CoreConfig,
        rng: random.Random | None = None,
    ) -> None:
        self.identity = identity
        self.did = identity.did
        self.config = config
        self.rng = rng or random.Random()
        self.links: dict[int, Link] = {}
        self.active: dict[str, int] = {}  # DID → its one active link
        self.candidates: dict[str, Candidate] = {}  # address → candidate
        self.subscriptions: set[str] = set()
        self.mesh: dict[str, set[str]] = {}  # topic → DIDs in our mesh for it
        self.seen = SeenCache(2 * config.replay_window_s + 1.0)
        # Gossip is checked before its signature is: a flood costs a dictionary lookup, not a
        # verify, and goes no further than the first hop. Keyed by (link, claimed origin, to), so
        # a forger can only spend the budget of what reaches us over its own link. Direct frames
        # (unsigned, never forwarded, cheaper) have their own, larger budget per link.
        rate = config.max_gossip_per_origin_s
        self.gossip_limit = RateLimiter(rate, 2 * rate, max_origins=MAX_ORIGIN_BUCKETS)
        rate = config.max_direct_per_peer_s
        self.direct_limit = RateLimiter(rate, 2 * rate, max_origins=MAX_ORIGIN_BUCKETS)
        self.topic_stats: dict[str, TopicStats] = {}
        self.listen: tuple[str, ...] = ()
        self._self_addresses: set[str] = set()
        self._seq = 0
        self._next_heartbeat = 0.0
        self._heartbeats = 0
        self._last_keepalive = -float("inf")
        self._ping_seq = 0
        self._last_tick = float("-inf")
        self._started = False

    # --- admission -----------------------------------------------------------------------

    def admission(self, did: str) -> str | None:
        """None if ``did`` may link with us, else the refusal reason."""
        if did == self.did:
            return "self"
        if not (self.config.open or did in self.config.members):
            return "not-member"
        if did in self.active:
            return None  # a duplicate link is resolved after Hello
        if len(self.links) >= 2 * self.config.max_peers:
            return "full"
        return None

    def admitted(self, did: str) -> bool:
        return did != self.did and (self.config.open or did in self.config.members)

    # --- life ----------------------------------------------------------------------------

    def start(self, now: float, listen: tuple[str, ...] = ()) -> list[Action]:
        self.listen = tuple(listen)
        self._self_addresses.update(self.listen)
        # Seed the sequence from the clock so a restarted origin never reuses a (seq, ts).
        self._seq = int(now * 1000)
        self._started = True
        self._last_tick = now
        self._next_heartbeat = now + self.config.heartbeat_interval_s
        for address in self.config.bootstrap:
            if address not in self._self_addresses:
                self.candidates.setdefault(address, Candidate(address, None, "bootstrap"))
        return self._dial_due(now)

    def next_timer(self) -> float:
        """When :meth:`tick` next has work: the next heartbeat or a redial coming due.

        A candidate that was already due at the last tick but could not be dialled (too many
        peers, a link to its DID pending) waits for the next heartbeat or event instead.
        """
        due = [self._next_heartbeat]
        for c in self.candidates.values():
            if c.state is DialState.WAITING and c.next_at > self._last_tick and self._dialable(c):
                due.append(c.next_at)
        return min(due)

    def tick(self, now: float) -> list[Action]:
        self._last_tick = now
        actions: list[Action] = []
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_interval_s
            self._heartbeats += 1
            actions += self._heartbeat(now)
        actions += self._dial_due(now)
        return actions

    # --- links ---------------------------------------------------------------------------

    def link_opened(
        self,
        link_id: int,
        did: str,
        direction: str,
        address: str,
        now: float,
        dial_address: str | None = None,
    ) -> list[Action]:
        """An authenticated, admitted link is up; we send our Hello and await theirs."""
        if link_id in self.links:
            raise LocalProtocolError(f"link {link_id} opened twice")
        if direction not in ("in", "out"):
            raise LocalProtocolError(f"direction must be in or out, got {direction!r}")
        link = Link(link_id, did, direction, address, now, last_recv=now)
        link.dial_address = dial_address
        self.links[link_id] = link
        hello = Hello(PROTOCOL_VERSION, self.listen, self.config.region, FEATURES)
        return [self._send((link_id,), hello)]

    def link_closed(self, link_id: int, reason: str, now: float) -> list[Action]:
        """The driver closed the link (on our request or because the stream ended)."""
        link = self.links.pop(link_id, None)
        if link is None:
            return []
        actions = self._deactivate(link, reason, now)
        if link.state is not LinkState.CLOSED:
            link.advance(LinkEvent.CLOSE)
        if link.dial_address is not None and link.did not in self.active:
            c = self.candidates.get(link.dial_address)
            if c is not None and c.state is DialState.DIALING:
                self._backoff(c, now, DialEvent.DIAL_FAILED)
        return actions

    def _close(self, link: Link, reason: str, detail: str, now: float) -> list[Action]:
        """Ask the driver to close ``link``; it stops being anyone's peer right away."""
        link.advance(LinkEvent.CLOSE)
        return [*self._deactivate(link, reason, now), CloseLink(link.id, reason, detail)]

    def _deactivate(self, link: Link, reason: str, now: float) -> list[Action]:
        if self.active.get(link.did) != link.id:
            return []
        del self.active[link.did]
        for peers in self.mesh.values():
            peers.discard(link.did)
        for c in self._candidates_of(link.did):
            self._backoff(c, now, DialEvent.LINK_DOWN)
        return [PeerDown(link.did, link.id, reason)]

    def dial_failed(
        self, address: str, reason: str, now: float, did: str | None = None
    ) -> list[Action]:
        """A dial did not produce a link (refused, TLS or auth failure, wrong DID...)."""
        c = self.candidates.get(address)
        if c is None:
            return []
        if did == self.did or reason == "self":
            self._self_addresses.add(address)
            del self.candidates[address]
            return []
        if did is not None and c.did is None:
            c.did = did
        if c.state is DialState.DIALING:
            self._backoff(c, now, DialEvent.DIAL_FAILED)
        return []

    def _backoff(self, c: Candidate, now: float, event: DialEvent) -> None:
        c.advance(event)
        cfg = self.config
        cap = cfg.redial_max_s
        if c.did is not None and self.admitted(c.did):
            # A member is tried again at least every liveness timeout, so that after a
            # partition heals the mesh is whole within about twice that, however long the
            # dials were refused (docs/RELIABILITY.md, "Chaos").
            cap = min(cap, cfg.liveness_timeout_s)
        c.backoff = cfg.redial_min_s if c.backoff <= 0 else min(c.backoff * 2, cap)
        # "Equal jitter": somewhere between half the backoff and all of it.
        c.next_at = now + c.backoff * self.rng.uniform(0.5, 1.0)

    def _candidates_of(self, did: str) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.did == did]

    def _dialable(self, c: Candidate) -> bool:
        if c.did is None:
            return True
        return c.did not in self.active and self.admitted(c.did)

    def _dial_due(self, now: float) -> list[Action]:
        if not self._started:
            return []
        actions: list[Action] = []
        busy = len(self.active) + sum(
            1 for c in self.candidates.values() if c.state is DialState.DIALING
        )
        dialing_dids = {
            c.did for c in self.candidates.values() if c.state is DialState.DIALING and c.did
        }
        pending = {link.did for link in self.links.values()}
        for c in list(self.candidates.values()):
            if busy >= self.config.max_peers:
                break
            if c.state is not DialState.WAITING or c.next_at > now or not self._dialable(c):
                continue
            if c.did is not None and (c.did in dialing_dids or c.did in pending):
                continue
            c.advance(DialEvent.DIAL)
            busy += 1
            if c.did:
                dialing_dids.add(c.did)
            actions.append(Dial(c.address, c.did))
        return actions

    # --- frames --------------------------------------------------------------------------

    def frame_received(self, link_id: int, msg: Message, now: float) -> list[Action]:
        link = self.links.get(link_id)
        if link is None or link.state is LinkState.CLOSED:
            return []
        link.last_recv = now
        link.msgs_in += 1
        if isinstance(msg, Close):
            return self._close(link, "peer-closed", f"{msg.reason}: {msg.detail}", now)
        if link.state is LinkState.HELLO_WAIT:
            if not isinstance(msg, Hello):
                return self._close(link, "protocol", f"expected hello, got {msg.TAG}", now)
            return self._on_hello(link, msg, now)
        if isinstance(msg, Hello):
            return self._close(link, "protocol", "a second hello", now)
        link.advance(LinkEvent.FRAME)
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            return self._close(link, "protocol", f"{msg.TAG} is not a mesh message", now)
        return handler(self, link, msg, now)

    def _on_hello(self, link: Link, hello: Hello, now: float) -> list[Action]:
        if hello.version != PROTOCOL_VERSION:
            detail = f"peer speaks version {hello.version}, we speak {PROTOCOL_VERSION}"
            return [Reject(link.did, "version", detail), *self._close(link, "version", detail, now)]
        link.advance(LinkEvent.HELLO)
        link.hello = hello
        link.active_since = now
        actions: list[Action] = []
        old_id = self.active.get(link.did)
        if old_id is not None:
            old = self.links[old_id]
            keep_new = self._prefer(link, old)
            if not keep_new:
                link.advance(LinkEvent.CLOSE)
                return [CloseLink(link.id, "duplicate-link", "another link to this DID")]
            # Hand the DID over to the new link without a PeerDown/PeerUp in between.
            del self.active[link.did]
            old.advance(LinkEvent.CLOSE)
            actions.append(CloseLink(old.id, "duplicate-link", "another link to this DID"))
        self.active[link.did] = link.id
        # Remember where to redial this peer, and that it is connected.
        for address in self._advertised(link):
            c = self.candidates.get(address)
            if c is None and len(self.candidates) < MAX_CANDIDATES:
                c = self.candidates[address] = Candidate(address, link.did, "hello")
            if c is not None:
                c.did = link.did
        if link.dial_address and link.dial_address in self.candidates:
            self.candidates[link.dial_address].did = link.did
        for c in self._candidates_of(link.did):
            c.advance(DialEvent.LINK_UP)
            c.backoff = 0.0
        if old_id is None:
            actions.append(PeerUp(link.did, link.id, link.address, link.direction))
        if self.subscriptions:
            actions.append(self._send((link.id,), Subscribe(tuple(sorted(self.subscriptions)))))
        actions += self._pex_to(link)
        actions.append(self._ping((link.id,), now))  # a first RTT sample without waiting
        return actions

    def _prefer(self, new: Link, old: Link) -> bool:
        """True to keep ``new`` over ``old`` (both to the same DID); both ends choose alike."""
        if new.direction == old.direction:
            return True  # a reconnect: the newer link wins
        low_dials = "out" if self.did < new.did else "in"
        return new.direction == low_dials

    def _advertised(self, link: Link) -> list[str]:
        out = []
        remote_host = link.address.rpartition(":")[0].strip("[]")
        for address in link.hello.listen if link.hello else ():
            if _unspecified_host(address) and remote_host:
                address = _with_host(address, remote_host)
            out.append(address)
        return out

    def _on_heartbeat(self, link: Link, msg: Heartbeat, now: float) -> list[Action]:
        return []

    def _ping(self, link_ids: tuple[int, ...], now: float) -> Send:
        """The keepalive: one ping (one nonce) to each of ``link_ids``; pongs give the RTT."""
        self._ping_seq += 1
        for lid in link_ids:
            link = self.links[lid]
            link.ping_nonce, link.ping_sent_at = self._ping_seq, now
        return self._send(link_ids, Ping(self._ping_seq))

    def _on_ping(self, link: Link, msg: Ping, now: float) -> list[Action]:
        return [self._send((link.id,), Pong(msg.nonce))]

    def _on_pong(self, link: Link, msg: Pong, now: float) -> list[Action]:
        if msg.nonce != link.ping_nonce:
            return []  # late or unsolicited: no sample
        link.ping_nonce = None
        sample = max(0.0, (now - link.ping_sent_at) * 1000.0)
        link.rtt_ms = sample if link.rtt_ms is None else 0.75 * link.rtt_ms + 0.25 * sample
        return [RttSample(link.did, sample)]

    def rtt_ms(self) -> dict[str, float]:
        """Smoothed RTT in milliseconds to each active peer measured so far."""
        out = {}
        for lid in self.active.values():
            link = self.links[lid]
            if link.rtt_ms is not None:
                out[link.did] = round(link.rtt_ms, 3)
        return out

    def _on_peers(self, link: Link, msg: Peers, now: float) -> list[Action]:
        for did, address in msg.peers:
            if not self.admitted(did) or address in self._self_addresses:
                continue
            c = self.candidates.get(address)
            if c is None:
                if len(self.candidates) >= MAX_CANDIDATES:
                    break
                c = self.candidates[address] = Candidate(address, did, "pex")
                if did in self.active:
                    c.advance(DialEvent.LINK_UP)
            elif c.did is None:
                c.did = did
        return self._dial_due(now)

    def _on_subscribe(self, link: Link, msg: Subscribe, now: float) -> list[Action]:
        if msg.on:
            link.topics.update(msg.topics)
        else:
            link.topics.difference_update(msg.topics)
            for t in msg.topics:
                self.mesh.get(t, set()).discard(link.did)
        return []

    def _on_graft(self, link: Link, msg: Graft, now: float) -> list[Action]:
        if msg.topic not in self.subscriptions:
            return [self._send((link.id,), Prune(msg.topic))]
        link.topics.add(msg.topic)
        self.mesh.setdefault(msg.topic, set()).add(link.did)
        return []

    def _on_prune(self, link: Link, msg: Prune, now: float) -> list[Action]:
        self.mesh.get(msg.topic, set()).discard(link.did)
        return []

    def _on_direct(self, link: Link, msg: Direct, now: float) -> list[Action]:
        if not self.direct_limit.allow(link.id, now):
            return [Drop("rate-limit", link.id, msg.topic, link.did)]
        ts_ms = int(now * 1000)
        delivery = Delivery(msg.topic, link.did, msg.payload, 0, ts_ms, True, b"")
        return [Deliver(delivery)]

    def _on_gossip(self, link: Link, msg: Gossip, now: float) -> list[Action]:
        stats = self.topic_stats.get(msg.topic)
        if stats is not None:
            stats.received += 1
        msg_id = msg.msg_id
        if msg_id in self.seen:
            if stats is not None:
                stats.duplicates += 1
            return [Drop("duplicate", link.id, msg.topic, msg.origin)]
        if abs(now - msg.ts_ms / 1000) > self.config.replay_window_s:
            return [Drop("replay-window", link.id, msg.topic, msg.origin)]
        if msg.origin == self.did or not self.admitted(msg.origin):
            reason = "own" if msg.origin == self.did else "not-member"
            return [Drop(reason, link.id, msg.topic, msg.origin)]
        # A message routed to one member has its own bucket, so answers a flood provokes (offers
        # to the flooder) do not spend the origin's budget for everything else.
        if not self.gossip_limit.allow((link.id, msg.origin, msg.to), now):
            return [Drop("rate-limit", link.id, msg.topic, msg.origin)]
        if not msg.verify():
            # Every node verifies before it forwards, so a bad signature on a link is the
            # peer's own doing (a forger, or corruption TLS would have caught): drop the link.
            detail = f"gossip from {msg.origin[:64]} with a bad signature"
            return [
                Drop("bad-signature", link.id, msg.topic, msg.origin),
                *self._close(link, "bad-signature", detail, now),
            ]
        self.seen.add(msg_id, now)
        return self._route(msg, msg_id, exclude=link.did)

    def _route(self, msg: Gossip, msg_id: bytes, exclude: str | None) -> list[Action]:
        """Deliver locally and/or forward a verified, new gossip message."""
        actions: list[Action] = []
        skip = {exclude, msg.origin}
        if msg.to:
            if msg.to == self.did:
                actions.append(Deliver(self._delivery(msg, msg_id, direct=True)))
                return actions
            target = self.active.get(msg.to)
            links: tuple[int, ...]
            if target is not None:
                links = (target,)
            else:
                others = [d for d in self.active if d not in skip]
                picks = self.rng.sample(others, min(self.config.degree, len(others)))
                links = tuple(self.active[d] for d in picks)
            if links:
                actions.append(self._send(links, msg))
            return actions
        if msg.topic in self.subscriptions:
            self.topic_stats[msg.topic].delivered += 1
            actions.append(Deliver(self._delivery(msg, msg_id, direct=False)))
            links = tuple(self.active[d] for d in self.mesh.get(msg.topic, ()) if d not in skip)
            if links:
                actions.append(self._send(links, msg))
        else:
            actions.append(Drop("unsubscribed", None, msg.topic, msg.origin))
        return actions

    @staticmethod
    def _delivery(msg: Gossip, msg_id: bytes, direct: bool) -> Delivery:
        return Delivery(msg.topic, msg.origin, msg.payload, msg.seq, msg.ts_ms, direct, msg_id)

    _HANDLERS: dict[type[Message], Callable[[MeshCore, Link, Any, float], list[Action]]] = {
        Heartbeat: _on_heartbeat,
        Ping: _on_ping,
        Pong: _on_pong,
        Peers: _on_peers,
        Subscribe: _on_subscribe,
        Graft: _on_graft,
        Prune: _on_prune,
        Direct: _on_direct,
        Gossip: _on_gossip,
    }

    # --- local API -----------------------------------------------------------------------

    def subscribe(self, topic: str, now: float) -> list[Action]:
        check_topic(topic)
        if topic in self.subscriptions:
            return []
        self.subscriptions.add(topic)
        self.topic_stats.setdefault(topic, TopicStats())
        actions: list[Action] = []
        everyone = tuple(self.active.values())
        if everyone:
            actions.append(self._send(everyone, Subscribe((topic,))))
        return actions + self._maintain(topic)

    def unsubscribe(self, topic: str, now: float) -> list[Action]:
        if topic not in self.subscriptions:
            return []
        self.subscriptions.discard(topic)
        actions: list[Action] = []
        grafted = tuple(self.active[d] for d in self.mesh.pop(topic, ()) if d in self.active)
        if grafted:
            actions.append(self._send(grafted, Prune(topic)))
        everyone = tuple(self.active.values())
        if everyone:
            actions.append(self._send(everyone, Subscribe((topic,), on=False)))
        return actions

    def publish(self, topic: str, payload: bytes, now: float, to: str = "") -> list[Action]:
        """Sign and flood ``payload`` to every connected subscriber of ``topic``."""
        check_topic(topic)
        self._seq += 1
        msg = Gossip.sign(self.identity, topic, self._seq, int(now * 1000), payload, to)
        self.seen.add(msg.msg_id, now)
        if to:
            target = self.active.get(to)
            links = (target,) if target is not None else tuple(self.active.values())
        else:
            links = tuple(
                lid for did, lid in self.active.items() if topic in self.links[lid].topics
            )
        return [self._send(links, msg)] if links else []

    def send_direct(self, did: str, topic: str, payload: bytes, now: float) -> list[Action]:
        """To one DID: unsigned on our link to it, else signed and routed through the mesh."""
        check_topic(topic)
        link_id = self.active.get(did)
        if link_id is not None:
            return [self._send((link_id,), Direct(topic, payload))]
        return self.publish(topic, payload, now, to=did)

    def shutdown(self, now: float) -> list[Action]:
        """Close every link with a goodbye and stop dialling."""
        self._started = False
        actions: list[Action] = []
        for link in list(self.links.values()):
            if link.state is not LinkState.CLOSED:
                actions += self._close(link, "shutdown", "node stopping", now)
        return actions

    # --- heartbeat -----------------------------------------------------------------------

    def _heartbeat(self, now: float) -> list[Action]:
        cfg = self.config
        actions: list[Action] = []
        for link in list(self.links.values()):
            if link.state is LinkState.CLOSED:
                continue
            waited = now - link.opened_at
            if link.state is LinkState.HELLO_WAIT and waited > cfg.handshake_timeout_s:
                actions += self._close(link, "hello-timeout", "no hello in time", now)
            elif now - link.last_recv > cfg.liveness_timeout_s:
                silent = round(now - link.last_recv, 1)
                actions += self._close(link, "liveness", f"silent for {silent} s", now)
        # Keepalives every third of the liveness timeout (not every tick): any frame counts as
        # liveness at the receiver, and an idle full mesh of n nodes would otherwise cost
        # n*(n-1) frames a second.
        keepalive_s = max(cfg.heartbeat_interval_s, cfg.liveness_timeout_s / 3)
        if self.active and now - self._last_keepalive >= keepalive_s:
            self._last_keepalive = now
            actions.append(self._ping(tuple(self.active.values()), now))
        for topic in sorted(self.subscriptions):
            actions += self._maintain(topic)
        if self._heartbeats % PEX_EVERY_HEARTBEATS == 0:
            for lid in list(self.active.values()):
                actions += self._pex_to(self.links[lid])
        self.seen.expire(now)
        return actions

    def _maintain(self, topic: str) -> list[Action]:
        """Keep the topic's mesh between degree_low and degree_high (aim: degree)."""
        cfg = self.config
        eligible = {d for d, lid in self.active.items() if topic in self.links[lid].topics}
        peers = self.mesh.setdefault(topic, set())
        peers &= eligible
        actions: list[Action] = []
        if len(peers) < cfg.degree_low:
            spare = sorted(eligible - peers)
            add = self.rng.sample(spare, min(cfg.degree - len(peers), len(spare)))
            if add:
                peers.update(add)
                actions.append(self._send(tuple(self.active[d] for d in add), Graft(topic)))
        elif len(peers) > cfg.degree_high:
            drop = self.rng.sample(sorted(peers), len(peers) - cfg.degree)
            peers.difference_update(drop)
            actions.append(self._send(tuple(self.active[d] for d in drop), Prune(topic)))
        return actions

    def _pex_to(self, link: Link) -> list[Action]:
        entries = []
        for did, lid in self.active.items():
            if did == link.did:
                continue
            for address in self._advertised(self.links[lid])[:1]:
                entries.append((did, address))
        if not entries:
            return []
        if len(entries) > PEX_MAX_PEERS:
            entries = self.rng.sample(entries, PEX_MAX_PEERS)
        return [self._send((link.id,), Peers(tuple(entries)))]

    def _send(self, links: tuple[int, ...], msg: Message) -> Send:
        for lid in links:
            self.links[lid].msgs_out += 1
        return Send(links, msg)

    # --- views ---------------------------------------------------------------------------

    def peer_count(self) -> int:
        return len(self.active)

    def peers(self, now: float) -> list[dict[str, Any]]:
        rows = []
        for link in sorted(self.links.values(), key=lambda lk: lk.opened_at):
            since = link.active_since if link.active_since is not None else link.opened_at
            rows.append(
                {
                    "link": link.id,
                    "did": link.did,
                    "address": link.address,
                    "direction": link.direction,
                    "state": link.state.value,
                    "connected_s": round(now - since, 3),
                    "messages_in": link.msgs_in,
                    "messages_out": link.msgs_out,
                    "rtt_ms": None if link.rtt_ms is None else round(link.rtt_ms, 3),
                    "topics": sorted(link.topics),
                    "mesh": sorted(t for t, ds in self.mesh.items() if link.did in ds),
                }
            )
        return rows
