"""The event loop: one production :class:`~icn_node.compute.ComputeCore` per node on a modelled
network, driven the way the daemon's compute driver drives it.

What is real and what is modelled (docs/ARCHITECTURE.md, "The simulator", says it at length):

* **Real**: every compute decision. Each node's core is built by ``ComputeCore.from_config``
  from the daemon's own ``[compute]`` section (so a variant is a daemon configuration), and gets
  every event the driver would give it: ``submit``, ``receive`` (the real wire message objects),
  ``run_started`` / ``run_finished`` / ``run_abandoned``, ``link_down`` / ``link_up``,
  ``on_timer`` at ``next_deadline()``, and after a crash a fresh core ``restore``-d from the
  records it persisted. The blob locations are the daemon's ``BlobLocations`` table, read by
  placement through its live view. Message sizes are the real codec's (``encode_message``
  inside the mesh's ``Direct`` / ``Gossip`` envelope).
* **Modelled**: the mesh (see :mod:`icn_sim.network`: one frame to a linked peer, a flood of
  signed gossip otherwise), TLS and signatures (their CPU cost is charged, not run), the
  sandbox (a run takes its task's drawn duration after its input is fetched at the slower
  end's bandwidth), and, in ``registry = "shared"`` mode, the executor registry: one real
  ``ExecutorRegistry`` that every submitter reads, fed by each executor's own core when it
  announces (each announcement is still counted as the flood it is).

CPU: each node has one simulated CPU. A frame sent or received costs ``CpuCosts.frame_s``, a
signature ``sign_s``, a check ``verify_s``; a message is handled when the receiver's CPU is
free, and a sender's frames leave one after the other. Floods (gossip, routed direct messages)
cost every member a signature check and ``degree`` frames in and out; that work is charged to
every node as it accrues.

Deterministic: every draw comes from ``random.Random`` seeded from the scenario's seed, the
event heap breaks ties by insertion order, and nothing iterates a set of strings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from icn_node.blobs.locations import BlobLocations
from icn_node.compute import (
    ComputeCore,
    Count,
    Effect,
    ExecutorRegistry,
    Ignored,
    JobRecord,
    Observe,
    Persist,
    Publish,
    Rejected,
    Send,
    StartRun,
    StateChanged,
    StopRun,
    TaskRecord,
)
from icn_node.config import ComputeSection
from icn_node.identity import did_from_public_key
from icn_node.scheduler import NodeCapacity
from icn_node.scheduler.resources import ComputeCapability, GpuDevice, GpuSpec, ResourceProfile
from icn_node.scheduler.tasks import TaskResult, TaskSpec, TaskState
from icn_node.wire import (
    COMPUTE_DIRECT_TOPIC,
    COMPUTE_TOPIC,
    Direct,
    ExecutorAnnounceMsg,
    Gossip,
    Message,
    Ping,
    Pong,
    encode_frame,
    encode_message,
)
from icn_sim.costs import CpuCosts
from icn_sim.network import ROUTED_STRETCH, Geography, cut_sides, hops, overlay, place
from icn_sim.scenario import GB, Scenario, TaskClass, Variant

__all__ = ["PLACEMENT_TAGS", "Outcome", "Simulation", "Task", "did_of"]

PLACEMENT_TAGS = frozenset(
    {
        "placement_request",
        "placement_offer",
        "decline",
        "claim",
        "claim_reply",
        "task_claimed",
        "task_submitted",
        "claim_request",
        "grant",
        "refuse",
    }
)
"""Messages of a placement (the rest run, report and cancel tasks, or announce executors)."""

FETCH_SETUP_S = 0.05
"""A fetch's set-up before bytes flow (request, first chunk), beside one RTT."""
NO_HOLDER_S = 5.0
"""How long a runner tries before it gives a task back whose input nobody reachable holds."""

# Event kinds (ints: the heap compares tuples).
_ARRIVE, _MSG, _TIMER, _RUN_START, _RUN_END, _CHURN, _BOOT = range(7)


def did_of(i: int) -> str:
    """Node ``i``'s DID: a well-formed ``did:key`` (no key behind it: nothing is signed)."""
    return did_from_public_key(hashlib.sha256(f"icn-sim node {i}".encode()).digest())


