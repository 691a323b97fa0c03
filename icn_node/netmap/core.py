"""The network map's sans-IO core: Vivaldi coordinates, RTT and bandwidth per peer, probes.

No clock (every event takes ``now``, in seconds), no I/O, no trio; randomness only from the
injected ``random.Random`` (Vivaldi's random direction for coincident nodes, ties between probe
candidates).

What it knows:

* This node's coordinate (:class:`Vivaldi`, with height), moved by every RTT sample to a peer
  whose coordinate it knows. The sample fed to Vivaldi is the median of the peer's last three
  (a late pong would otherwise throw the coordinate about).
* Other nodes' coordinates: pushed by linked peers (``netmap_coord``), carried in probe replies,
  and read from executors' announcements; each is dropped ``coord_ttl_s`` after it was last
  heard. :meth:`NetmapCore.estimate_rtt_ms` predicts the RTT between any two of them.
* Per peer: the smoothed RTT (from the mesh's samples) and a bandwidth estimate with its age and
  source: ``transfer`` (another service timed a real transfer and told us,
  :meth:`NetmapCore.observe_transfer`) or ``probe``.

Probes. Every ``probe_every_s`` the core looks for a linked peer without a bandwidth measurement
younger than ``recent_s`` (and not probed within ``recent_s``) and asks it for the seed's three
payloads, 1, 10 and 100 KiB, one after the other; the slope of reply time over size is the
bandwidth from that peer to us (the RTT and fixed costs cancel). Probe bytes are budgeted: a round
starts, and a reply is served, only if this node's probe bytes (sent and received, counted with a
per-message allowance above the real frame overhead) stay within ``budget`` (1 %) of the mesh's
frame bytes, which the driver passes in. Each node also tells its peers, with its coordinate, how
many probe bytes it could serve (``probe_room``), and a peer is probed only when a whole round
fits its room, so a round is seldom refused. A node keeps :data:`PROBE_RESERVE` of its budget
unspent for the requests peers send it (counted, but not its to refuse before they arrive). On
an idle mesh nothing is probed; passive measurements from transfers cost nothing and spare the
peers they cover a probe.

======================================================  ==========================================
event                                                   actions
======================================================  ==========================================
:meth:`~NetmapCore.rtt_sample` (the mesh measured one)   :class:`Send` our coordinate to the peer
:meth:`~NetmapCore.coordinate_heard`                     —
:meth:`~NetmapCore.observe_transfer`                     :class:`Measured`
:meth:`~NetmapCore.on_probe` (a peer asks)               :class:`Send` the reply (if affordable)
:meth:`~NetmapCore.on_probe_reply`                       :class:`Send` the next probe, or
                                                         :class:`ProbeDone` (+ :class:`Measured`)
:meth:`~NetmapCore.tick` (at :meth:`next_deadline`)      :class:`Send` a round's first probe,
                                                         :class:`ProbeDone` (timeout)
======================================================  ==========================================
"""

from __future__ import annotations

import math
import random
import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from ..scheduler.coordinates import MAX_COMPONENT_MS, MAX_ERROR, MIN_HEIGHT_MS, Coordinate
from ..wire import Message, NetmapCoordMsg, NetmapProbeMsg, NetmapProbeReplyMsg

__all__ = [
    "PROBE_MSG_OVERHEAD",
    "Action",
    "Bandwidth",
    "Measured",
    "NetmapConfig",
    "NetmapCore",
    "ProbeDone",
    "Send",
    "Vivaldi",
]

