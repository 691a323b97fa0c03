"""Simulated networks for the network map: Vivaldi's accuracy, and the probe budget.

**Accuracy.** Two geometries, both with an access-link height per node (1-15 ms) that every
path from the node crosses, so RTT = path + both heights:

* :func:`plane`: nodes uniform on a 250 x 120 ms plane; the path is the planar distance. Vivaldi
  with height can embed this exactly, so what is left is jitter and convergence.
* :func:`globe`: nodes in five continental clusters (North America, Europe, East Asia, South
  America, Oceania) on the earth; the path is the great-circle distance at 0.013 ms of RTT per
  km (light in fibre, 1.3x path stretch). A sphere does not fit a plane, so this is harder.

:func:`simulate` gives each node a fixed random set of neighbours (the mesh's ``max_peers``, 32)
and runs rounds in which every node takes one sample from a random neighbour: the RTT times a
uniform jitter factor in ``[1 - jitter, 1 + jitter]``, against the neighbour's current
coordinate. :func:`relative_errors` compares every pair's predicted RTT with the true one.

**Probes.** :class:`ProbeSim` runs one :class:`~icn_node.netmap.core.NetmapCore` per node on a
discrete-event network (a random graph of links, the :func:`plane` RTTs, a bandwidth per
direction): keepalive RTT samples and coordinate pushes, background chatter, blob-like transfers
that the receiver reports with ``observe_transfer``, and the cores' own probes, delivered after
half an RTT plus their size over the link's bandwidth. Every node's mesh bytes count every frame
it sends or receives, probes included. It checks, after every event, the two promises: probe
bytes within the budget of mesh bytes, and no round to a peer a transfer measured recently.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from icn_node import wire
from icn_node.netmap.core import (
    Action,
    Measured,
    NetmapConfig,
    NetmapCore,
    ProbeDone,
    Send,
    Vivaldi,
)
from icn_node.scheduler.coordinates import Coordinate

Matrix = Callable[[int, int], float]

CLUSTERS = ((40.0, -95.0), (50.0, 10.0), (35.0, 120.0), (-15.0, -55.0), (-30.0, 145.0))
EARTH_KM = 6371.0
MS_PER_KM = 0.013


def plane(n: int, rng: random.Random) -> Matrix:
    points = [(rng.uniform(0, 250), rng.uniform(0, 120)) for _ in range(n)]
    heights = [rng.uniform(1, 15) for _ in range(n)]

    def rtt(i: int, j: int) -> float:
        return 0.0 if i == j else math.dist(points[i], points[j]) + heights[i] + heights[j]

    return rtt


def globe(n: int, rng: random.Random) -> Matrix:
    points = []
    for _ in range(n):
        lat, lon = rng.choice(CLUSTERS)
        points.append((math.radians(lat + rng.gauss(0, 8)), math.radians(lon + rng.gauss(0, 12))))
    heights = [rng.uniform(1, 15) for _ in range(n)]

    def rtt(i: int, j: int) -> float:
        if i == j:
            return 0.0
        (a, b), (c, d) = points[i], points[j]
        h = math.sin((c - a) / 2) ** 2 + math.cos(a) * math.cos(c) * math.sin((d - b) / 2) ** 2
        km = 2 * EARTH_KM * math.asin(math.sqrt(h))
        return km * MS_PER_KM + heights[i] + heights[j]

    return rtt


GEOMETRIES: dict[str, Callable[[int, random.Random], Matrix]] = {"plane": plane, "globe": globe}


def simulate(
    rtt: Matrix,
    n: int,
    rng: random.Random,
    *,
    neighbours: int = 32,
    rounds: int = 300,
    jitter: float = 0.05,
) -> list[Coordinate]:
    """Every node's coordinate after ``rounds`` rounds of one sample each (see the module)."""
    nodes = [Vivaldi(random.Random(rng.getrandbits(64))) for _ in range(n)]
    sets = [rng.sample([j for j in range(n) if j != i], min(neighbours, n - 1)) for i in range(n)]
    for _ in range(rounds):
        for i in range(n):
            j = rng.choice(sets[i])
            sample = rtt(i, j) * (1 + rng.uniform(-jitter, jitter))
            nodes[i].update(sample, nodes[j].coordinate)
    return [v.coordinate for v in nodes]


def relative_errors(rtt: Matrix, coords: list[Coordinate]) -> list[float]:
    """|predicted - true| / true for every pair, sorted."""
    n = len(coords)
    return sorted(
        abs(coords[i].distance_ms(coords[j]) - rtt(i, j)) / rtt(i, j)
        for i in range(n)
        for j in range(i + 1, n)
    )


