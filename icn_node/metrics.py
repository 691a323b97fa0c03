"""Prometheus metrics: one registry per node and a small trio HTTP endpoint serving it.

Each node owns a :class:`~prometheus_client.CollectorRegistry`, so several nodes can live in one
process (the in-process tests) without colliding. Services create their collectors on
``node.metrics.registry``. No metric carries a per-peer or per-task label.

The endpoint is a few lines of trio rather than ``prometheus_client.start_http_server`` so that
it follows the daemon's nursery (started, cancelled and closed with it) instead of living in a
daemon thread that shutdown cannot wait for.
"""

from __future__ import annotations

from functools import partial

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from . import __version__
from .logs import get_logger

log = get_logger("icn.metrics")

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT_S = 5.0


class Metrics:
    """The node's registry with the metrics every node exports."""

    def __init__(self, did: str, region: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        info = Gauge(
            "icn_node_info",
            "Always 1; labels identify the node.",
            ["did", "version", "region"],
            registry=self.registry,
        )
        info.labels(did=did, version=__version__, region=region).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def _handle(stream: trio.abc.Stream, metrics: Metrics) -> None:
    try:
        buf = b""
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            while b"\r\n\r\n" not in buf and len(buf) < MAX_REQUEST_HEAD:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
        line = buf.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] in ("/metrics", "/"):
            body = metrics.render()
            head = (
                "HTTP/1.1 200 OK\r\n"
                f"Content-Type: {CONTENT_TYPE_LATEST}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
        else:
            body = b"not found; try /metrics\n"
            head = (
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            await stream.send_all(head.encode() + body)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_metrics(
    metrics: Metrics, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``/metrics`` on host:port; ``task_status.started`` gets the bound (host, port)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[:2]
    log.info("metrics_listening", address=f"{bound[0]}:{bound[1]}")
    async with trio.open_nursery() as nursery:
        task_status.started((bound[0], bound[1]))
        await trio.serve_listeners(
            partial(_handle, metrics=metrics), listeners, handler_nursery=nursery
        )