def _h(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


class Task(NamedTuple):
    """One task of the workload: when it arrives (seconds after the warm-up), its submitter
    (node index), its class, its input blob (None: no input) and how long it runs."""

    at: float
    submitter: int
    cls: TaskClass
    data: bytes | None
    duration: float


@dataclass(slots=True)
class _Node:
    i: int
    did: str
    capacity: NodeCapacity
    core: ComputeCore | None = None
    up: bool = True
    epoch: int = 0
    store: dict[bytes, TaskRecord] = field(default_factory=dict)
    jobs: dict[bytes, JobRecord] = field(default_factory=dict)
    cpu_free: float = 0.0
    bg_seen: float = 0.0
    timer_at: float = math.inf
    postponed: list[TaskSpec] = field(default_factory=list)


@dataclass
class Outcome:
    """What one run produced: the cores' own records, and the simulator's measurements."""

    scenario: str
    variant: str
    nodes: int
    submitted: int
    records: dict[bytes, TaskRecord]
    """Every task's latest record, as its submitter persisted it."""
    jobs: list[tuple[str, JobRecord]]
    """Every job record an executor persisted (executor DID, record), latest per task."""
    trust: Callable[[str, str], float]
    """trust(observer, subject): the scenario's trust table."""
    min_trust: float
    bytes_moved: int
    msgs: Counter[str]
    msg_bytes: Counter[str]
    bg_bytes: float
    bg_msgs: float
    sim_time: float
    wall_s: float
    events: int
    metrics: Counter[str]
    placements: int
    cpu_busy_s: float
    executors: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


class Simulation:
    """One scenario under one variant. :meth:`run` returns an :class:`Outcome`."""

    def __init__(
        self,
        scenario: Scenario,
        variant: Variant,
        *,
        costs: CpuCosts | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.sc = scenario
        self.variant = variant
        scale = scenario.network.cpu_scale
        base = costs or CpuCosts()
        self.costs = CpuCosts(base.frame_s * scale, base.sign_s * scale, base.verify_s * scale)
        self.routed = (variant.direct or scenario.network.direct) == "routed"
        self.progress = progress
        self.section: ComputeSection = scenario.section(variant)
        seed = scenario.seed
        self.rng_net = random.Random(f"{seed}:net")
        rng_place = random.Random(f"{seed}:place")
        rng_work = random.Random(f"{seed}:work")
        spec = scenario.nodes
        n = spec.count
        self.n = n
        self.geo: Geography = place(spec, rng_place)
        self.links = overlay(n, scenario.network.links, rng_place)
        self.hops = hops(n, scenario.network.degree)
        self.dids = [did_of(i) for i in range(n)]
        self.index = {d: i for i, d in enumerate(self.dids)}
        self.submitters = sorted(rng_place.sample(range(n), spec.submitters))
        self._is_submitter = [False] * n
        for s in self.submitters:
            self._is_submitter[s] = True
        self.nodes = [_Node(i, self.dids[i], self._capacity(i, rng_place)) for i in range(n)]
        self._trust_tables(rng_place)
        self.locations = BlobLocations(ttl_s=math.inf)
        self.view = self.locations.view()
        self.shared = scenario.network.registry == "shared"
        self.warmup_s = self.section.announce_interval_s
        """Before the first task: every node boots (at a random time) and announces."""
        self.registry = ExecutorRegistry(self.section.announce_interval_s)
        self._datasets: dict[str, list[tuple[bytes, int]]] = {}
        self._make_datasets(rng_work)
        self.tasks: list[Task] = self._make_tasks(rng_work)
        """The workload; replace it (and add to :attr:`locations`) before :meth:`run` to
        drive a given one."""
        # Event heap: (time, seq, kind, a, b, c).
        self._q: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = itertools.count()
        self.now = 0.0
        self._runs: dict[tuple[int, bytes], int] = {}
        self._run_ids = itertools.count(1)
        self._src = -1  # the sender whose message a core is handling (for its RTT map)
        self._bg_cpu = 0.0
        self._cut: list[bool] | None = None
        self._final: set[bytes] = set()
        self._submitted = 0
        self.msgs: Counter[str] = Counter()
        self.msg_bytes: Counter[str] = Counter()
        self.metrics: Counter[str] = Counter()
        self.bg_bytes = 0.0
        self.bg_msgs = 0.0
        self.bytes_moved = 0
        self.placements = 0
        self.events = 0
        self.cpu_busy = 0.0
        self._size_cache: dict[int, tuple[Message, int]] = {}
        self._announce_size: dict[int, int] = {}
        self._envelope = self._envelopes()
        for nd in self.nodes:
            self._build(nd)

    # -- set-up -----------------------------------------------------------------------------

    def _capacity(self, i: int, rng: random.Random) -> NodeCapacity:
        spec = self.sc.nodes
        lo, hi = spec.cpu_cores
        cores = float(round(rng.uniform(lo, hi))) if hi > lo else lo
        devices: list[GpuDevice] = []
        x = rng.random()
        acc = 0.0
        for model, frac in spec.gpus:
            acc += frac
            if x < acc:
                cc = ComputeCapability.parse(model.compute_capability)
                devices = [
                    GpuDevice(f"gpu{k}", model.name, model.memory_gb, cc)
                    for k in range(spec.gpus_per_node)
                ]
                break
        return NodeCapacity.from_totals(
            max(cores, 0.1), spec.memory_mb, 1_000_000, self.geo.bandwidth_mbps[i], devices
        )

    def _trust_tables(self, rng: random.Random) -> None:
        """Every node trusts every other at the default, except the groups' submitters, whom
        only a share of the executors trust."""
        default = self.sc.trust.default
        self._exec_trust: list[dict[str, float]] = [{} for _ in range(self.n)]
        subs = list(self.submitters)
        rng.shuffle(subs)
        at = 0
        for g in self.sc.trust.groups:
            k = round(g.submitters * len(subs))
            members = subs[at : at + k]
            at += k
            for e in range(self.n):
                value = g.trust if rng.random() < g.trusted_by else g.low
                table = self._exec_trust[e]
                for s in members:
                    table[self.dids[s]] = value
        self._default_trust = default

    def trust(self, observer: str, subject: str) -> float:
        """The scenario's trust table: ``observer``'s trust in ``subject`` (what the node's
        core is given as its ``trust``)."""
        return self._exec_trust[self.index[observer]].get(subject, self._default_trust)

    def _make_datasets(self, rng: random.Random) -> None:
        for c in self.sc.workload.classes:
            if c.dataset_gb is None:
                continue
            lo, hi = c.dataset_gb
            out = []
            for k in range(c.datasets):
                size = int(GB * (lo * (hi / lo) ** rng.random() if hi > lo > 0 else hi))
                size = max(1, size)
                h = _h("dataset", c.name, k)
                a, b = c.holders
                count = rng.randint(a, b)
                for holder in rng.sample(range(self.n), min(count, self.n)):
                    self.locations.add(h, self.dids[holder], size, 0.0)
                out.append((h, size))
            self._datasets[c.name] = out

    def _make_tasks(self, rng: random.Random) -> list[Task]:
        """Every task: Poisson arrivals at the workload's rate, a class by weight, a submitter
        and a dataset at random."""
        w = self.sc.workload
        weights = [c.weight for c in w.classes]
        out = []
        t = 0.0
        for _ in range(w.tasks):
            t += rng.expovariate(w.rate_per_s)
            c = rng.choices(w.classes, weights)[0]
            sub = self.submitters[rng.randrange(len(self.submitters))]
            data = None
            if c.dataset_gb is not None:
                data = self._datasets[c.name][rng.randrange(c.datasets)][0]
            lo, hi = c.duration_s
            out.append(Task(t, sub, c, data, rng.uniform(lo, hi)))
        return out

    def _spec(self, k: int) -> TaskSpec:
        t, sub, c, data, dur = self.tasks[k]
        gpu = None
        if c.gpu is not None:
            gpu = GpuSpec(c.gpu[0], ComputeCapability.parse(c.gpu[1]), 1)
        profile = ResourceProfile(
            cpu_cores=c.cpu_cores,
            memory_mb=c.memory_mb,
            gpu_spec=gpu,
            duration_estimate=round(dur, 3),
        )
        inputs: tuple[tuple[str, bytes], ...] = ()
        if data is not None:
            inputs = (("data", data),)
        return TaskSpec(
            code_blob=_h("module", c.name),
            submitter=self.dids[sub],
            fuel=20_000_000,
            nonce=_h("nonce", self.sc.seed, k)[:16],
            input_blobs=inputs,
            profile=profile,
            created_at=t,
        )

    def _build(self, nd: _Node) -> None:
        i = nd.i
        table = self._exec_trust[i]
        default = self._default_trust

        def trust(d: str, table: dict[str, float] = table) -> float:
            return table.get(d, default)

        section = self.section
        if self._is_submitter[i] and not self.sc.nodes.submitters_execute:
            section = dataclasses.replace(section, executor=False)
        core = ComputeCore.from_config(
            nd.did,
            trust,
            section,
            capacity=nd.capacity,
            rng=random.Random(f"{self.sc.seed}:core:{i}:{nd.epoch}"),
            region=self.geo.region(i),
            blob_registry=lambda: self.view,
            rtt_ms=functools.partial(self._rtt_map, i),
            bandwidth_mbps=functools.partial(self._bw_map, i),
        )
        registry: Any = core.registry
        if self.shared:
            # One registry for every submitter (see the module docstring); the public
            # attributes the core and its submitter read it through.
            registry = core.registry = self.registry
        core.submitter.registry = registry
        nd.core = core

    def _rtt_map(self, i: int) -> dict[str, float]:
        """What the node knows of its RTTs, as the daemon's network map would tell it: here
        only to the node whose message it handles (the one entry placement reads)."""
        s = self._src
        if s < 0 or s == i:
            return {}
        return {self.dids[s]: self.geo.rtt_ms(i, s)}

    def _bw_map(self, i: int) -> dict[str, float]:
        s = self._src
        if s < 0 or s == i:
            return {}
        return {self.dids[s]: min(self.geo.bandwidth_mbps[i], self.geo.bandwidth_mbps[s])}

    def _envelopes(self) -> tuple[int, int]:
        """Bytes the mesh adds around a compute message: a Direct frame, a signed Gossip."""
        direct = len(encode_frame(Direct(COMPUTE_DIRECT_TOPIC, b"")))
        gossip = len(
            encode_frame(Gossip(COMPUTE_TOPIC, self.dids[0], 2**40, 2**41, b"", bytes(64)))
        )
        return direct, gossip

    # -- the loop ---------------------------------------------------------------------------

    def _at(self, t: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        heapq.heappush(self._q, (t, next(self._seq), kind, a, b, c))

    def run(self) -> Outcome:
        wall0 = time.perf_counter()
        for k, task in enumerate(self.tasks):
            self._at(self.warmup_s + task.at, _ARRIVE, k)
        for ev in self.sc.churn:
            self._at(self.warmup_s + ev.at_s, _CHURN, ev, True)
            self._at(self.warmup_s + ev.at_s + ev.duration_s, _CHURN, ev, False)
        # Nodes boot at random times over the first announce interval (not all in the same
        # instant), and the workload starts once every executor has announced.
        boot = random.Random(f"{self.sc.seed}:boot")
        for nd in self.nodes:
            self._at(boot.uniform(0.0, self.warmup_s), _BOOT, nd.i)
        total = len(self.tasks)
        horizon = self.sc.horizon_s
        q = self._q
        pop = heapq.heappop
        last_report = 0.0
        nodes = self.nodes
        while q:
            t, _, kind, a, b, c = pop(q)
            if t > horizon:
                self.now = horizon
                break
            self.now = t
            self.events += 1
            if kind == _MSG:
                self._on_msg(a, b, c)
            elif kind == _TIMER:
                nd = nodes[a]
                if nd.up and nd.timer_at == t and nd.epoch == b:
                    nd.timer_at = math.inf
                    assert nd.core is not None
                    self._exec(nd, nd.core.on_timer(t))
            elif kind == _ARRIVE:
                self._arrive(a)
            elif kind == _RUN_START:
                self._run_start(a, b, c)
            elif kind == _RUN_END:
                self._run_end(a, b, c)
            elif kind == _CHURN:
                self._churn(a, b)
            elif kind == _BOOT:
                nd = nodes[a]
                if nd.up and nd.core is not None:
                    self._exec(nd, nd.core.on_timer(t))
            if self.progress is not None and self.events % 4096 == 0:
                w = time.perf_counter()
                if w - last_report > 0.25:
                    last_report = w
                    self.progress(len(self._final), total, t)
            if len(self._final) >= total and self._submitted >= total:
                break
        if self.progress is not None:
            self.progress(len(self._final), total, self.now)
        return self._outcome(time.perf_counter() - wall0)

    # -- workload -----------------------------------------------------------------------------

    def _arrive(self, k: int) -> None:
        spec = self._spec(k)
        nd = self.nodes[self.tasks[k].submitter]
        if not nd.up:
            nd.postponed.append(spec)  # the user submits again once the node is back
            return
        self._submit(nd, spec)

    def _submit(self, nd: _Node, spec: TaskSpec) -> None:
        self._submitted += 1
        assert nd.core is not None
        self._src = -1
        self._exec(nd, nd.core.submit(spec, self.now))

    # -- executing effects --------------------------------------------------------------------

    def _rearm(self, nd: _Node) -> None:
        if not nd.up or nd.core is None:
            return
        dl = nd.core.next_deadline()
        if dl is None:
            nd.timer_at = math.inf
            return
        dl = max(dl, self.now)
        if dl != nd.timer_at:
            nd.timer_at = dl
            self._at(dl, _TIMER, nd.i, nd.epoch)

    def _exec(self, nd: _Node, effects: list[Effect]) -> None:
        for e in effects:
            if not nd.up:
                break
            tp = type(e)
            if tp is Send:
                assert isinstance(e, Send)
                self._send(nd, self.index[e.to], e.msg)
            elif tp is Persist:
                assert isinstance(e, Persist)
                r = e.record
                if isinstance(r, TaskRecord):
                    nd.store[r.task_hash] = r
                else:
                    nd.jobs[r.task_hash] = r
            elif tp is StateChanged:
                assert isinstance(e, StateChanged)
                if e.new.is_final and (e.old is None or not e.old.is_final):
                    self._final.add(e.task_hash)
                elif e.new is TaskState.RUNNING:
                    self.placements += 1
            elif tp is Count:
                assert isinstance(e, Count)
                self.metrics[e.metric] += int(e.n)
            elif tp is Publish:
                assert isinstance(e, Publish)
                self._publish(nd, e.msg)
            elif tp is StartRun:
                assert isinstance(e, StartRun)
                self._start_run(nd, e)
            elif tp is StopRun:
                assert isinstance(e, StopRun)
                self._stop_run(nd, e)
            elif tp is Observe:
                pass
            elif tp is Ignored:
                self.metrics["ignored"] += 1
            elif tp is Rejected:
                self.metrics["rejected"] += 1
            else:  # pragma: no cover - a new effect the simulator does not know
                raise AssertionError(f"unrouted effect {e!r}")
        self._rearm(nd)

    def _size(self, msg: Message, origin: int = -1) -> int:
        """The message's encoded size (the real codec's). An executor's announcements differ
        only in their figures, so each node's first one is measured and its size reused."""
        if origin >= 0 and type(msg) is ExecutorAnnounceMsg:
            size = self._announce_size.get(origin)
            if size is None:
                size = self._announce_size[origin] = len(encode_message(msg))
            return size
        hit = self._size_cache.get(id(msg))
        if hit is not None and hit[0] is msg:
            return hit[1]
        size = len(encode_message(msg))
        if len(self._size_cache) > 4096:
            self._size_cache.clear()
        self._size_cache[id(msg)] = (msg, size)
        return size

    def _charge(self, nd: _Node, cost: float) -> float:
        """Put ``cost`` seconds of work on the node's CPU (after the flood work that accrued
        since it last worked); returns when it is done."""
        bg = self._bg_cpu - nd.bg_seen
        nd.bg_seen = self._bg_cpu
        # The flood work came in since the node last worked, and was done as soon as the CPU
        # was free: only what did not fit in the idle time since then delays this.
        busy_until = nd.cpu_free + bg
        start = busy_until if busy_until > self.now else self.now
        done = start + cost
        nd.cpu_free = done
        self.cpu_busy += cost
        return done

    def _linked(self, a: int, b: int) -> bool:
        return self.links is None or b in self.links[a]

    def _delay(self, a: int, b: int, size: int) -> float:
        jit = self.sc.network.jitter
        f = 1.0 + jit * (2.0 * self.rng_net.random() - 1.0) if jit else 1.0
        bw = min(self.geo.bandwidth_mbps[a], self.geo.bandwidth_mbps[b]) * 125_000.0
        return self.geo.rtt_ms(a, b) / 2000.0 * f + size / bw

    def _flood(self, size: int) -> None:
        """A signed message reaches every member: each checks it once and passes ``degree``
        frames in and out. Charged to every node; counted as background traffic."""
        d = self.sc.network.degree
        c = self.costs
        self._bg_cpu += c.verify_s + 2 * d * c.frame_s
        self.cpu_busy += (c.verify_s + 2 * d * c.frame_s) * self.n
        self.bg_bytes += 2.0 * d * size * self.n
        self.bg_msgs += 2.0 * d * self.n

    def _send(self, nd: _Node, dst: int, msg: Message) -> None:
        tag = msg.TAG
        body = self._size(msg)
        src = nd.i
        c = self.costs
        linked = not self.routed or self._linked(src, dst)
        if linked:
            size = body + self._envelope[0]
            depart = self._charge(nd, c.frame_s)
            arrive = depart + self._delay(src, dst, size)
        else:
            # Routed as signed gossip with a ``to`` (MeshCore.send_direct): a flood.
            size = body + self._envelope[1]
            links = len(self.links[src]) if self.links is not None else 1
            depart = self._charge(nd, c.sign_s + links * c.frame_s)
            self._flood(size)
            hop = c.verify_s + 2 * c.frame_s
            arrive = depart + self._delay(src, dst, size) * ROUTED_STRETCH + self.hops * hop
        self.msgs[tag] += 1
        self.msg_bytes[tag] += size
        if self._lost(src, dst):
            return
        cost = 0.0 if not linked else c.frame_s  # a flood's frames and check: everyone's
        self._at(arrive, _MSG, dst, (src, self.nodes[dst].epoch), (msg, cost))

    def _publish(self, nd: _Node, msg: Message) -> None:
        src = nd.i
        size = self._size(msg, src) + self._envelope[1]
        c = self.costs
        links = len(self.links[src]) if self.links is not None else self.n - 1
        depart = self._charge(nd, c.sign_s + links * c.frame_s)
        self._flood(size)
        tag = msg.TAG
        self.msgs[tag] += self.n - 1
        self.msg_bytes[tag] += size * (self.n - 1)
        if isinstance(msg, ExecutorAnnounceMsg) and self.shared:
            return  # the shared registry already has it: the origin's core announced to itself
        hop = c.verify_s + 2 * c.frame_s
        for dst in range(self.n):
            if dst == src or self._lost(src, dst):
                continue
            arrive = depart + self._delay(src, dst, size) * ROUTED_STRETCH + self.hops * hop
            self._at(arrive, _MSG, dst, (src, self.nodes[dst].epoch), (msg, 0.0))

    def _lost(self, src: int, dst: int) -> bool:
        if self._cut is not None and self._cut[src] != self._cut[dst]:
            return True
        loss = self.sc.network.loss
        return loss > 0.0 and self.rng_net.random() < loss

    def _on_msg(self, dst: int, sender: tuple[int, int], payload: tuple[Message, float]) -> None:
        """A message arrives; ``cost`` is the CPU it takes here (-1: already charged, its turn
        on the CPU has come)."""
        nd = self.nodes[dst]
        src, epoch = sender
        if not nd.up or nd.epoch != epoch:
            return  # lost with the node (or sent to its previous life)
        msg, cost = payload
        if cost >= 0.0:
            done = self._charge(nd, cost)
            if done > self.now + cost + 1e-9:
                # The CPU is busy: the message is handled when it gets to it.
                self._at(done, _MSG, dst, sender, (msg, -1.0))
                return
        assert nd.core is not None
        self._src = src
        self._exec(nd, nd.core.receive(self.dids[src], msg, self.now))
        self._src = -1

    # -- the fake runner ----------------------------------------------------------------------

    def _fetch(self, e: int, spec: TaskSpec) -> tuple[float, int] | None:
        """Time and bytes to bring the task's input to executor ``e`` from its nearest live,
        reachable holder; None when nobody can serve it."""
        secs = 0.0
        moved = 0
        for _, h in spec.input_blobs:
            hit = self.view.lookup(h)
            if hit is None:
                return None
            size, holders = hit
            if self.dids[e] in holders:
                continue
            best: tuple[float, int] | None = None
            for d in sorted(holders):
                j = self.index[d]
                if not self.nodes[j].up or (self._cut is not None and self._cut[j] != self._cut[e]):
                    continue
                rtt = self.geo.rtt_ms(e, j)
                if best is None or rtt < best[0]:
                    best = (rtt, j)
            if best is None:
                return None
            rtt, j = best
            bw = min(self.geo.bandwidth_mbps[e], self.geo.bandwidth_mbps[j]) * 125_000.0
            secs += FETCH_SETUP_S + rtt / 1000.0 + size / bw
            moved += size
        return secs, moved

    def _start_run(self, nd: _Node, a: StartRun) -> None:
        th = a.spec.task_hash
        key = (nd.i, th)
        assert key not in self._runs, "a task was started twice on one executor"
        run_id = next(self._run_ids)
        self._runs[key] = run_id
        fetch = self._fetch(nd.i, a.spec)
        if fetch is None:
            self._at(self.now + NO_HOLDER_S, _RUN_START, nd.i, (nd.epoch, run_id), (a, None))
            return
        secs, moved = fetch
        self._at(self.now + secs, _RUN_START, nd.i, (nd.epoch, run_id), (a, moved))

    def _alive(self, i: int, epoch: int, th: bytes, run_id: int) -> _Node | None:
        nd = self.nodes[i]
        if not nd.up or nd.epoch != epoch or self._runs.get((i, th)) != run_id:
            return None
        return nd

    def _run_start(self, i: int, ids: tuple[int, int], what: tuple[StartRun, int | None]) -> None:
        a, moved = what
        th = a.spec.task_hash
        nd = self._alive(i, ids[0], th, ids[1])
        if nd is None:
            return
        assert nd.core is not None
        if moved is None:
            del self._runs[(i, th)]
            self._exec(nd, nd.core.run_abandoned(th, "input not reachable", self.now))
            return
        if moved:
            self.bytes_moved += moved
            for _, h in a.spec.input_blobs:  # fetched blobs stay, and are announced
                hit = self.view.lookup(h)
                if hit is not None:
                    self.locations.add(h, nd.did, hit[0], self.now)
        started = self.now
        self._exec(nd, nd.core.run_started(th, self.now))
        profile = a.spec.profile
        dur = profile.duration_estimate if profile and profile.duration_estimate else 1.0
        done = (a.spec, a.attempt, started, TaskState.COMPLETED)
        self._at(self.now + dur, _RUN_END, i, (ids[0], ids[1]), done)

    def _run_end(
        self, i: int, ids: tuple[int, int], what: tuple[TaskSpec, int, float, TaskState]
    ) -> None:
        spec, attempt, started, state = what
        th = spec.task_hash
        nd = self._alive(i, ids[0], th, ids[1])
        if nd is None:
            return
        del self._runs[(i, th)]
        r = TaskResult(
            state=state,
            executor=nd.did,
            attempt=attempt,
            started_at=started,
            finished_at=self.now,
            fuel_used=1_000_000 if state is TaskState.COMPLETED else 0,
            exit_code=0 if state is TaskState.COMPLETED else None,
        )
        assert nd.core is not None
        self._exec(nd, nd.core.run_finished(th, r, self.now))

    def _stop_run(self, nd: _Node, a: StopRun) -> None:
        run_id = self._runs.get((nd.i, a.task_hash))
        job = nd.jobs.get(a.task_hash)
        if run_id is None or job is None:
            return
        stop = (job.spec, a.attempt, self.now, TaskState.CANCELLED)
        self._at(self.now, _RUN_END, nd.i, (nd.epoch, run_id), stop)

    # -- churn --------------------------------------------------------------------------------

    def _churn(self, ev: Any, begin: bool) -> None:
        if ev.kind == "crash":
            if begin:
                rng = random.Random(f"{self.sc.seed}:churn:{ev.at_s}")
                k = max(1, round(ev.fraction * self.n))
                ev_nodes = sorted(rng.sample(range(self.n), k))
                self._crashed = getattr(self, "_crashed", {})
                self._crashed[id(ev)] = ev_nodes
                for i in ev_nodes:
                    self.crash(i)
            else:
                for i in self._crashed.pop(id(ev), []):
                    self.restart(i)
        elif ev.kind == "partition":
            if begin:
                self._cut = cut_sides(self.geo, ev.regions)
            cut = self._cut
            assert cut is not None
            for s in self.submitters:
                nd = self.nodes[s]
                if not nd.up or nd.core is None:
                    continue
                peers = self.links[s] if self.links is not None else range(self.n)
                for j in sorted(peers):
                    if cut[j] != cut[s]:
                        event = nd.core.link_down if begin else nd.core.link_up
                        self._exec(nd, event(self.dids[j], self.now))
            if not begin:
                self._cut = None
            self.metrics[f"churn_{ev.kind}"] += 1

    def crash(self, i: int) -> None:
        """The node dies: its core, its runs and its messages in flight go; its records stay."""
        nd = self.nodes[i]
        if not nd.up:
            return
        nd.up = False
        nd.epoch += 1
        nd.timer_at = math.inf
        for key in [k for k in self._runs if k[0] == i]:
            del self._runs[key]
        self.metrics["crashes"] += 1
        self._links_event(i, up=False)

    def restart(self, i: int) -> None:
        """A fresh core from the node's records, as the daemon restarts from SQLite."""
        nd = self.nodes[i]
        if nd.up:
            return
        nd.up = True
        nd.cpu_free = self.now
        nd.bg_seen = self._bg_cpu
        self._build(nd)
        assert nd.core is not None
        tasks = [r for r in nd.store.values() if not r.state.is_final]
        self._exec(nd, nd.core.restore(tasks, list(nd.jobs.values()), self.now))
        self._links_event(i, up=True)
        postponed, nd.postponed = nd.postponed, []
        for spec in postponed:
            self._submit(nd, spec)

    def _links_event(self, i: int, up: bool) -> None:
        """The submitters linked to ``i`` hear that their link to it closed (or came back), as
        the mesh's peer events tell the daemon's driver."""
        did = self.dids[i]
        for s in self.submitters:
            if s == i or not self._linked(s, i):
                continue
            nd = self.nodes[s]
            if not nd.up or nd.core is None:
                continue
            event = nd.core.link_up if up else nd.core.link_down
            self._exec(nd, event(did, self.now))

    # -- the result ---------------------------------------------------------------------------

    def _background(self, sim_time: float) -> tuple[float, float]:
        """Mesh keepalives: every node pings each link every third of the liveness timeout and
        answers each ping (frames in and out counted at both ends)."""
        if sim_time <= 0:
            return 0.0, 0.0
        links = self.sc.network.links if self.links is not None else self.n - 1
        period = 10.0 / 3.0
        ping = len(encode_frame(Ping(2**40))) + len(encode_frame(Pong(2**40)))
        per_node = 2 * links * sim_time / period  # ping out + pong in, and the reverse
        return per_node * ping * self.n, 2 * per_node * self.n

    def _outcome(self, wall: float) -> Outcome:
        records: dict[bytes, TaskRecord] = {}
        for nd in self.nodes:
            records.update(nd.store)
        jobs = [(nd.did, j) for nd in self.nodes for j in nd.jobs.values()]
        ka_bytes, ka_msgs = self._background(self.now)
        return Outcome(
            scenario=self.sc.name,
            variant=self.variant.name,
            nodes=self.n,
            submitted=self._submitted,
            records=records,
            jobs=jobs,
            trust=self.trust,
            min_trust=self.section.min_trust_execute,
            bytes_moved=self.bytes_moved,
            msgs=self.msgs,
            msg_bytes=self.msg_bytes,
            bg_bytes=self.bg_bytes + ka_bytes,
            bg_msgs=self.bg_msgs + ka_msgs,
            sim_time=self.now,
            wall_s=wall,
            events=self.events,
            metrics=self.metrics,
            placements=self.placements,
            cpu_busy_s=self.cpu_busy,
            executors=[nd.did for nd in self.nodes if nd.core and nd.core.executor is not None],
            extra={"postponed": sum(len(nd.postponed) for nd in self.nodes)},
        )
