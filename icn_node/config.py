"""Configuration: one TOML file, environment overrides, validated once into a frozen object.

Precedence, lowest first: the defaults below, the TOML file (``--config``), then environment
variables ``ICN_<SECTION>_<KEY>`` (for example ``ICN_MESH_LISTEN`` or
``ICN_COMPUTE_MIN_TRUST_EXECUTE``). Every key is declared once here, with its type, default,
check and one line of documentation; ``config/icnd.toml`` ships the same keys with the same
defaults (a test keeps the two in step). Anything wrong raises :class:`ConfigError` naming the
file (or variable), the key and the problem.
"""

from __future__ import annotations

import copy
import dataclasses
import grp
import ipaddress
import math
import os
import re
import socket
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .errors import ConfigError, IdentityError
from .identity import validate_did

ENV_PREFIX = "ICN_"
MAX_FILE_BYTES = 1 << 20
"""A config file larger than this is refused (it is a few kilobytes; this stops ``/dev/zero``)."""


# --- checks -----------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value for an error message: tables and lists by kind, anything long shortened."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and not all(isinstance(v, str | int | float) for v in value):
        return "a list of tables or lists"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def parse_hostport(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); raises ValueError."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"expected host:port, got {_show(text)}")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [v6-address]:port, got {_show(text)}")
    else:
        host, _, port = text.rpartition(":")
    if not host:
        raise ValueError(f"missing host in {_show(text)}")
    try:
        num = int(port)
    except ValueError:
        raise ValueError(f"port must be a number in {_show(text)}") from None
    if not 0 <= num <= 65535:
        raise ValueError(f"port {_show(num)} out of range 0-65535 in {_show(text)}")
    return host, num


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def check_hostport(text: str, *, listen: bool = False) -> tuple[str, int]:
    """A config address, strictly: ``host:port`` or ``[v6]:port``, where host is an IP literal
    or a host name (RFC 1123 labels), and port 1-65535 in ASCII digits (0 too for a ``listen``
    address: the system picks one). Raises ValueError saying what is wrong. Does not resolve
    names: :func:`address_errors` does, for ``check-config`` and ``icnd run``."""
    host, port = parse_hostport(text)
    port_text = text.rpartition(":")[2]
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        raise ValueError(f"port must be digits 0-9 in {_show(text)}")
    if port == 0 and not listen:
        raise ValueError(f"port 0 is only meaningful for a listen address, in {_show(text)}")
    bracketed = text.startswith("[")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if bracketed:
        if not isinstance(ip, ipaddress.IPv6Address):
            raise ValueError(f"only an IPv6 address goes in brackets, got {_show(text)}")
    elif ":" in host:
        raise ValueError(f"an IPv6 address needs brackets, [{host}]:{port}, got {_show(text)}")
    elif ip is None:
        name = host[:-1] if host.endswith(".") else host
        labels = name.split(".")
        if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
            raise ValueError(f"{_show(host)} is neither an IP address nor a valid host name")
        if labels[-1].isdigit():
            raise ValueError(f"{_show(host)} is not a valid IPv4 address")
    return host, port


def _address(*, listen: bool = False, optional: bool = False) -> Callable[[str], None]:
    def check(v: str) -> None:
        if v or not optional:
            check_hostport(v, listen=listen)

    return check


def _hostports(v: list[str]) -> None:
    for i, item in enumerate(v):
        try:
            check_hostport(item)
        except ValueError as e:
            raise ValueError(f"entry {i + 1}: {e}") from None


def _dids(v: list[str]) -> None:
    for did in v:
        try:
            validate_did(did)
        except IdentityError as e:
            raise ValueError(str(e)) from None


def _absolute_paths(v: list[str]) -> None:
    for path in v:
        if not path.startswith("/"):
            raise ValueError(f"expected absolute paths, got {_show(path)}")


def _between(lo: float, hi: float) -> Callable[[float], None]:
    def check(v: float) -> None:
        if not (lo <= v <= hi):
            raise ValueError(f"must be between {lo} and {hi}, got {_show(v)}")

    return check


def _positive(v: float) -> None:
    if not v > 0:
        raise ValueError(f"must be greater than 0, got {_show(v)}")


def _non_negative(v: float) -> None:
    if v < 0:
        raise ValueError(f"must not be negative, got {_show(v)}")


def _one_of(*choices: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {_show(v)}")

    return check


def _trust_table(v: dict[str, float]) -> None:
    for did, score in v.items():
        try:
            validate_did(did)
        except IdentityError as e:
            raise ValueError(str(e)) from None
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise ValueError(f"trust for {did} must be a number, got {_show(score)}")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"trust for {did} must be between 0 and 1, got {_show(score)}")


