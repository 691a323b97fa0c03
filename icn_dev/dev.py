"""``icnd dev``: a development node, or a small cooperative, with nothing to set up.

No config file and no data dir to choose: every node gets a key, a config and a data dir under
one temp dir, an open mesh on 127.0.0.1 (``mesh.open = true``: any DID is admitted), the
executor on, a Prometheus endpoint on a loopback port and its RPC socket in its data dir. The
nodes are real ``icnd run`` processes started by :class:`~icn_dev.cluster.LocalCluster`; once
they answer (and, for several, once the first knows every executor) the command prints how to
reach each one with ``icnctl`` and over HTTP, then waits. SIGINT (Ctrl-C), SIGTERM or SIGHUP
stop every process it started, by pid, and remove the temp dir unless ``--keep``; a node that
dies on its own stops the rest, with the end of its log, and exit status 1.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from icn_node.errors import IcnError

from .cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
MAX_NODES = 16
# How long the nodes get to find each other before the command prints anyway (with a note).
MESH_WAIT_S = 15.0
# Unix socket paths are limited to 107 bytes; a long $TMPDIR falls back to /tmp.
MAX_SOCKET_PATH = 100


def dev_config(i: int, dids: list[str]) -> dict[str, Any]:
    """What ``icnd dev`` sets on top of LocalCluster's loopback config."""
    return {
        "mesh": {"open": True},
        "compute": {"executor": True},
        "log": {"format": "json"},
    }


def make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="icnd-dev-"))
    if len(str(root / f"node{MAX_NODES}" / "icnd.sock")) > MAX_SOCKET_PATH:
        root.rmdir()
        root = Path(tempfile.mkdtemp(prefix="icnd-dev-", dir="/tmp"))
    return root


def icnctl_command() -> str:
    """How to call icnctl from the user's shell: the plain name when the one on $PATH is the
    one beside this Python, else the full path of the one beside it."""
    beside = Path(sys.executable).with_name("icnctl")
    on_path = shutil.which("icnctl")
    if not beside.exists():
        return "icnctl"
    if on_path is not None and Path(on_path).resolve() == beside.resolve():
        return "icnctl"
    return str(beside)


def serves_dashboard(metrics: str) -> bool:
    """Whether the HTTP listener at ``metrics`` (host:port) answers ``/`` with a web page."""
    try:
        with urllib.request.urlopen(f"http://{metrics}/", timeout=2) as r:
            return str(r.headers.get("Content-Type", "")).startswith("text/html")
    except OSError:
        return False


def wait_for_mesh(cluster: LocalCluster, timeout: float = MESH_WAIT_S) -> bool:
    """Wait until node 0 knows every node as an executor (itself included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = cluster.rpc(0, "compute.executors", timeout=5.0).get("executors", [])
        if len(known) >= cluster.n:
            return True
        time.sleep(0.2)
    return False


def describe(cluster: LocalCluster, started_s: float, keep: bool) -> str:
    icnctl = icnctl_command()
    n = cluster.n
    nodes = "1 node" if n == 1 else f"a cooperative of {n} nodes"
    lines = [
        f"icnd dev: {nodes} on 127.0.0.1, open mesh, executors on, ready in {started_s:.1f} s",
        f"state in {cluster.root}" + (" (kept at exit: --keep)" if keep else " (removed at exit)"),
        "",
    ]
    targets = []
    for node in cluster.nodes:
        status = cluster.rpc(node.index, "node.status")
        metrics = status["listen"].get("metrics") or ""
        targets.append(metrics)
        socket = shlex.quote(str(node.socket))
        lines += [
            f"{node.name}  {node.did}",
            f"  icnctl:    {icnctl} --socket {socket} node status",
            f"  metrics:   http://{metrics}/metrics",
            f"  dashboard: http://{metrics}/"
            + ("" if serves_dashboard(metrics) else "  (where a build serves one; not this build)"),
            f"  mesh:      {node.mesh_address}",
            f"  log:       {node.log_path}",
            "",
        ]
    first = shlex.quote(str(cluster.nodes[0].socket))
    sumwat = ROOT / "examples" / "sum.wat"
    if sumwat.exists():
        lines.append(
            f"A first task:  {icnctl} --socket {first} compute submit "
            f"{shlex.quote(str(sumwat))} --arg 10 --cpu 0.5 --wait"
        )
    lines += [
        f"Or, for short: export ICN_SOCKET={first}",
        "Grafana: import deploy/grafana/icnd-dashboard.json; Prometheus scrape targets: "
        + ", ".join(targets),
        f"Ctrl-C stops {'the node' if n == 1 else f'all {n} nodes'}"
        + ("." if keep else f" and removes {cluster.root}."),
    ]
    return "\n".join(lines)


def _first_dead(cluster: LocalCluster) -> int | None:
    for node in cluster.nodes:
        if not node.running:
            return node.index
    return None


def run_dev(nodes: int, keep: bool) -> int:
    """Start the nodes, print how to reach them, wait for a signal, stop them; exit status."""
    # SIGTERM and SIGHUP end the wait the way Ctrl-C does: as a KeyboardInterrupt. SIGINT is
    # set too: a shell without job control starts a background command with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    root = make_root()
    cluster = LocalCluster(root, nodes, node_config=dev_config, topology="star")
    status = 0
    try:
        t0 = time.monotonic()
        cluster.init()
        cluster.start_all()
        if nodes > 1 and not wait_for_mesh(cluster):
            typer.echo(
                f"note: after {MESH_WAIT_S:.0f} s node0 does not yet know every executor; "
                "tasks may wait for the rest to announce themselves",
                err=True,
            )
        typer.echo(describe(cluster, time.monotonic() - t0, keep), nl=True)
        sys.stdout.flush()
        while (dead := _first_dead(cluster)) is None:
            time.sleep(0.5)
        node = cluster.nodes[dead]
        code = node.process.returncode if node.process is not None else None
        typer.echo(
            f"Error: {node.name} exited on its own (status {code}); stopping the rest. "
            f"The end of its log:\n{cluster.tail_log(dead)}",
            err=True,
        )
        status = 1
    except KeyboardInterrupt:
        pass
    except IcnError as e:
        typer.echo(f"Error: {e}", err=True)
        status = 1
    finally:
        # A second Ctrl-C must not cut the clean-up short: every node stops within 5 s.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        typer.echo(f"stopping {len(cluster.nodes)} icnd process(es) …", err=True)
        cluster.close()
        if keep:
            typer.echo(f"stopped; state and logs kept in {root}", err=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
            typer.echo(f"stopped; removed {root}", err=True)
    return status


def dev(
    nodes: Annotated[
        int,
        typer.Option(
            "--nodes",
            "-n",
            min=1,
            max=MAX_NODES,
            help="How many icnd processes: 1 is a single node, more a local cooperative.",
        ),
    ] = 1,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temp dir (keys, logs, databases) at exit.")
    ] = False,
) -> None:
    """A development node, or a local cooperative: nothing to set up; Ctrl-C stops it.

    No config, a temp data dir, an open mesh on 127.0.0.1, executors on; --nodes N starts N
    icnd processes. Prints how to reach each with icnctl and over HTTP, then waits; Ctrl-C
    (or SIGTERM) stops every process it started and removes the temp dir unless --keep.

    Example: icnd dev --nodes 3
    """
    code = run_dev(nodes, keep)
    if code:
        raise typer.Exit(code)
