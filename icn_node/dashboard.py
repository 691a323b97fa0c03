"""The web dashboard: one HTML page and the read-only JSON API it polls (``/api/v1/...``).

Served by the metrics endpoint (:mod:`icn_node.metrics`, ``metrics.listen``, loopback by
default) when ``metrics.dashboard`` is on. Every view is built by calling the node's own RPC
methods in-process (:meth:`~icn_node.rpc.protocol.RpcRegistry.invoke`): the API shows what
``icnctl --json`` shows, through the same handlers, cut to bounded sizes. It decides nothing
and changes nothing: GET only. docs/OPERATIONS.md ("Dashboard") documents every endpoint.

Requests are parsed strictly: an exact path, only the query parameters an endpoint names, each
at most once. A bad path is a JSON 404, a bad parameter a JSON 400, each naming what is wrong.
A ``Host`` header that is not an IP address, ``localhost`` or the configured listen host is
refused (403), so a web page elsewhere cannot read the API through DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from .compute.rpc import AMBIGUOUS_TASK, NO_SUCH_TASK
from .errors import IcnError, RpcError
from .logs import get_logger
from .metrics import HttpResponse
from .rpc.codes import INVALID_PARAMS, METHOD_NOT_FOUND
from .scheduler.tasks import TaskState

log = get_logger("icn.dashboard")

Invoke = Callable[[str, dict[str, Any]], Awaitable[Any]]

# Bounds on every list the API returns: (default, most).
LIMITS: dict[str, tuple[int, int]] = {
    "peers": (200, 1000),
    "executors": (200, 1000),
    "tasks": (50, 500),
    "blobs": (100, 1000),
}
MAX_OFFERS = 64  # offers per task in a list row (the task's own endpoint has them all)
MAX_HOLDERS = 16  # holder DIDs per blob

TASK_ID = re.compile(r"[0-9a-f]{4,64}")
STATES = tuple(s.value for s in TaskState)
ENDPOINTS = (
    "/api/v1/node",
    "/api/v1/peers",
    "/api/v1/executors",
    "/api/v1/tasks",
    "/api/v1/tasks/<task>",
    "/api/v1/blobs",
)
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
)
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; frame-ancestors 'none'"
)


class ApiError(Exception):
    """A request the API refuses: the HTTP status and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# RPC error codes → HTTP statuses; anything else from a handler is a 500.
_STATUS = {INVALID_PARAMS: 400, AMBIGUOUS_TASK: 400, NO_SUCH_TASK: 404, METHOD_NOT_FOUND: 503}


def json_response(status: int, doc: Any, *extra: tuple[str, str]) -> HttpResponse:
    body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    return HttpResponse(status, "application/json", body, (*SECURITY_HEADERS, *extra))


def _error(status: int, message: str, *extra: tuple[str, str]) -> HttpResponse:
    return json_response(status, {"error": message, "status": status}, *extra)


@cache
def page() -> bytes:
    """The dashboard page, a resource file packaged with icn_node (read once)."""
    return resources.files("icn_node").joinpath("dashboard.html").read_bytes()


