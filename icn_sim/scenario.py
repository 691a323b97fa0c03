"""Scenarios: a TOML file read into frozen, validated dataclasses.

A scenario says who the nodes are (how many, where, what hardware), what the network does
(jitter, loss, the overlay), the workload (task classes, arrival rate, datasets and their
holders), the trust tables, churn on a schedule, and the variants to compare (placement weights
and other ``[compute]`` keys, and how many executors a placement asks). ``scenarios/*.toml``
are the shipped ones; every key is documented in ``scenarios/README.md``.

Every error is a :class:`ScenarioError` naming the file and the dotted key
(``scenarios/x.toml: workload.rate_per_s: must be a number > 0, got -1``); the CLI exits 2.
The ``[compute]`` tables go through the daemon's own config loader, so a variant is a daemon
configuration and is checked exactly as ``icnd`` checks one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icn_node.config import ComputeSection, load_config
from icn_node.errors import ConfigError
from icn_node.scheduler.resources import ComputeCapability

__all__ = [
    "ChurnEvent",
    "GpuModel",
    "NetworkSpec",
    "NodesSpec",
    "Region",
    "Scenario",
    "ScenarioError",
    "TaskClass",
    "TrustGroup",
    "TrustSpec",
    "Variant",
    "Workload",
    "DEFAULT_VARIANTS",
    "load_scenario",
    "parse_scenario",
]

GB = 1_000_000_000
DIRECT = ("routed", "link")


class ScenarioError(Exception):
    """A scenario is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Region:
    name: str
    lat: float
    lon: float
    weight: float = 1.0
    spread_km: float = 800.0


@dataclass(frozen=True)
class GpuModel:
    name: str
    memory_gb: float
    compute_capability: str


@dataclass(frozen=True)
class NodesSpec:
    count: int
    submitters: int
    regions: tuple[Region, ...]
    cpu_cores: tuple[float, float] = (4.0, 16.0)
    memory_mb: int = 32768
    bandwidth_mbps: tuple[float, float] = (100.0, 1000.0)
    gpus: tuple[tuple[GpuModel, float], ...] = ()
    """(model, fraction of nodes) pairs; a GPU node has ``gpus_per_node`` of its model."""
    gpus_per_node: int = 1
    submitters_execute: bool = True
    """False: the submitting nodes run no executor (``compute.executor = false``)."""


@dataclass(frozen=True)
class NetworkSpec:
    jitter: float = 0.1
    """Each message's one-way delay is multiplied by a uniform factor in [1-j, 1+j]."""
    loss: float = 0.0
    """Probability that a compute message is lost (per recipient)."""
    links: int = 32
    """Overlay links per node (the mesh's ``max_peers``); 0: every pair is linked."""
    degree: int = 6
    """Gossip fan-out D (the mesh's ``degree``)."""
    registry: str = "shared"
    """``shared``: one executor registry fed once per announcement (large N); ``per-node``:
    every node's own registry, each announcement delivered to every node (small N)."""
    direct: str = "routed"
    """A direct message to a peer without a link: ``routed`` as today's mesh does (signed
    gossip flooded until it arrives), or ``link`` (one frame, as over a link opened to it)."""
    cpu_scale: float = 1.0
    """Multiplies every CPU cost (0: messages cost no simulated CPU, only latency)."""


@dataclass(frozen=True)
class TaskClass:
    name: str
    weight: float
    cpu_cores: float
    memory_mb: int
    duration_s: tuple[float, float]
    gpu: tuple[float, str] | None = None
    """(memory GB, compute capability) a task needs of one GPU."""
    dataset_gb: tuple[float, float] | None = None
    datasets: int = 0
    holders: tuple[int, int] = (1, 3)


@dataclass(frozen=True)
class Workload:
    tasks: int
    rate_per_s: float
    classes: tuple[TaskClass, ...]


@dataclass(frozen=True)
class TrustGroup:
    """A share of the submitters that only some executors trust."""

    submitters: float
    """Fraction of the submitters in the group."""
    trusted_by: float
    """Fraction of the executors that trust them at ``trust``; the rest trust them at ``low``."""
    trust: float = 0.9
    low: float = 0.1