def _group(v: str) -> None:
    if not v:
        return
    try:
        grp.getgrgid(int(v)) if v.isdigit() else grp.getgrnam(v)
    except (KeyError, ValueError, OverflowError):
        shown = repr(v) if len(v) <= 64 else f"{v[:48]!r}... ({len(v)} characters)"
        raise ValueError(f"no group {shown} on this host") from None


def key(default: Any, doc: str, check: Callable[[Any], None] | None = None) -> Any:
    """Declare one config key: its default, a line of documentation and an optional check."""
    meta = {"doc": doc, "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=partial(copy.copy, default), metadata=meta)
    return field(default=default, metadata=meta)


# --- sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSection:
    data_dir: str = key("/var/lib/icn", "Directory for the node key, databases and blobs.")
    region: str = key("", "Region this node advertises (free text, e.g. eu-west); empty: none.")


@dataclass(frozen=True)
class LogSection:
    level: str = key("info", "Log level.", _one_of("debug", "info", "warning", "error"))
    format: str = key(
        "auto",
        "auto: console on a terminal, JSON lines otherwise; or console, json.",
        _one_of("auto", "console", "json"),
    )


@dataclass(frozen=True)
class MeshSection:
    listen: str = key(
        "0.0.0.0:7946",
        "TLS listener address (host:port; port 0 picks one).",
        _address(listen=True),
    )
    advertise: str = key(
        "",
        "Address peers should dial (host:port); empty: the listen address.",
        _address(optional=True),
    )
    bootstrap: list[str] = key([], "Addresses (host:port) dialled at start.", _hostports)
    members: list[str] = key([], "DIDs admitted to the mesh (the cooperative's members).", _dids)
    open: bool = key(False, "Admit any DID (development only; logged as a warning at start).")
    max_frame_bytes: int = key(
        1048576, "Largest frame accepted on a link.", _between(1024, 64 << 20)
    )
    replay_window_s: float = key(
        60.0, "Gossip older or newer than this (seconds) is dropped.", _positive
    )
    max_gossip_per_origin_s: float = key(
        200.0,
        "Gossip taken per second from one origin over one link, checked before its signature "
        "(burst: twice); more is dropped as rate-limit and goes no further.",
        _between(1.0, 1e6),
    )
    max_direct_per_peer_s: float = key(
        2000.0,
        "Direct messages taken per second from one linked peer (burst: twice); more are "
        "dropped as rate-limit.",
        _between(1.0, 1e6),
    )
    degree: int = key(6, "Target gossip mesh degree D.", _between(1, 64))
    degree_low: int = key(4, "Graft below this many mesh peers.", _between(1, 64))
    degree_high: int = key(12, "Prune above this many mesh peers.", _between(1, 64))
    heartbeat_interval_s: float = key(1.0, "Mesh heartbeat period (seconds).", _positive)
    liveness_timeout_s: float = key(10.0, "A peer silent this long is dropped.", _positive)
    redial_min_s: float = key(
        0.5, "First redial backoff (seconds); doubles with jitter.", _positive
    )
    redial_max_s: float = key(30.0, "Longest redial backoff (seconds).", _positive)
    send_queue_len: int = key(
        1024, "Frames queued per peer before it is dropped as stuck.", _between(8, 1 << 20)
    )
    handshake_timeout_s: float = key(
        5.0, "Time allowed for TLS and Hello on a new link.", _positive
    )
    max_peers: int = key(
        32,
        "Dial while fewer peers are connected; refuse links beyond twice this.",
        _between(1, 4096),
    )


@dataclass(frozen=True)
class RpcSection:
    socket: str = key("", "Unix socket path for icnctl; empty: <data_dir>/icnd.sock.")
    max_request_bytes: int = key(
        1048576, "Largest request line accepted.", _between(1024, 64 << 20)
    )
    idle_timeout_s: float = key(
        30.0,
        "A client that sends no complete request for this long (or passes a descriptor that "
        "moves no bytes) is disconnected.",
        _positive,
    )
    allowed_group: str = key(
        "",
        "Group (name or gid) whose members may use the socket besides icnd's user and root; "
        "the socket file is given to it. Empty: only those two.",
        _group,
    )


@dataclass(frozen=True)
class MetricsSection:
    listen: str = key(
        "127.0.0.1:9464",
        "Prometheus endpoint (host:port); empty: disabled.",
        _address(listen=True, optional=True),
    )
    dashboard: bool = key(
        True,
        "Also serve the web dashboard and its read-only JSON API (/, /api/v1/) on metrics.listen.",
    )


@dataclass(frozen=True)
class TrustSection:
    default: float = key(0.0, "Trust in a DID not listed in [trust.peers].", _between(0.0, 1.0))
    peers: dict[str, float] = key({}, "Table of DID = trust score in [0, 1].", _trust_table)


@dataclass(frozen=True)
class ComputeSection:
    executor: bool = key(True, "Run tasks for others (an executor); false: submit only.")
    min_trust_execute: float = key(
        0.3,
        "Serve a submitter, or use an executor, only if trusted at least this much.",
        _between(0.0, 1.0),
    )
    offer_window_ms: int = key(
        1000, "Longest wait for offers after a placement request.", _between(1, 600_000)
    )
    deliberation_ms: int = key(
        0, "Executor delay before offering (the seed used 500).", _between(0, 60_000)
    )
    announce_interval_s: float = key(10.0, "Executor announcement period (seconds).", _positive)
    max_attempts: int = key(3, "Placements tried per task before it fails.", _between(1, 100))
    lease_timeout_s: float = key(
        20.0,
        "A running executor silent this long (no heartbeat) is lost; the task is re-placed.",
        _between(0.01, 86_400),
    )
    heartbeat_interval_s: float = key(
        5.0, "Executor heartbeat period per running task (seconds).", _between(0.01, 3_600)
    )
    claim_timeout_s: float = key(
        5.0, "Submitter wait for a claim reply (seconds).", _between(0.01, 3_600)
    )
    result_resend_s: float = key(
        5.0,
        "Executor re-sends an unacknowledged result this often (seconds).",
        _between(0.01, 3_600),
    )
    exec_allowlist: list[str] = key(
        [],
        "Host commands (absolute paths) tasks may run with the exec runtime; empty: exec off.",
        _absolute_paths,
    )
    link_grace_s: float = key(
        3.0,
        "A running executor whose link closed and stays down this long is lost (re-placed).",
        _between(0.1, 3_600),
    )
    max_requests_per_s: float = key(
        300.0,
        "Placement requests this executor takes from one member per second (burst: twice).",
        _between(1.0, 1e6),
    )
    placement_weights: str = key(
        "phase16c",
        "Score weights: phase16c (trust, capacity, queue, data locality, network) or "
        "phase16a (no locality: the locality-blind baseline).",
        _one_of("phase16a", "phase16c"),
    )
    announce_budget_per_s: float = key(
        5.0,
        "Executor announcements a second the whole cooperative should make: beyond "
        "announce_interval_s x this many executors, the interval grows with their number.",
        _between(0.01, 1e6),
    )
    invite: int = key(
        16,
        "Executors a placement invites: the data's holders, the best by announcements and a "
        "few explored (0: every executor that could fit). Doubled per round nobody took.",
        _between(0, 1_000_000),
    )
    max_negotiating: int = key(
        32,
        "Tasks this submitter places at once; more wait, queued in order, as pending.",
        _between(1, 1_000_000),
    )


@dataclass(frozen=True)
class CapacitySection:
    cpu_cores: float = key(0.0, "Cap on advertised CPU cores; 0: what the host has.", _non_negative)
    memory_mb: int = key(0, "Cap on advertised memory (MB); 0: what the host has.", _non_negative)
    storage_mb: int = key(
        0, "Cap on advertised storage (MB); 0: free space of data_dir.", _non_negative
    )
    network_mbps: float = key(
        0.0,
        "Cap on advertised link speed, also used when the NIC reports none; 0: reported or 1000.",
        _non_negative,
    )
    gpus: bool = key(True, "Probe NVIDIA GPUs through NVML.")
    sample_interval_s: float = key(5.0, "How often capacity and load are re-measured.", _positive)


@dataclass(frozen=True)
class BlobsSection:
    quota_mb: int = key(
        0,
        "Most blob storage this node keeps (MB); a put beyond it is refused; 0: no quota.",
        _non_negative,
    )
    announce_interval_s: float = key(
        600.0,
        "Every blob held is re-announced this often; locations expire after three missed.",
        _between(1.0, 86_400),
    )


SECTIONS: dict[str, type] = {
    "node": NodeSection,
    "log": LogSection,
    "mesh": MeshSection,
    "rpc": RpcSection,
    "metrics": MetricsSection,
    "trust": TrustSection,
    "compute": ComputeSection,
    "capacity": CapacitySection,
    "blobs": BlobsSection,
}


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. Build with :func:`load_config`."""

    node: NodeSection = field(default_factory=NodeSection)
    log: LogSection = field(default_factory=LogSection)
    mesh: MeshSection = field(default_factory=MeshSection)
    rpc: RpcSection = field(default_factory=RpcSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    trust: TrustSection = field(default_factory=TrustSection)
    compute: ComputeSection = field(default_factory=ComputeSection)
    capacity: CapacitySection = field(default_factory=CapacitySection)
    blobs: BlobsSection = field(default_factory=BlobsSection)
    source: str = "defaults"
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Where each key that is not at its default was set ("mesh.listen" → the file, an
    environment variable or "command line")."""

    def origin(self, *keys: str) -> str:
        """Where the first of ``keys`` that was set came from (else the file, or "defaults")."""
        for k in keys:
            if k in self.origins:
                return self.origins[k]
        return self.source

    @property
    def data_dir(self) -> Path:
        return Path(self.node.data_dir)

    @property
    def rpc_socket(self) -> Path:
        return Path(self.rpc.socket) if self.rpc.socket else self.data_dir / "icnd.sock"

    def trust_in(self, did: str) -> float:
        """This node's trust in ``did`` (the table, else the default)."""
        return self.trust.peers.get(did, self.trust.default)

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections or single keys replaced: ``replace(mesh={"open": True})``."""
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            changes[name] = (
                dataclasses.replace(current, **value) if isinstance(value, Mapping) else value
            )
        return dataclasses.replace(self, **changes)


# --- loading ----------------------------------------------------------------------------------


def _field_types(section: type) -> dict[str, Any]:
    return typing.get_type_hints(section)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list of strings"
    if origin is dict:
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(value: Any, tp: Any) -> Any:
    """Check ``value`` against the declared type; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the float range
            raise TypeError from None
        if math.isnan(value) or math.isinf(value):
            raise TypeError
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


def _from_env_text(text: str, tp: Any) -> Any:
    """Parse an environment variable's text according to the key's type."""
    origin = typing.get_origin(tp)
    if origin is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise TypeError
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    return text


def _build_section(name: str, cls: type, raw: dict[str, Any], origins: dict[str, str]) -> Any:
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for k, v in raw.items():
        src = origins[f"{name}.{k}"]
        if k not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"unknown key (known keys: {known})", source=src, key=f"{name}.{_label(k)}"
            )
        try:
            value = _coerce(v, hints[k])
        except TypeError:
            raise ConfigError(
                f"must be {_type_name(hints[k])}, got {_show(v)}", source=src, key=f"{name}.{k}"
            ) from None
        values[k] = value
    section = cls(**values)
    for k, f in fields.items():
        check = f.metadata.get("check")
        if check is None:
            continue
        try:
            check(getattr(section, k))
        except ValueError as e:
            dotted = f"{name}.{k}"
            raise ConfigError(str(e), source=origins.get(dotted, "defaults"), key=dotted) from None
    return section