def _query(text: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each named in ``allowed`` and given once."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True) if text else []
    except ValueError:
        raise ApiError(400, f"malformed query string {text!r}") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            raise ApiError(400, f"unknown parameter {name!r} (expected: {expected})")
        if name in out:
            raise ApiError(400, f"parameter {name!r} given twice")
        out[name] = value
    return out


def _limit(query: Mapping[str, str], what: str) -> int:
    default, most = LIMITS[what]
    text = query.get("limit")
    if text is None:
        return default
    if not text.isdecimal() or not 1 <= int(text) <= most:
        raise ApiError(400, f"limit: expected an integer from 1 to {most}, got {text!r}")
    return int(text)


def _allowed_host(header: str | None, listen_host: str) -> bool:
    """Whether a request's Host names this endpoint: an IP address, localhost, or the host
    ``metrics.listen`` gives. (A missing Host, HTTP/1.0, comes from no browser.)"""
    if header is None:
        return True
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host in ("localhost", listen_host.lower()) or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _brief_task(row: dict[str, Any]) -> dict[str, Any]:
    """A task list row: the task's view without its output (the task's own endpoint has it)
    and with at most :data:`MAX_OFFERS` offers."""
    offers = row["offers"]
    out = {**row, "offers": offers[:MAX_OFFERS], "offers_total": len(offers)}
    if row["result"] is not None:
        out["result"] = {k: v for k, v in row["result"].items() if k not in ("stdout", "stderr")}
    return out


class Dashboard:
    """The page and the API, as an :data:`~icn_node.metrics.App` for the metrics endpoint.

    ``invoke(method, params)`` calls one of the node's RPC methods (``node.rpc.invoke``);
    ``listen_host`` is the host part of ``metrics.listen``, a name the ``Host`` header may use.
    """

    def __init__(self, invoke: Invoke, listen_host: str = "") -> None:
        self.invoke = invoke
        self.listen_host = listen_host
        self._routes: dict[str, Callable[[dict[str, str]], Awaitable[Any]]] = {
            "/api/v1": self.index,
            "/api/v1/node": self.node,
            "/api/v1/peers": self.peers,
            "/api/v1/executors": self.executors,
            "/api/v1/tasks": self.tasks,
            "/api/v1/blobs": self.blobs,
        }
        self._params: dict[str, tuple[str, ...]] = {
            "/api/v1/peers": ("limit",),
            "/api/v1/executors": ("limit",),
            "/api/v1/tasks": ("limit", "state"),
            "/api/v1/blobs": ("limit",),
        }

    async def __call__(self, method: str, target: str, headers: Mapping[str, str]) -> HttpResponse:
        if not _allowed_host(headers.get("host"), self.listen_host):
            return _error(403, f"Host {headers.get('host')!r} is not this node's address")
        if method != "GET":
            return _error(
                405, f"method {method!r} not allowed: the API is read-only", ("Allow", "GET")
            )
        path, _, query = target.partition("?")
        try:
            if path == "/":
                _query(query, ())
                headers_ = (*SECURITY_HEADERS, ("Content-Security-Policy", PAGE_POLICY))
                return HttpResponse(200, "text/html; charset=utf-8", page(), headers_)
            return json_response(200, await self._api(path, query))
        except ApiError as e:
            return _error(e.status, str(e))
        except RpcError as e:
            return _error(_STATUS.get(e.code, 500), str(e))
        except IcnError as e:
            return _error(500, str(e))
        except Exception as e:  # a bug must not take the endpoint down
            log.error("dashboard_request_failed", path=path, exc_info=e)
            return _error(500, f"internal error serving {path} (a bug in icnd; see its log)")

    async def _api(self, path: str, query: str) -> Any:
        route = self._routes.get(path)
        if route is not None:
            return await route(_query(query, self._params.get(path, ())))
        prefix = "/api/v1/tasks/"
        if path.startswith(prefix):
            task = path[len(prefix) :]
            if not TASK_ID.fullmatch(task):
                raise ApiError(400, f"task: expected 4-64 lower-case hex digits, got {task!r}")
            _query(query, ())
            return await self.invoke("compute.status", {"task": task})
        raise ApiError(404, f"no such path {path!r} (try / or one of: {', '.join(ENDPOINTS)})")

    # --- endpoints -------------------------------------------------------------------------

    async def index(self, query: dict[str, str]) -> dict[str, Any]:
        return {"endpoints": list(ENDPOINTS), "limits": {k: v[1] for k, v in LIMITS.items()}}

    async def node(self, query: dict[str, str]) -> dict[str, Any]:
        status = await self.invoke("node.status", {})
        return {**status, "capacity": await self.invoke("node.capacity", {})}

    async def peers(self, query: dict[str, str]) -> dict[str, Any]:
        limit = _limit(query, "peers")
        rows = (await self.invoke("mesh.peers", {}))["peers"]
        known = {n["did"]: n for n in (await self.invoke("netmap.topology", {}))["nodes"]}
        out = []
        for row in rows[:limit]:
            node = known.get(row["did"], {})
            out.append(
                {
                    **row,
                    "rtt_estimated_ms": node.get("rtt_estimated_ms"),
                    "bandwidth_mbps": node.get("bandwidth_mbps"),
                }
            )
        return {"peers": out, "total": len(rows)}

    async def executors(self, query: dict[str, str]) -> dict[str, Any]:
        limit = _limit(query, "executors")
        rows = (await self.invoke("compute.executors", {}))["executors"]
        return {"executors": rows[:limit], "total": len(rows)}

    async def tasks(self, query: dict[str, str]) -> dict[str, Any]:
        limit = _limit(query, "tasks")
        state = query.get("state")
        if state is not None and state not in STATES:
            raise ApiError(400, f"state: expected one of {', '.join(STATES)}, got {state!r}")
        params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
        out = await self.invoke("compute.list", params)
        return {"tasks": [_brief_task(row) for row in out["tasks"]], "counts": out["counts"]}

    async def blobs(self, query: dict[str, str]) -> dict[str, Any]:
        limit = _limit(query, "blobs")
        local = await self.invoke("blob.list", {"limit": limit})
        known = await self.invoke("blob.list", {"all": True, "limit": limit, "dids": True})
        for row in known["blobs"]:
            row["dids"] = row["dids"][:MAX_HOLDERS]
        return {
            "held": local["blobs"],
            "held_truncated": local["truncated"],
            "stored_bytes": local["stored_bytes"],
            "quota_bytes": local["quota_bytes"],
            "cooperative": known["blobs"],
            "known": known["known"],
        }
