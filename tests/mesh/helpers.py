"""A fake network of MeshCores: links are pairs of ids, frames go through the real codec."""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import dataclass, field

from icn_node import wire
from icn_node.identity import NodeIdentity
from icn_node.mesh.core import (
    CloseLink,
    CoreConfig,
    Deliver,
    Delivery,
    Dial,
    Drop,
    MeshCore,
    PeerDown,
    PeerUp,
    Reject,
    RttSample,
    Send,
)

_IDS = [NodeIdentity.generate() for _ in range(12)]


def identities(n: int) -> list[NodeIdentity]:
    """Cached keys (generating is cheap, but hypothesis runs many examples)."""
    while len(_IDS) < n:
        _IDS.append(NodeIdentity.generate())
    return _IDS[:n]


def make_core(ident: NodeIdentity, members: list[str], seed: int = 0, **overrides) -> MeshCore:
    cfg = CoreConfig(members=frozenset(members), **overrides)
    return MeshCore(ident, cfg, random.Random(seed))


@dataclass
class SimNode:
    core: MeshCore
    address: str
    delivered: list[Delivery] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    closes: list[CloseLink] = field(default_factory=list)
    up: bool = True


class SimNet:
    """Nodes by address; Dial connects instantly when the target is up and admits us."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.nodes: dict[str, SimNode] = {}
        self._ids = itertools.count(1)
        # link id → (owner address, peer address, peer's link id)
        self.ends: dict[int, tuple[str, str, int]] = {}
        self.queue: deque[tuple[str, list]] = deque()
        self.frames = 0

    def add(self, core: MeshCore, address: str) -> SimNode:
        node = SimNode(core, address)
        self.nodes[address] = node
        return node

    def by_did(self, did: str) -> SimNode:
        return next(n for n in self.nodes.values() if n.core.did == did)

    def start_all(self) -> None:
        for addr, node in self.nodes.items():
            self.queue.append((addr, node.core.start(self.now, (addr,))))
        self.run()

    def connect(self, a: str, b: str) -> tuple[int, int]:
        """Open an authenticated link a → b directly (both cores see link_opened)."""
        na, nb = self.nodes[a], self.nodes[b]
        la, lb = next(self._ids), next(self._ids)
        self.ends[la] = (a, b, lb)
        self.ends[lb] = (b, a, la)
        self.queue.append((a, na.core.link_opened(la, nb.core.did, "out", b, self.now, b)))
        self.queue.append((b, nb.core.link_opened(lb, na.core.did, "in", a, self.now)))
        return la, lb

    def close_link(self, link: int, reason: str) -> None:
        if link not in self.ends:
            return
        owner, peer, other = self.ends.pop(link)
        self.ends.pop(other, None)
        if owner in self.nodes:
            self.queue.append((owner, self.nodes[owner].core.link_closed(link, reason, self.now)))
        if peer in self.nodes:
            self.queue.append((peer, self.nodes[peer].core.link_closed(other, "eof", self.now)))

    def crash(self, address: str) -> None:
        node = self.nodes[address]
        node.up = False
        for link, (owner, _peer, _other) in list(self.ends.items()):
            if owner == address:
                self.close_link(link, "crash")

    def _dial(self, src: str, action: Dial) -> None:
        target = self.nodes.get(action.address)
        me = self.nodes[src]
        if target is None or not target.up:
            self.queue.append((src, me.core.dial_failed(action.address, "refused", self.now)))
            return
        did = target.core.did
        if action.did is not None and action.did != did:
            self.queue.append(
                (src, me.core.dial_failed(action.address, "unexpected-did", self.now, did))
            )
            return
        for reason in (me.core.admission(did), target.core.admission(me.core.did)):
            if reason is not None:
                self.queue.append((src, me.core.dial_failed(action.address, reason, self.now, did)))
                return
        self.connect(src, action.address)

    def _apply(self, src: str, actions: list) -> None:
        node = self.nodes[src]
        for a in actions:
            if isinstance(a, Send):
                body = wire.encode_message(a.msg)
                for link in a.links:
                    if link not in self.ends:
                        continue
                    _owner, peer, other = self.ends[link]
                    if not self.nodes[peer].up:
                        continue
                    self.frames += 1
                    msg = wire.decode_message(body)
                    self.queue.append(
                        (peer, self.nodes[peer].core.frame_received(other, msg, self.now))
                    )
            elif isinstance(a, Dial):
                self._dial(src, a)
            elif isinstance(a, CloseLink):
                node.closes.append(a)
                self.close_link(a.link, a.reason)
            elif isinstance(a, Deliver):
                node.delivered.append(a.delivery)
            elif isinstance(a, Drop):
                node.drops.append(a)
            elif isinstance(a, Reject):
                node.rejects.append(a)
            elif isinstance(a, (PeerUp, PeerDown, RttSample)):
                pass
            else:  # pragma: no cover
                raise AssertionError(f"unknown action {a!r}")

    def run(self, limit: int = 200_000) -> None:
        steps = 0
        while self.queue:
            src, actions = self.queue.popleft()
            self._apply(src, actions)
            steps += 1
            assert steps < limit, "the simulated network did not settle"

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Move time forward, ticking every node at ``step`` intervals."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for addr, node in self.nodes.items():
                if node.up:
                    self.queue.append((addr, node.core.tick(self.now)))
            self.run()

    def do(self, address: str, actions: list) -> None:
        self.queue.append((address, actions))
        self.run()


def chain(n: int, **cfg) -> SimNet:
    """n nodes, node i bootstrapped to node i-1, all members of each other."""
    ids = identities(n)
    members = [i.did for i in ids]
    net = SimNet()
    for i, ident in enumerate(ids):
        boot = (f"10.0.0.{i - 1}:7946",) if i else ()
        core = make_core(ident, members, seed=i, bootstrap=boot, **cfg)
        net.add(core, f"10.0.0.{i}:7946")
    net.start_all()
    return net