@dataclass(frozen=True)
class Accuracy:
    geometry: str
    seed: int
    median: float
    p90: float
    median_error_estimate: float  # the nodes' own error estimates, median

    def __str__(self) -> str:
        return (
            f"{self.geometry} seed {self.seed}: median relative error {self.median:.1%}, "
            f"90th percentile {self.p90:.1%}, nodes' own estimate {self.median_error_estimate:.2f}"
        )


def accuracy(
    geometry: str, seed: int, n: int = 100, rounds: int = 300, neighbours: int = 32
) -> Accuracy:
    rng = random.Random(seed)
    rtt = GEOMETRIES[geometry](n, rng)
    coords = simulate(rtt, n, rng, neighbours=neighbours, rounds=rounds)
    errors = relative_errors(rtt, coords)
    return Accuracy(
        geometry,
        seed,
        statistics.median(errors),
        errors[int(0.9 * len(errors))],
        statistics.median(c.error for c in coords),
    )


# --- the probe budget -----------------------------------------------------------------------

KEEPALIVE_S = 10.0 / 3  # the mesh's default keepalive period
KEEPALIVE_FRAME_BYTES = 2 * len(wire.encode_frame(wire.Ping(2**40)))  # a ping and its pong
T0 = 1_700_000_000.0


def _frame_bytes(msg: wire.Message) -> int:
    return len(wire.encode_frame(wire.Direct(wire.NETMAP_TOPIC, wire.encode_message(msg))))


@dataclass
class SimNode:
    index: int
    did: str
    core: NetmapCore
    links: list[int] = field(default_factory=list)
    mesh_bytes: int = 0  # every frame sent or received, probes included


@dataclass
class ProbeStats:
    rounds: int = 0
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    transfers: int = 0
    transfer_bytes: int = 0


