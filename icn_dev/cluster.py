"""A local cooperative of real ``icnd`` processes on 127.0.0.1, for tests, benchmarks and the demo.

:class:`LocalCluster` creates a data directory and key per node under one root, writes each
node's TOML config (loopback addresses, the members list of all DIDs, a trust table), starts
``icnd run`` as child processes, waits until each answers on its RPC socket, and stops only the
processes it started, by pid. Everything it makes stays under ``root``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icn_node.errors import IcnError
from icn_node.identity import KEY_FILE, NodeIdentity, init_data_dir
from icn_node.rpc.client import DaemonUnavailable, RpcClient

START_TIMEOUT_S = 20.0


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port to listen on later, free now and below the kernel's ephemeral range.

    Ports from the ephemeral range (what binding port 0 returns) are also the source ports of
    outgoing connections, so one handed out here could be taken by another node's dial before
    its own node binds it. Below that range only listeners compete. Never the same port twice
    in one process.
    """
    rng = random.Random()
    low = min(_ephemeral_low(), 32768)
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise IcnError("no free TCP port below the ephemeral range")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(config: Mapping[str, Mapping[str, Any]]) -> str:
    """Write a two-level config (sections of scalars/lists, plus sub-tables) as TOML."""
    out: list[str] = []
    for section, body in config.items():
        scalars = {k: v for k, v in body.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in body.items() if isinstance(v, Mapping)}
        out.append(f"[{section}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        out.append("")
        for name, table in tables.items():
            out.append(f"[{section}.{name}]")
            out.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items())
            out.append("")
    return "\n".join(out)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for section, body in extra.items():
        merged = dict(out.get(section, {}))
        for k, v in body.items():
            if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
        out[section] = merged
    return out


@dataclass
class ClusterNode:
    index: int
    name: str
    data_dir: Path
    did: str
    mesh_port: int
    config: dict[str, Any]
    config_path: Path
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.data_dir / "icnd.sock"

    @property
    def mesh_address(self) -> str:
        return f"127.0.0.1:{self.mesh_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    """N real icnd processes on loopback. Use as a context manager; it stops what it started.

    ``node_config(i, dids)`` may return per-node config overrides (a section → key → value
    mapping) given every node's DID; ``topology`` picks bootstrap addresses: ``"chain"`` (each
    node dials the previous one), ``"star"`` (all dial node 0) or ``"none"``.
    """

    def __init__(
        self,
        root: Path,
        n: int,
        *,
        node_config: Callable[[int, list[str]], Mapping[str, Any]] | None = None,
        topology: str = "chain",
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.n = n
        self.node_config = node_config
        self.topology = topology
        self.log_level = log_level
        self.env = dict(env or {})
        self.nodes: list[ClusterNode] = []

    # --- set-up ------------------------------------------------------------------------

    def init(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        names = [f"node{i}" for i in range(self.n)]
        dids, ports = [], []
        for name in names:
            data_dir = self.root / name
            if (data_dir / KEY_FILE).exists():
                dids.append(NodeIdentity.load(data_dir / KEY_FILE).did)
            else:
                dids.append(init_data_dir(data_dir).did)
            ports.append(free_port())
        for i, name in enumerate(names):
            data_dir = self.root / name
            if self.topology == "chain":
                bootstrap = [f"127.0.0.1:{ports[i - 1]}"] if i > 0 else []
            elif self.topology == "star":
                bootstrap = [f"127.0.0.1:{ports[0]}"] if i > 0 else []
            else:
                bootstrap = []
            base: dict[str, Any] = {
                "node": {"data_dir": str(data_dir), "region": ""},
                "log": {"level": self.log_level, "format": "json"},
                "mesh": {
                    "listen": f"127.0.0.1:{ports[i]}",
                    "bootstrap": bootstrap,
                    "members": dids,
                },
                "metrics": {"listen": "127.0.0.1:0"},
                "trust": {"default": 0.5},
            }
            if self.node_config is not None:
                base = _merge(base, self.node_config(i, dids))
            path = self.root / f"{name}.toml"
            path.write_text(to_toml(base))
            self.nodes.append(
                ClusterNode(
                    index=i,
                    name=name,
                    data_dir=data_dir,
                    did=dids[i],
                    mesh_port=ports[i],
                    config=base,
                    config_path=path,
                    log_path=self.root / f"{name}.log",
                )
            )
        return self

    def rewrite_config(self, i: int, extra: Mapping[str, Any]) -> None:
        node = self.nodes[i]
        node.config = _merge(node.config, extra)
        node.config_path.write_text(to_toml(node.config))

    # --- processes -----------------------------------------------------------------------

    def _icnd_argv(self, node: ClusterNode) -> list[str]:
        return [sys.executable, "-m", "icn_node.daemon", "run", "--config", str(node.config_path)]

    def start(self, i: int, wait: bool = True) -> ClusterNode:
        node = self.nodes[i]
        if node.running:
            raise IcnError(f"{node.name} is already running")
        log = open(node.log_path, "ab")
        env = {**os.environ, **self.env, **node.extra_env}
        env.pop("ICN_SOCKET", None)
        node.process = subprocess.Popen(
            self._icnd_argv(node),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        if wait:
            self.wait_ready(i)
        return node

    def start_all(self) -> LocalCluster:
        for i in range(self.n):
            self.start(i, wait=False)
        for i in range(self.n):
            self.wait_ready(i)
        return self

    def wait_ready(self, i: int, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        node = self.nodes[i]
        deadline = time.monotonic() + timeout
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise IcnError(
                    f"{node.name} exited with {node.process.returncode} during start; "
                    f"log: {node.log_path}\n{self.tail_log(i)}"
                )
            try:
                return self.rpc(i, "node.status", timeout=2.0)
            except DaemonUnavailable:
                if time.monotonic() > deadline:
                    raise IcnError(
                        f"{node.name} did not answer within {timeout} s\n{self.tail_log(i)}"
                    ) from None
                time.sleep(0.05)

    def stop(self, i: int, timeout: float = 10.0) -> int | None:
        """SIGTERM node i (a process this cluster started) and wait; returns its exit code."""
        node = self.nodes[i]
        proc = node.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        node.process = None
        return proc.returncode

    def kill(self, i: int) -> None:
        """SIGKILL node i (no chance to clean up), as a crash would."""
        node = self.nodes[i]
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()
        node.process = None

    def restart(self, i: int) -> ClusterNode:
        self.stop(i)
        self.nodes[i].restarts += 1
        return self.start(i)

    def close(self) -> None:
        for i in range(len(self.nodes)):
            try:
                self.stop(i, timeout=6.0)
            except Exception:
                self.kill(i)

    def __enter__(self) -> LocalCluster:
        if not self.nodes:
            self.init()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- talking to nodes ----------------------------------------------------------------

    def rpc(self, i: int, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0):
        with RpcClient(self.nodes[i].socket, timeout=timeout) as client:
            return client.call(method, params)

    def icnctl(
        self, i: int, *args: str, check: bool = False, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "icn_cli", "--socket", str(self.nodes[i].socket), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)

    def tail_log(self, i: int, lines: int = 30) -> str:
        try:
            text = self.nodes[i].log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