@dataclass(frozen=True)
class TrustSpec:
    default: float = 0.9
    groups: tuple[TrustGroup, ...] = ()


@dataclass(frozen=True)
class ChurnEvent:
    at_s: float
    kind: str
    """``crash`` (a fraction of the executors, restarted after ``duration_s``) or
    ``partition`` (``regions`` cut off from the rest for ``duration_s``)."""
    duration_s: float
    fraction: float = 0.0
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    name: str
    compute: Mapping[str, Any]
    """``[compute]`` keys over the scenario's own (placement_weights, deliberation_ms, ...)."""
    ask: str = "all"
    """``all``: every executor that could fit (icnd today); ``sample:K``: K of them."""
    direct: str | None = None
    """Overrides the scenario's ``network.direct`` (a protocol variant of the mesh)."""

    @property
    def sample(self) -> int | None:
        return None if self.ask == "all" else int(self.ask.split(":", 1)[1])


DEFAULT_VARIANTS: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("seed-16a", {"placement_weights": "phase16a", "deliberation_ms": 500}),
    ("seed-16c", {"placement_weights": "phase16c", "deliberation_ms": 500}),
    ("icnd", {}),
)
"""The policy variants compared by default: the seed's 16A weights and the seed's 16C weights
(both with the seed's 500 ms deliberation) and icnd's defaults (16C weights, no deliberation)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    seed: int
    horizon_s: float
    nodes: NodesSpec
    network: NetworkSpec
    workload: Workload
    trust: TrustSpec
    churn: tuple[ChurnEvent, ...]
    compute: Mapping[str, Any]
    variants: tuple[Variant, ...]
    sweep: tuple[int, ...] = ()
    """Node counts at which the background cost is also computed (its growth with N)."""
    sweep_variant: str | None = None
    """The variant the sweep runs (None: the last one run)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def section(self, variant: Variant) -> ComputeSection:
        """The daemon's ``[compute]`` section for ``variant`` (validated as icnd does). The
        variant's ``ask`` is the production submitter's ``compute.invite``: 0 asks every
        executor that could fit, K invites a sample of K (``icn_node.compute.sample``)."""
        invite = 0 if variant.sample is None else variant.sample
        return compute_section(self.source, {**self.compute, "invite": invite, **variant.compute})

    def scaled(self, nodes: int | None = None, tasks: int | None = None) -> Scenario:
        """The same scenario with another node count (submitters scaled alike) or task count
        (the arrival rate scaled alike, so the load per node stays)."""
        from dataclasses import replace

        s = self
        if nodes is not None:
            subs = max(1, round(s.nodes.submitters * nodes / s.nodes.count))
            rate = s.workload.rate_per_s * nodes / s.nodes.count
            s = replace(
                s,
                nodes=replace(s.nodes, count=nodes, submitters=min(subs, nodes)),
                workload=replace(s.workload, rate_per_s=rate),
            )
        if tasks is not None:
            s = replace(s, workload=replace(s.workload, tasks=tasks))
        return s


def compute_section(source: str, raw: Mapping[str, Any]) -> ComputeSection:
    try:
        return load_config(None, env={}, overrides={"compute": dict(raw)}).compute
    except ConfigError as e:
        # The daemon's message names its own source ("defaults"); name the scenario's key.
        problem = str(e).split(f"{e.key}: ", 1)[-1] if e.key else str(e)
        raise ScenarioError(f"{source}: {e.key or 'compute'}: {problem}") from None