class ProbeSim:
    """``n`` NetmapCores on a simulated network (see the module docstring).

    ``degree``: links per node (a random graph). ``transfer_every_s``: mean gap between one
    node's fetches (Poisson), each of a log-uniform size from 64 KiB to ``max_transfer`` bytes
    from a random linked peer. ``chatter_bps``: background bytes per second per node (gossip,
    announcements). Bandwidths per direction are log-uniform in 5-1000 Mbit/s.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        *,
        degree: int = 6,
        config: NetmapConfig | None = None,
        transfer_every_s: float = 300.0,
        max_transfer: int = 50 * 1024 * 1024,
        chatter_bps: float = 200.0,
        jitter: float = 0.05,
    ) -> None:
        self.rng = random.Random(seed)
        self.config = config or NetmapConfig()
        self.rtt_ms = plane(n, self.rng)
        self.nodes = [
            SimNode(
                i,
                f"did:sim:{i}",
                NetmapCore(f"did:sim:{i}", random.Random(seed * 1000 + i), self.config),
            )
            for i in range(n)
        ]
        self.by_did = {node.did: node for node in self.nodes}
        for i in range(n):
            while len(self.nodes[i].links) < degree:
                j = self.rng.randrange(n)
                if j != i and j not in self.nodes[i].links:
                    self.nodes[i].links.append(j)
                    self.nodes[j].links.append(i)
        self.mbps = {
            (i, j): math.exp(self.rng.uniform(math.log(5), math.log(1000)))
            for i in range(n)
            for j in self.nodes[i].links
        }  # (sender, receiver) -> Mbit/s
        self.transfer_every_s = transfer_every_s
        self.max_transfer = max_transfer
        self.chatter_bps = chatter_bps
        self.jitter = jitter
        self.now = T0
        self.stats = ProbeStats()
        self.transferred_at: dict[tuple[int, int], float] = {}  # (receiver, sender) -> time
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        for node in self.nodes:
            for j in node.links:
                self._at(self.rng.uniform(0, KEEPALIVE_S), self._keepalive, node.index, j)
            self._at(self.rng.expovariate(1 / transfer_every_s), self._transfer, node.index)
            self._at(self.rng.uniform(0, 1), self._tick, node.index)
        self._at(1.0, self._chatter)

    # --- the event loop ---------------------------------------------------------------------

    def _at(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), lambda: fn(*args)))

    def run(self, seconds: float) -> ProbeStats:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            self.now, _, fn = heapq.heappop(self._queue)
            fn()
        self.now = end
        return self.stats

    def _one_way_s(self, i: int, j: int) -> float:
        return self.rtt_ms(i, j) / 2000.0 * (1 + self.rng.uniform(-self.jitter, self.jitter))

    # --- traffic ------------------------------------------------------------------------------

    def _keepalive(self, i: int, j: int) -> None:
        a, b = self.nodes[i], self.nodes[j]
        a.mesh_bytes += KEEPALIVE_FRAME_BYTES
        b.mesh_bytes += KEEPALIVE_FRAME_BYTES
        sample = self._one_way_s(i, j) * 2000.0
        self._apply(a, a.core.rtt_sample(b.did, sample, self.now))
        self._at(KEEPALIVE_S, self._keepalive, i, j)

    def _chatter(self) -> None:
        for node in self.nodes:
            node.mesh_bytes += int(self.chatter_bps)
        self._at(1.0, self._chatter)

    def _transfer(self, i: int) -> None:
        node = self.nodes[i]
        j = self.rng.choice(node.links)
        size = int(math.exp(self.rng.uniform(math.log(64 * 1024), math.log(self.max_transfer))))
        seconds = 2 * self._one_way_s(i, j) + size * 8 / (self.mbps[(j, i)] * 1e6)
        self._at(seconds, self._transfer_done, i, j, size, seconds)
        self._at(self.rng.expovariate(1 / self.transfer_every_s), self._transfer, i)

    def _transfer_done(self, i: int, j: int, size: int, seconds: float) -> None:
        framed = size + size // 100  # chunk frames: a few bytes of envelope per 256 KiB piece
        self.nodes[i].mesh_bytes += framed
        self.nodes[j].mesh_bytes += framed
        self.stats.transfers += 1
        self.stats.transfer_bytes += size
        node = self.nodes[i]
        actions = node.core.observe_transfer(self.nodes[j].did, size, seconds, self.now)
        if any(isinstance(a, Measured) for a in actions):
            self.transferred_at[(i, j)] = self.now  # a measurement (short ones are not)
        self._apply(node, actions)

    def _tick(self, i: int) -> None:
        node = self.nodes[i]
        self._apply(node, node.core.tick(self.now, node.mesh_bytes))
        self._at(1.0, self._tick, i)

    # --- the cores' actions -----------------------------------------------------------------

    def _apply(self, node: SimNode, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self._send(node, self.by_did[a.to], a.msg)
            elif isinstance(a, ProbeDone):
                if a.mbps is not None:
                    self.stats.succeeded += 1
                else:
                    self.stats.failed[a.reason] = self.stats.failed.get(a.reason, 0) + 1
        self._check(node)

    def _send(self, src: SimNode, dst: SimNode, msg: wire.Message) -> None:
        nbytes = _frame_bytes(msg)
        src.mesh_bytes += nbytes
        if isinstance(msg, wire.NetmapProbeMsg) and msg.size == self.config.probe_sizes[0]:
            self.stats.rounds += 1
            measured = self.transferred_at.get((src.index, dst.index))
            if measured is not None and self.now - measured < self.config.recent_s:
                self.stats.violations.append(
                    f"t={self.now - T0:.0f}s: {src.did} probes {dst.did}, measured by a "
                    f"transfer {self.now - measured:.0f} s ago"
                )
        delay = self._one_way_s(src.index, dst.index) + nbytes * 8 / (
            self.mbps[(src.index, dst.index)] * 1e6
        )
        self._at(delay, self._deliver, src, dst, msg, nbytes)

    def _deliver(self, src: SimNode, dst: SimNode, msg: wire.Message, nbytes: int) -> None:
        dst.mesh_bytes += nbytes
        core = dst.core
        if isinstance(msg, wire.NetmapCoordMsg):
            core.coordinate_heard(src.did, msg.coordinate, self.now, "peer", msg.probe_room)
            self._check(dst)
        elif isinstance(msg, wire.NetmapProbeMsg):
            self._apply(dst, core.on_probe(src.did, msg, self.now, dst.mesh_bytes))
        elif isinstance(msg, wire.NetmapProbeReplyMsg):
            self._apply(dst, core.on_probe_reply(src.did, msg, self.now))

    def _check(self, node: SimNode) -> None:
        limit = self.config.budget * node.mesh_bytes
        if node.core.probe_bytes > limit:
            self.stats.violations.append(
                f"t={self.now - T0:.0f}s: {node.did} probe bytes {node.core.probe_bytes} > "
                f"{limit:.0f} ({self.config.budget:.0%} of {node.mesh_bytes} mesh bytes)"
            )

    # --- results ------------------------------------------------------------------------------

    def ratios(self) -> list[float]:
        """Each node's probe bytes over its mesh bytes."""
        return [n.core.probe_bytes / max(1, n.mesh_bytes) for n in self.nodes]

    def estimates(self) -> dict[str, list[float]]:
        """Relative error of every directed link's bandwidth estimate, by source."""
        out: dict[str, list[float]] = {"transfer": [], "probe": []}
        for node in self.nodes:
            for j in node.links:
                bw = node.core.bandwidth(self.nodes[j].did, self.now)
                if bw is not None:
                    true = self.mbps[(j, node.index)]
                    out[bw.source].append(abs(bw.mbps - true) / true)
        return out

    def links(self) -> int:
        return sum(len(n.links) for n in self.nodes)