def _label(name: str) -> str:
    """A key or section name as written in an error: bare when it is a plain word."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) else _show(name)


def _cross_checks(cfg: Config) -> None:
    m = cfg.mesh
    if not m.degree_low <= m.degree <= m.degree_high:
        raise ConfigError(
            f"need degree_low <= degree <= degree_high, got {m.degree_low} <= {m.degree} <= "
            f"{m.degree_high}",
            source=cfg.origin("mesh.degree", "mesh.degree_low", "mesh.degree_high"),
            key="mesh.degree",
        )
    if m.redial_min_s > m.redial_max_s:
        raise ConfigError(
            "redial_min_s must not exceed redial_max_s",
            source=cfg.origin("mesh.redial_min_s", "mesh.redial_max_s"),
            key="mesh.redial_min_s",
        )
    if not cfg.node.data_dir:
        raise ConfigError(
            "must not be empty", source=cfg.origin("node.data_dir"), key="node.data_dir"
        )


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The TOML document in ``path``; ConfigError naming the file when it cannot be read or is
    not a TOML file (not UTF-8, bad syntax, nested too deeply, larger than MAX_FILE_BYTES)."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a TOML file", source=source) from None
    except OSError as e:
        raise ConfigError(f"cannot read ({e.strerror or e})", source=source) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"not a TOML file (larger than {MAX_FILE_BYTES} bytes)", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"not a TOML file (not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}, "
            f"line {line})",
            source=source,
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not a TOML file ({e})", source=source) from None
    except RecursionError:
        raise ConfigError(
            "not a TOML file (arrays or tables nested too deeply)", source=source
        ) from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise ConfigError("not a TOML file (a number too long to read)", source=source) from None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read, merge and validate the configuration.

    ``path``: a TOML file (None: defaults only). ``env``: the environment to read ``ICN_*``
    overrides from (default ``os.environ``). ``overrides``: section → key → value applied last
    (used by the command line). Raises :class:`ConfigError` only; looks nothing up on the
    network (:func:`address_errors` resolves host names).
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "defaults"
    raw: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    if path is not None:
        for name, body in read_config_file(path).items():
            if name not in SECTIONS:
                known = ", ".join(SECTIONS)
                if isinstance(body, dict):
                    problem = f"unknown section [{_label(name)}] (known: {known})"
                else:
                    problem = (
                        f"{_label(name)} = ... is outside any section; keys go under a "
                        f"[section] (known: {known})"
                    )
                raise ConfigError(problem, source=source)
            if not isinstance(body, dict):
                raise ConfigError(
                    f"must be a table ([{name}]), got {_show(body)}", source=source, key=name
                )
            raw[name] = dict(body)
            origins.update((f"{name}.{k}", source) for k in body)

    for var, text in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        section_name, _, key_name = var[len(ENV_PREFIX) :].lower().partition("_")
        if section_name not in SECTIONS or not key_name:
            continue  # e.g. ICN_SOCKET, read by icnctl, not a daemon key
        where = f"environment {var}"
        hints = _field_types(SECTIONS[section_name])
        dotted = f"{section_name}.{key_name}"
        if key_name not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"unknown key {dotted} (known keys: {known})", source=where)
        if typing.get_origin(hints[key_name]) is dict:
            raise ConfigError("a table; set it in the config file", source=where, key=dotted)
        try:
            value = _from_env_text(text, hints[key_name])
        except (TypeError, ValueError):
            raise ConfigError(
                f"must be {_type_name(hints[key_name])}, got {_show(text)}",
                source=where,
                key=dotted,
            ) from None
        raw.setdefault(section_name, {})[key_name] = value
        origins[dotted] = where

    for section_name, values in (overrides or {}).items():
        if section_name not in SECTIONS:
            raise ConfigError(f"unknown section [{section_name}]", source="command line")
        for k, v in values.items():
            raw.setdefault(section_name, {})[k] = v
            origins[f"{section_name}.{k}"] = "command line"

    sections = {
        name: _build_section(name, cls, raw.get(name, {}), origins)
        for name, cls in SECTIONS.items()
    }
    cfg = Config(**sections, source=source, origins=origins)
    _cross_checks(cfg)
    return cfg


# --- addresses --------------------------------------------------------------------------------

BIND_ADDRESS_KEYS = ("mesh.listen", "metrics.listen")
"""Addresses this node binds: a name that does not resolve stops ``icnd run``."""
PEER_ADDRESS_KEYS = ("mesh.advertise", "mesh.bootstrap")
"""Addresses of this or other nodes as peers dial them: ``icnd run`` only warns (a peer's name
may resolve later; the mesh redials), ``icnd check-config`` refuses them."""


def _getaddrinfo(host: str, port: int) -> object:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def address_errors(
    cfg: Config,
    keys: tuple[str, ...] = BIND_ADDRESS_KEYS + PEER_ADDRESS_KEYS,
    resolve: Callable[[str, int], object] = _getaddrinfo,
) -> list[ConfigError]:
    """One ConfigError for each configured host name among ``keys`` that does not resolve,
    naming the source and the key. IP literals are not looked up. This is the only function
    here that uses the network (through the system resolver, ``resolve``)."""
    errors = []
    for dotted in keys:
        section, _, name = dotted.partition(".")
        value = getattr(getattr(cfg, section), name)
        items = value if isinstance(value, list) else [value]
        for i, text in enumerate(items):
            if not text:
                continue
            host, port = parse_hostport(text)
            try:
                ipaddress.ip_address(host)
                continue
            except ValueError:
                pass
            try:
                resolve(host, port)
            except (OSError, UnicodeError) as e:
                reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
                entry = f"entry {i + 1}: " if isinstance(value, list) else ""
                errors.append(
                    ConfigError(
                        f"{entry}cannot resolve host {host!r} in {text!r} ({reason})",
                        source=cfg.origin(dotted),
                        key=dotted,
                    )
                )
    return errors


def describe_keys() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every key, in declaration order (for docs and tests)."""
    rows = []
    for name, cls in SECTIONS.items():
        defaults = cls()
        for f in dataclasses.fields(cls):
            rows.append((name, f.name, getattr(defaults, f.name), f.metadata.get("doc", "")))
    return rows


__all__ = [
    "Config",
    "ConfigError",
    "SECTIONS",
    "address_errors",
    "check_hostport",
    "describe_keys",
    "format_hostport",
    "load_config",
    "parse_hostport",
    "read_config_file",
]