ZERO_MS = 1e-3
"""RTTs and distances below this (ms) count as zero: no division by them."""
MIN_ERROR = 1e-3
"""A node's error never reaches 0: at 0 its weight would be 0 and it could never move again."""
MAX_RTT_MS = 600_000.0
"""A sample above this (ms) is no RTT but a bug; it is ignored."""
MAX_MBPS = 100_000.0
"""Bandwidth estimates are capped here (100 Gbit/s)."""
LATENCY_FILTER = 3
"""Vivaldi is fed the median of a peer's last this-many samples."""
RTT_WEIGHT = 0.25
"""A new RTT sample's weight in the smoothed RTT (as the mesh's own)."""
BANDWIDTH_WEIGHT = 0.5
"""A new bandwidth measurement's weight against a recent one (a stale one is replaced)."""
PROBE_MSG_OVERHEAD = 256
"""Bytes counted for a probe message beyond its payload: above the real frame overhead (the
direct envelope, the tag, the coordinate), so the budget is never under-counted."""
PROBE_RESERVE = 8 * PROBE_MSG_OVERHEAD
"""Budget a node never spends itself (rounds, replies): it is left for the requests peers send
it, which are counted too and cannot be refused before they arrive."""


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class NetmapConfig:
    cc: float = 0.25  # Vivaldi: the fraction of the way a node moves, times its weight
    ce: float = 0.25  # Vivaldi: the weight of a new sample in the error estimate
    probe_sizes: tuple[int, ...] = (1024, 10 * 1024, 100 * 1024)
    budget: float = 0.01  # probe bytes at most this fraction of the mesh's bytes
    recent_s: float = 600.0  # a bandwidth measurement this young: no probe to that peer
    probe_every_s: float = 10.0  # how often a round may start (one at a time)
    probe_timeout_s: float = 5.0  # per probe
    coord_push_s: float = 3.0  # our coordinate to a peer at most this often...
    coord_refresh_s: float = 30.0  # ...and at least this often (when it has not moved much)
    coord_ttl_s: float = 900.0  # a coordinate not heard again for this long is forgotten
    linked_s: float = 30.0  # a peer with an RTT sample this recent counts as linked
    bandwidth_max_age_s: float = 3600.0  # older measurements are shown, not used
    min_transfer_bytes: int = 64 * 1024  # smaller transfers say little about bandwidth
    max_nodes: int = 4096  # coordinates and peer records kept (oldest dropped)

    def __post_init__(self) -> None:
        if not (0 < self.cc <= 1 and 0 < self.ce <= 1):
            raise ValueError("cc and ce must be in (0, 1]")
        if len(self.probe_sizes) < 2 or len(set(self.probe_sizes)) != len(self.probe_sizes):
            raise ValueError("probe_sizes: at least two different sizes")
        if not 0 <= self.budget < 1:
            raise ValueError("budget must be in [0, 1)")
        if self.max_nodes < 1:
            raise ValueError("max_nodes must be at least 1")

    @property
    def round_bytes(self) -> int:
        """What one probe round costs at most (requests and replies)."""
        return sum(self.probe_sizes) + 2 * PROBE_MSG_OVERHEAD * len(self.probe_sizes)


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A bandwidth estimate from a peer to us: megabits per second, when, and how measured."""

    mbps: float
    at: float
    source: str  # "transfer" or "probe"


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to ``to`` as a direct message on ``icn/netmap``."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class Measured:
    """A bandwidth measurement was taken (for the histogram): ``did``'s estimate now."""

    did: str
    bandwidth: Bandwidth


@dataclass(frozen=True, slots=True)
class ProbeDone:
    """A probe round ended: ``mbps`` on success, else None and ``reason``."""

    did: str
    mbps: float | None
    reason: str = ""


Action = Send | Measured | ProbeDone


# --- Vivaldi ------------------------------------------------------------------------------


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


