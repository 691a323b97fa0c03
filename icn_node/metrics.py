"""Prometheus metrics: one registry per node and a small trio HTTP endpoint serving it.

Each node owns a :class:`~prometheus_client.CollectorRegistry`, so several nodes can live in one
process (the in-process tests) without colliding. Services create their collectors on
``node.metrics.registry``. No metric carries a per-peer or per-task label.

The endpoint is a few lines of trio rather than ``prometheus_client.start_http_server`` so that
it follows the daemon's nursery (started, cancelled and closed with it) instead of living in a
daemon thread that shutdown cannot wait for. The same endpoint serves the dashboard
(:mod:`icn_node.dashboard`) when one is given as ``app``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus

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


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        head = (
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n"
            f"{extra}Connection: close\r\n\r\n"
        )
        return head.encode("latin-1") + self.body


App = Callable[[str, str, Mapping[str, str]], Awaitable[HttpResponse]]
"""What else the endpoint serves (the dashboard): ``app(method, target, headers)`` for every
request but ``GET /metrics``; header names lower-case."""

_NOT_FOUND = HttpResponse(404, "text/plain", b"not found; try /metrics\n")


def _parse_head(buf: bytes) -> tuple[str, str, dict[str, str]] | None:
    """Method, target and headers of a request head, or None when it is not one."""
    lines = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1]:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


async def _handle(stream: trio.abc.Stream, metrics: Metrics, app: App | None = None) -> None:
    try:
        buf = b""
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            while b"\r\n\r\n" not in buf and len(buf) < MAX_REQUEST_HEAD:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
        request = _parse_head(buf)
        if request is None:
            response = HttpResponse(400, "text/plain", b"bad request\n")
        elif request[0] == "GET" and request[1].split("?")[0] == "/metrics":
            response = HttpResponse(200, CONTENT_TYPE_LATEST, metrics.render())
        elif app is not None:
            response = await app(*request)
        elif request[0] == "GET" and request[1].split("?")[0] == "/":
            response = HttpResponse(200, CONTENT_TYPE_LATEST, metrics.render())
        else:
            response = _NOT_FOUND
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            await stream.send_all(response.encode())
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    app: App | None = None,
    *,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` (and ``app``, if given) on host:port; ``task_status.started`` gets
    the bound (host, port)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[:2]
    log.info("metrics_listening", address=f"{bound[0]}:{bound[1]}")
    async with trio.open_nursery() as nursery:
        task_status.started((bound[0], bound[1]))
        await trio.serve_listeners(
            partial(_handle, metrics=metrics, app=app), listeners, handler_nursery=nursery
        )