class _Table:
    """A TOML table with the path to it, for errors that name the key."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            self.fail(path or "(top)", f"must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self._known: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def fail(self, key: str, problem: str) -> None:
        raise ScenarioError(f"{self.source}: {key}: {problem}")

    def has(self, k: str) -> bool:
        self._known.add(k)
        return k in self.data

    def raw(self, k: str, default: Any = ...) -> Any:
        self._known.add(k)
        if k not in self.data:
            if default is ...:
                self.fail(self.key(k), "missing")
            return default
        return self.data[k]

    def table(self, k: str, required: bool = False) -> _Table:
        v = self.raw(k, ... if required else {})
        return _Table(self.source, self.key(k), v)

    def tables(self, k: str) -> list[_Table]:
        v = self.raw(k, [])
        if not isinstance(v, list):
            self.fail(self.key(k), "must be an array of tables ([[...]])")
        return [_Table(self.source, f"{self.key(k)}[{i}]", t) for i, t in enumerate(v)]

    def num(
        self, k: str, default: Any = ..., *, lo: float = 0.0, hi: float = 1e12, lo_open=False
    ) -> float:
        v = self.raw(k, default)
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        if ok and (v < lo or v > hi or (lo_open and v == lo)):
            ok = False
        if not ok:
            rel = ">" if lo_open else ">="
            self.fail(self.key(k), f"must be a number {rel} {lo:g} and <= {hi:g}, got {v!r}")
        return float(v)

    def int(self, k: str, default: Any = ..., *, lo: int = 0, hi: int = 10**9) -> int:
        v = self.raw(k, default)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            self.fail(self.key(k), f"must be an integer in [{lo}, {hi}], got {v!r}")
        return int(v)

    def flag(self, k: str, default: Any = ...) -> bool:
        v = self.raw(k, default)
        if not isinstance(v, bool):
            self.fail(self.key(k), f"must be true or false, got {v!r}")
        return bool(v)

    def text(self, k: str, default: Any = ..., choices: tuple[str, ...] = ()) -> str:
        v = self.raw(k, default)
        if not isinstance(v, str) or not v or (choices and v not in choices):
            want = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            self.fail(self.key(k), f"must be {want}, got {v!r}")
        return str(v)

    def range(
        self, k: str, default: Any = ..., *, lo: float = 0.0, hi: float = 1e12
    ) -> tuple[float, float]:
        """A number, or a [low, high] pair (a uniform draw)."""
        v = self.raw(k, default)
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = [v, v]
        if (
            not isinstance(v, list | tuple)
            or len(v) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
            or not lo <= v[0] <= v[1] <= hi
        ):
            self.fail(
                self.key(k), f"must be a number or [low, high] within [{lo:g}, {hi:g}], got {v!r}"
            )
        return (float(v[0]), float(v[1]))

    def done(self) -> None:
        """Every key was read: an unknown one is a typo, named."""
        extra = sorted(set(self.data) - self._known)
        if extra:
            known = ", ".join(sorted(self._known))
            self.fail(self.key(extra[0]), f"unknown key (known: {known})")


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read and validate the scenario file at ``path``; each of ``overrides`` is
    ``dotted.key=VALUE`` (a TOML value, e.g. ``network.cpu_scale=0``), set before validation."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    for o in overrides:
        key, eq, value = o.partition("=")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"] if eq else None
        except tomllib.TOMLDecodeError:
            parsed = None
        if not key or parsed is None:
            raise ScenarioError(f"--set {o}: expected KEY=VALUE with a TOML value")
        table = data
        *path_, last = key.split(".")
        for part in path_:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ScenarioError(f"--set {o}: {part} is not a table")
        table[last] = parsed
    return parse_scenario(data, str(p))


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    top = _Table(source, "", dict(data))
    name = top.text("name")
    seed = top.int("seed", 1, hi=2**63)
    horizon = top.num("horizon_s", 86_400.0, lo=1.0)
    nodes = _nodes(top.table("nodes", required=True))
    network = _network(top.table("network"))
    workload = _workload(top.table("workload", required=True), nodes)
    trust = _trust(top.table("trust"))
    churn = tuple(_churn(t, nodes) for t in top.tables("churn"))
    compute = dict(top.table("compute").data)
    compute_section(source, compute)
    variants = _variants(top, source, compute)
    sweep_raw = top.raw("sweep", [])
    if not isinstance(sweep_raw, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 2 for x in sweep_raw
    ):
        top.fail("sweep", f"must be a list of node counts >= 2, got {sweep_raw!r}")
    sweep_variant = top.text("sweep_variant", None) if top.has("sweep_variant") else None
    if sweep_variant is not None and sweep_variant not in {v.name for v in variants}:
        top.fail("sweep_variant", f"no variant named {sweep_variant!r}")
    top.done()
    return Scenario(
        name=name,
        source=source,
        seed=seed,
        horizon_s=horizon,
        nodes=nodes,
        network=network,
        workload=workload,
        trust=trust,
        churn=churn,
        compute=compute,
        variants=variants,
        sweep=tuple(sweep_raw),
        sweep_variant=sweep_variant,
    )


def _nodes(t: _Table) -> NodesSpec:
    count = t.int("count", lo=2, hi=1_000_000)
    subs = t.int("submitters", max(1, count // 10), lo=1, hi=count)
    regions = []
    for r in t.tables("regions"):
        regions.append(
            Region(
                r.text("name"),
                r.num("lat", lo=-90, hi=90),
                r.num("lon", lo=-180, hi=180),
                r.num("weight", 1.0, lo=0.0, lo_open=True),
                r.num("spread_km", 800.0),
            )
        )
        r.done()
    if not regions:
        regions = [Region("eu", 50.0, 10.0)]
    if len({r.name for r in regions}) != len(regions):
        t.fail(t.key("regions"), "region names must be distinct")
    gpus = []
    for g in t.tables("gpus"):
        cc = g.text("compute_capability")
        try:
            ComputeCapability.parse(cc)
        except Exception as e:  # the scheduler's own parse error, reworded with the key
            g.fail(g.key("compute_capability"), str(e))
        model = GpuModel(g.text("model"), g.num("memory_gb", lo=0.0, lo_open=True), cc)
        gpus.append((model, g.num("fraction", lo=0.0, hi=1.0)))
        g.done()
    spec = NodesSpec(
        count=count,
        submitters=subs,
        regions=tuple(regions),
        cpu_cores=t.range("cpu_cores", [4, 16], lo=0.1, hi=1024),
        memory_mb=t.int("memory_mb", 32768, lo=128),
        bandwidth_mbps=t.range("bandwidth_mbps", [100, 1000], lo=0.1, hi=1e6),
        gpus=tuple(gpus),
        gpus_per_node=t.int("gpus_per_node", 1, lo=1, hi=64),
        submitters_execute=t.flag("submitters_execute", True),
    )
    if sum(f for _, f in spec.gpus) > 1.0 + 1e-9:
        t.fail(t.key("gpus"), "the fractions add up to more than 1")
    t.done()
    return spec


def _network(t: _Table) -> NetworkSpec:
    spec = NetworkSpec(
        jitter=t.num("jitter", 0.1, hi=0.9),
        loss=t.num("loss", 0.0, hi=0.5),
        links=t.int("links", 32, hi=10_000),
        degree=t.int("degree", 6, lo=1, hi=100),
        registry=t.text("registry", "shared", ("shared", "per-node")),
        direct=t.text("direct", "routed", DIRECT),
        cpu_scale=t.num("cpu_scale", 1.0, hi=1000.0),
    )
    t.done()
    return spec


def _workload(t: _Table, nodes: NodesSpec) -> Workload:
    classes = []
    for c in t.tables("classes"):
        gpu = None
        if c.has("gpu_memory_gb") or c.has("compute_capability"):
            cc = c.text("compute_capability")
            try:
                ComputeCapability.parse(cc)
            except Exception as e:
                c.fail(c.key("compute_capability"), str(e))
            gpu = (c.num("gpu_memory_gb", lo=0.0, lo_open=True), cc)
        data = c.range("dataset_gb", lo=0.0, hi=10_000) if c.has("dataset_gb") else None
        holders = c.range("holders", [1, 3], lo=1, hi=nodes.count)
        tc = TaskClass(
            name=c.text("name"),
            weight=c.num("weight", 1.0, lo=0.0, lo_open=True),
            cpu_cores=c.num("cpu_cores", 1.0, lo=0.0, lo_open=True, hi=1024),
            memory_mb=c.int("memory_mb", 1024, lo=1),
            duration_s=c.range("duration_s", lo=0.001, hi=1e6),
            gpu=gpu,
            dataset_gb=data,
            datasets=c.int("datasets", 100 if data else 0, lo=0, hi=10_000_000),
            holders=(int(holders[0]), int(holders[1])),
        )
        if tc.dataset_gb is not None and tc.datasets < 1:
            c.fail(c.key("datasets"), "a class with dataset_gb needs datasets >= 1")
        classes.append(tc)
        c.done()
    if not classes:
        t.fail(t.key("classes"), "at least one task class ([[workload.classes]])")
    w = Workload(
        tasks=t.int("tasks", lo=1, hi=100_000_000),
        rate_per_s=t.num("rate_per_s", lo=0.0, lo_open=True),
        classes=tuple(classes),
    )
    t.done()
    return w


def _trust(t: _Table) -> TrustSpec:
    groups = []
    for g in t.tables("groups"):
        groups.append(
            TrustGroup(
                submitters=g.num("submitters", hi=1.0),
                trusted_by=g.num("trusted_by", hi=1.0),
                trust=g.num("trust", 0.9, hi=1.0),
                low=g.num("low", 0.1, hi=1.0),
            )
        )
        g.done()
    spec = TrustSpec(default=t.num("default", 0.9, hi=1.0), groups=tuple(groups))
    t.done()
    return spec


def _churn(t: _Table, nodes: NodesSpec) -> ChurnEvent:
    kind = t.text("kind", choices=("crash", "partition"))
    ev = ChurnEvent(
        at_s=t.num("at_s"),
        kind=kind,
        duration_s=t.num("duration_s", lo=0.0, lo_open=True),
        fraction=t.num("fraction", 0.0, hi=1.0),
        regions=tuple(str(r) for r in t.raw("regions", [])),
    )
    names = {r.name for r in nodes.regions}
    if kind == "partition":
        if not ev.regions or not set(ev.regions) <= names:
            t.fail(t.key("regions"), f"must name regions of the scenario ({', '.join(names)})")
    elif ev.fraction <= 0.0:
        t.fail(t.key("fraction"), "a crash needs a fraction of the executors > 0")
    t.done()
    return ev


def _variants(top: _Table, source: str, base: Mapping[str, Any]) -> tuple[Variant, ...]:
    asks_raw = top.raw("asks", ["all"])
    if not isinstance(asks_raw, list) or not asks_raw:
        top.fail("asks", "must be a non-empty list such as ['all', 'sample:8']")
    asks = [_ask(top, "asks", a) for a in asks_raw]
    out: list[Variant] = []
    tables = top.tables("variants")
    if tables:
        for v in tables:
            comp = dict(v.table("compute").data)
            compute_section(f"{source}: {v.key('compute')}", {**base, **comp})
            ask = _ask(v, v.key("ask"), v.raw("ask", asks[0]))
            direct = v.text("direct", None, DIRECT) if v.has("direct") else None
            out.append(Variant(v.text("name"), comp, ask, direct))
            v.done()
    else:
        for ask in asks:
            suffix = "" if len(asks) == 1 else f" ask={ask}"
            out += [Variant(f"{n}{suffix}", c, ask) for n, c in DEFAULT_VARIANTS]
    if len({v.name for v in out}) != len(out):
        top.fail("variants", "variant names must be distinct")
    return tuple(out)


def _ask(t: _Table, key: str, v: Any) -> str:
    if v == "all":
        return "all"
    if isinstance(v, str) and v.startswith("sample:"):
        k = v.split(":", 1)[1]
        if k.isdigit() and int(k) >= 1:
            return f"sample:{int(k)}"
    t.fail(key, f"must be 'all' or 'sample:K' with K >= 1, got {v!r}")
    raise AssertionError  # unreachable: fail raises