class Vivaldi:
    """One node's Vivaldi coordinate with height (Dabek et al., SIGCOMM 2004, §3-5).

    Adaptive timestep: a sample moves the node by ``cc * w`` of the prediction error, where
    ``w = e_local / (e_local + e_remote)``, so a node sure of itself moves little and one unsure
    moves much; the error estimate is a moving average of the relative error with weight
    ``ce * w``. Height vectors (§5.5): ``[x, h] - [y, g] = [x - y, h + g]`` and
    ``||[x, h]|| = ||x|| + h``, so a push away from a peer also grows the height and a pull
    shrinks it; heights stay at least ``MIN_HEIGHT_MS``. Two nodes at the same point of the
    plane: a push goes in a random direction (the injected RNG), a pull shrinks the height only.
    """

    def __init__(self, rng: random.Random, cc: float = 0.25, ce: float = 0.25) -> None:
        self.rng = rng
        self.cc = cc
        self.ce = ce
        self.coordinate = Coordinate()
        self.updates = 0

    def update(self, rtt_ms: float, remote: Coordinate) -> Coordinate:
        """Move this node's coordinate for one RTT sample to a node at ``remote``."""
        me = self.coordinate
        rtt = max(rtt_ms, ZERO_MS)
        dist = me.distance_ms(remote)
        total = me.error + remote.error
        w = me.error / total if total > 0 else 0.5
        relative = abs(dist - rtt) / rtt
        error = _clamp(relative * self.ce * w + me.error * (1 - self.ce * w), MIN_ERROR, MAX_ERROR)
        force = self.cc * w * (rtt - dist)
        dx, dy = me.vec[0] - remote.vec[0], me.vec[1] - remote.vec[1]
        planar = math.hypot(dx, dy)
        heights = me.height + remote.height
        if planar > ZERO_MS:
            norm = planar + heights
            ux, uy, uh = dx / norm, dy / norm, heights / norm
        elif force >= 0:
            angle = self.rng.uniform(0.0, 2 * math.pi)
            ux, uy, uh = math.cos(angle), math.sin(angle), 0.0
        else:
            ux, uy, uh = 0.0, 0.0, 1.0
        lim = MAX_COMPONENT_MS
        self.coordinate = Coordinate(
            (_clamp(me.vec[0] + force * ux, -lim, lim), _clamp(me.vec[1] + force * uy, -lim, lim)),
            _clamp(me.height + force * uh, MIN_HEIGHT_MS, lim),
            error,
        )
        self.updates += 1
        return self.coordinate


# --- state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Known:
    """Another node's coordinate, when it was last heard and where from."""

    coordinate: Coordinate
    at: float
    source: str  # "peer" (pushed over the link), "probe" (a probe reply), "announce"


@dataclass(slots=True)
class PeerStats:
    rtt_ms: float | None = None  # smoothed (EWMA)
    window: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_FILTER))
    sampled_at: float = -math.inf
    pushed: NetmapCoordMsg | None = None  # what we last sent it, and when
    pushed_at: float = -math.inf
    heard: bool = False  # it has sent us a coordinate (so it runs the netmap)
    room: int = 0  # probe bytes it said it could serve (with its last coordinate)
    bandwidth: Bandwidth | None = None
    probed_at: float = -math.inf


@dataclass(slots=True)
class _Round:
    """The probe round in flight: one peer, the sizes still to ask for, the points so far."""

    did: str
    step: int = 0
    probe: int = 0
    sent_at: float = 0.0
    deadline: float = 0.0
    points: list[tuple[int, float]] = field(default_factory=list)


def bandwidth_from(points: list[tuple[int, float]]) -> float | None:
    """Megabits per second from (bytes, seconds) points: the inverse of the least-squares slope
    of time over size. None when time does not grow with size (a link faster than the probes
    can tell, or noise)."""
    n = len(points)
    mx = sum(b for b, _ in points) / n
    my = sum(t for _, t in points) / n
    sxx = sum((b - mx) ** 2 for b, _ in points)
    sxy = sum((b - mx) * (t - my) for b, t in points)
    if sxx <= 0 or sxy <= 0:
        return None
    seconds_per_byte = sxy / sxx
    return min(MAX_MBPS, 8.0 / seconds_per_byte / 1e6)


# --- the core -----------------------------------------------------------------------------


class NetmapCore:
    def __init__(
        self, did: str, rng: random.Random | None = None, config: NetmapConfig | None = None
    ) -> None:
        self.did = did
        self.config = config or NetmapConfig()
        self.rng = rng or random.Random()
        self.vivaldi = Vivaldi(self.rng, self.config.cc, self.config.ce)
        self.known: OrderedDict[str, Known] = OrderedDict()  # oldest heard first
        self.peers: OrderedDict[str, PeerStats] = OrderedDict()  # least recently touched first
        self.probe_bytes = 0  # probe messages sent and received (with the overhead allowance)
        self.mesh_bytes = 0  # the mesh's frame bytes, as the driver last told us
        self.rounds_deferred = 0  # rounds that were due but did not fit the budget
        self._committed = 0  # budget held for the rest of the round in flight
        self._round: _Round | None = None
        self._probe_seq = 0
        self._next_probe_at = -math.inf

    @property
    def coordinate(self) -> Coordinate:
        return self.vivaldi.coordinate

    # --- RTT and coordinates ---------------------------------------------------------------

    def rtt_sample(self, did: str, rtt_ms: float, now: float) -> list[Action]:
        """The mesh measured one RTT to linked peer ``did``: smooth it, move our coordinate
        (when we know the peer's), and send the peer ours if it is due."""
        if did == self.did or not (math.isfinite(rtt_ms) and 0 <= rtt_ms <= MAX_RTT_MS):
            return []
        peer = self._peer(did)
        peer.window.append(rtt_ms)
        peer.rtt_ms = (
            rtt_ms if peer.rtt_ms is None else (1 - RTT_WEIGHT) * peer.rtt_ms + RTT_WEIGHT * rtt_ms
        )
        peer.sampled_at = now
        remote = self.known.get(did)
        if remote is not None:
            self.vivaldi.update(statistics.median(peer.window), remote.coordinate)
        msg = NetmapCoordMsg(self.coordinate, self.probe_room())
        if not self._push_due(peer, msg, now):
            return []
        peer.pushed, peer.pushed_at = msg, now
        return [Send(did, msg)]

    def _push_due(self, peer: PeerStats, msg: NetmapCoordMsg, now: float) -> bool:
        """Whether ``peer`` should hear our coordinate now: the first time; after that only if
        it runs the netmap (it sent us one), never within ``coord_push_s`` of the last, and then
        when the coordinate moved enough to change its predictions (2 % of the RTT between us,
        at least 0.1 ms), when our room for a probe round appeared or went, or every
        ``coord_refresh_s`` regardless. A settled node costs a link one message a refresh."""
        cfg = self.config
        last = peer.pushed
        if last is None:
            return True
        if not peer.heard or now - peer.pushed_at < cfg.coord_push_s:
            return False
        if now - peer.pushed_at >= cfg.coord_refresh_s:
            return True
        a, b = last.coordinate, msg.coordinate
        moved = math.hypot(a.vec[0] - b.vec[0], a.vec[1] - b.vec[1]) + abs(a.height - b.height)
        if moved > max(0.1, 0.02 * (peer.rtt_ms or 0.0)):
            return True
        return (last.probe_room >= cfg.round_bytes) != (msg.probe_room >= cfg.round_bytes)

    def coordinate_heard(
        self, did: str, coordinate: Coordinate, now: float, source: str, room: int | None = None
    ) -> None:
        """``did``'s coordinate, from ``source``: ``peer`` (it sent it to us, with ``room``,
        the probe bytes it could serve), ``probe`` (in a probe reply) or ``announce`` (an
        executor announcement). The sender is the message's authenticated origin, never a
        field."""
        if did == self.did:
            return
        if source in ("peer", "probe"):
            peer = self._peer(did)
            peer.heard = True
            if room is not None:
                peer.room = room
        self.known.pop(did, None)
        self.known[did] = Known(coordinate, now, source)
        while len(self.known) > self.config.max_nodes:
            self.known.popitem(last=False)

    def coordinate_of(self, did: str) -> Coordinate | None:
        if did == self.did:
            return self.coordinate
        known = self.known.get(did)
        return known.coordinate if known is not None else None

    def estimate_rtt_ms(self, a: str, b: str) -> float | None:
        """The RTT between ``a`` and ``b`` that their coordinates predict (either may be this
        node); None when either coordinate is unknown."""
        if a == b:
            return 0.0
        ca, cb = self.coordinate_of(a), self.coordinate_of(b)
        if ca is None or cb is None:
            return None
        return ca.distance_ms(cb)

    def rtt_ms(self, did: str, now: float) -> float | None:
        """The measured (smoothed) RTT to a linked peer, else the coordinates' estimate."""
        if did == self.did:
            return 0.0
        peer = self.peers.get(did)
        if peer is not None and peer.rtt_ms is not None and self._linked(peer, now):
            return peer.rtt_ms
        return self.estimate_rtt_ms(self.did, did)

    # --- bandwidth ------------------------------------------------------------------------

    def observe_transfer(self, did: str, nbytes: int, seconds: float, now: float) -> list[Action]:
        """``nbytes`` came from ``did`` in ``seconds`` (a real transfer, timed by its service).

        One RTT is taken off the time (transfer time = RTT + size / bandwidth). Transfers that
        time the RTT more than the link are ignored: smaller than ``min_transfer_bytes``, or
        shorter than two RTTs."""
        if did == self.did or nbytes < self.config.min_transfer_bytes:
            return []
        if not (math.isfinite(seconds) and seconds > 0):
            return []
        rtt_s = (self.rtt_ms(did, now) or 0.0) / 1000.0
        if seconds < 2 * rtt_s:
            return []
        mbps = min(MAX_MBPS, nbytes * 8 / (seconds - rtt_s) / 1e6)
        return [self._record_bandwidth(did, mbps, now, "transfer")]

    def bandwidth(self, did: str, now: float) -> Bandwidth | None:
        """The estimate for ``did`` when not older than ``bandwidth_max_age_s``."""
        peer = self.peers.get(did)
        bw = peer.bandwidth if peer is not None else None
        if bw is None or now - bw.at > self.config.bandwidth_max_age_s:
            return None
        return bw

    def rtts(self, now: float) -> dict[str, float]:
        """RTT (ms) to every node this node can tell: measured for linked peers, from the
        coordinates for the others."""
        out = {d: r for d in self.known if (r := self.rtt_ms(d, now)) is not None}
        for d in self.peers:
            r = self.rtt_ms(d, now)
            if r is not None:
                out[d] = r
        return out

    def bandwidths(self, now: float) -> dict[str, float]:
        """Bandwidth (Mbit/s) to every peer with a recent estimate."""
        return {d: bw.mbps for d in self.peers if (bw := self.bandwidth(d, now)) is not None}

    def estimate(self, did: str, now: float) -> tuple[float | None, float | None]:
        """(RTT in ms, bandwidth in Mbit/s) to ``did``, each None when unknown: what transfer
        planning asks."""
        bw = self.bandwidth(did, now)
        return self.rtt_ms(did, now), (bw.mbps if bw is not None else None)

    def transfer_s(self, did: str, nbytes: int, now: float) -> float | None:
        """Estimated seconds to move ``nbytes`` from ``did`` here: RTT + size / bandwidth;
        None without a bandwidth estimate."""
        rtt_ms, mbps = self.estimate(did, now)
        if mbps is None:
            return None
        return (rtt_ms or 0.0) / 1000.0 + nbytes * 8 / (mbps * 1e6)

    def _record_bandwidth(self, did: str, mbps: float, now: float, source: str) -> Measured:
        peer = self._peer(did)
        old = peer.bandwidth
        if old is not None and now - old.at < self.config.recent_s:
            mbps = (1 - BANDWIDTH_WEIGHT) * old.mbps + BANDWIDTH_WEIGHT * mbps
        peer.bandwidth = Bandwidth(mbps, now, source)
        return Measured(did, peer.bandwidth)

    # --- probes ---------------------------------------------------------------------------

    def _affordable(self, nbytes: int) -> bool:
        """Whether this node may spend ``nbytes`` more (PROBE_RESERVE stays for requests)."""
        spent = self.probe_bytes + self._committed + PROBE_RESERVE
        return spent + nbytes <= self.config.budget * self.mesh_bytes

    def _spend(self, nbytes: int, for_round: bool = False) -> None:
        """Count probe bytes; a round's own come out of what it holds."""
        self.probe_bytes += nbytes
        if for_round:
            self._committed = max(0, self._committed - nbytes)

    def probe_room(self) -> int:
        """Probe bytes this node could serve now (told to peers with its coordinate)."""
        spent = self.probe_bytes + self._committed + PROBE_RESERVE
        return max(0, int(self.config.budget * self.mesh_bytes - spent))

    def _note_mesh_bytes(self, mesh_bytes: int) -> None:
        self.mesh_bytes = max(self.mesh_bytes, mesh_bytes)

    def tick(self, now: float, mesh_bytes: int) -> list[Action]:
        """Time out the probe in flight, start a round when one is due and affordable, and
        forget coordinates not heard for ``coord_ttl_s``. ``mesh_bytes``: the mesh's frame bytes
        so far (both directions), probe traffic included."""
        self._note_mesh_bytes(mesh_bytes)
        self._expire(now)
        actions: list[Action] = []
        r = self._round
        if r is not None and now >= r.deadline:
            actions += self._finish(r, None, "timeout", now)
        if self._round is None and now >= self._next_probe_at:
            self._next_probe_at = now + self.config.probe_every_s
            actions += self._start_round(now)
        return actions

    def next_deadline(self) -> float:
        """When :meth:`tick` next has work."""
        if self._round is not None:
            return min(self._round.deadline, self._next_probe_at)
        return self._next_probe_at

    def probe_candidates(self, now: float) -> list[str]:
        """Linked peers with no bandwidth measurement within ``recent_s``, not probed within it,
        and with room for a round: never-measured first, then the oldest measurement."""
        cfg = self.config
        out = [
            did
            for did, p in self.peers.items()
            if self._linked(p, now)
            and (p.bandwidth is None or now - p.bandwidth.at >= cfg.recent_s)
            and now - p.probed_at >= cfg.recent_s
            and p.room >= cfg.round_bytes
        ]
        self.rng.shuffle(out)
        out.sort(key=lambda d: _measured_at(self.peers[d]))
        return out

    def _start_round(self, now: float) -> list[Action]:
        candidates = self.probe_candidates(now)
        if not candidates:
            return []
        if not self._affordable(self.config.round_bytes):
            self.rounds_deferred += 1
            return []
        did = candidates[0]
        self.peers[did].probed_at = now
        self._round = _Round(did)
        self._committed = self.config.round_bytes
        return [self._send_probe(self._round, now)]

    def _send_probe(self, r: _Round, now: float) -> Send:
        self._probe_seq += 1
        r.probe, r.sent_at = self._probe_seq, now
        r.deadline = now + self.config.probe_timeout_s
        self._spend(PROBE_MSG_OVERHEAD, for_round=True)
        return Send(r.did, NetmapProbeMsg(r.probe, self.config.probe_sizes[r.step]))

    def on_probe(self, did: str, msg: NetmapProbeMsg, now: float, mesh_bytes: int) -> list[Action]:
        """``did`` asks for ``msg.size`` bytes: the reply, if our own budget allows it (else a
        short refusal, if that fits, else silence: the asker's probe times out)."""
        self._note_mesh_bytes(mesh_bytes)
        self._spend(PROBE_MSG_OVERHEAD)
        if did == self.did:
            return []
        cost = msg.size + PROBE_MSG_OVERHEAD
        if self._affordable(cost):
            reply = NetmapProbeReplyMsg(msg.probe, self.coordinate, bytes(msg.size))
        elif self._affordable(PROBE_MSG_OVERHEAD):
            cost = PROBE_MSG_OVERHEAD
            reply = NetmapProbeReplyMsg(msg.probe, self.coordinate, error="budget")
        else:
            return []
        self._spend(cost)
        return [Send(did, reply)]

    def on_probe_reply(self, did: str, msg: NetmapProbeReplyMsg, now: float) -> list[Action]:
        """A reply from ``did``: its coordinate, and the next step of our round (a reply that is
        not the one awaited is late or unsolicited: counted, otherwise ignored)."""
        r = self._round
        awaited = r is not None and r.did == did and r.probe == msg.probe
        self._spend(len(msg.payload) + PROBE_MSG_OVERHEAD, for_round=awaited)
        self.coordinate_heard(did, msg.coordinate, now, "probe")
        if r is None or not awaited:
            return []
        if msg.error:
            return self._finish(r, None, f"refused: {msg.error}"[:64], now)
        size = self.config.probe_sizes[r.step]
        if len(msg.payload) != size:
            return self._finish(r, None, "short reply", now)
        r.points.append((size, now - r.sent_at))
        r.step += 1
        if r.step < len(self.config.probe_sizes):
            return [self._send_probe(r, now)]
        mbps = bandwidth_from(r.points)
        return self._finish(r, mbps, "" if mbps is not None else "no signal", now)

    def _finish(self, r: _Round, mbps: float | None, reason: str, now: float) -> list[Action]:
        self._round = None
        self._committed = 0
        if mbps is None:
            return [ProbeDone(r.did, None, reason)]
        measured = self._record_bandwidth(r.did, mbps, now, "probe")
        return [ProbeDone(r.did, measured.bandwidth.mbps), measured]

    # --- bookkeeping ----------------------------------------------------------------------

    def _peer(self, did: str) -> PeerStats:
        peer = self.peers.pop(did, None) or PeerStats()
        self.peers[did] = peer
        while len(self.peers) > self.config.max_nodes:
            self.peers.popitem(last=False)
        return peer

    def _linked(self, peer: PeerStats, now: float) -> bool:
        return now - peer.sampled_at <= self.config.linked_s

    def _expire(self, now: float) -> None:
        ttl = self.config.coord_ttl_s
        while self.known:
            did, k = next(iter(self.known.items()))
            if now - k.at < ttl:
                break
            del self.known[did]

    # --- views ----------------------------------------------------------------------------

    def view(self, now: float) -> dict[str, Any]:
        """Everything ``icnctl topology`` shows: this node, then every peer measured and every
        node whose coordinate is known (linked peers first)."""
        rows = []
        for did in sorted(set(self.peers) | set(self.known)):
            peer = self.peers.get(did)
            known = self.known.get(did)
            bw = peer.bandwidth if peer is not None else None
            linked = peer is not None and self._linked(peer, now)
            rows.append(
                {
                    "did": did,
                    "linked": linked,
                    "rtt_ms": _round3(peer.rtt_ms if peer is not None and linked else None),
                    "rtt_estimated_ms": _round3(self.estimate_rtt_ms(self.did, did)),
                    "bandwidth_mbps": _round3(bw.mbps if bw is not None else None),
                    "bandwidth_age_s": _round3(now - bw.at if bw is not None else None),
                    "bandwidth_source": bw.source if bw is not None else None,
                    "coordinate": known.coordinate.to_dict(json_safe=True) if known else None,
                    "coordinate_age_s": _round3(now - known.at) if known else None,
                    "coordinate_source": known.source if known else None,
                }
            )
        rows.sort(key=lambda row: not row["linked"])
        return {
            "did": self.did,
            "coordinate": self.coordinate.to_dict(json_safe=True),
            "updates": self.vivaldi.updates,
            "probe_bytes": self.probe_bytes,
            "mesh_bytes": self.mesh_bytes,
            "probe_in_flight": self._round.did if self._round is not None else None,
            "nodes": rows,
        }


def _measured_at(peer: PeerStats) -> float:
    return peer.bandwidth.at if peer.bandwidth is not None else -math.inf


def _round3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
