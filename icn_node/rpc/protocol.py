"""JSON-RPC 2.0 request handling, independent of the socket.

:class:`RpcRegistry` maps method names to async handlers and turns one request line into one
response line (or none, for a notification). Handlers take the ``params`` object and return a
JSON-serialisable result; they signal a domain failure with :class:`~icn_node.errors.RpcError`
(or :class:`InvalidParams`). Any other exception becomes an "internal error" response and is
logged: a handler bug never takes the server down.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import IcnError, RpcError
from ..logs import get_logger

log = get_logger("icn.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Application errors (JSON-RPC reserves -32000..-32099 for implementations).
DOMAIN_ERROR = -32000

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class InvalidParams(RpcError):
    def __init__(self, message: str):
        super().__init__(INVALID_PARAMS, message)


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": err}


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


class RpcRegistry:
    """Method name → async handler."""

    def __init__(self) -> None:
        self._methods: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        if name in self._methods:
            raise ValueError(f"RPC method {name} registered twice")
        self._methods[name] = handler

    def method(self, name: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.register(name, fn)
            return fn

        return deco

    @property
    def names(self) -> list[str]:
        return sorted(self._methods)

    async def handle_line(self, line: bytes) -> bytes | None:
        """One request line in, one response line out (None for a notification)."""
        try:
            req = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return encode(_error(None, PARSE_ERROR, f"parse error: {e}"))
        if isinstance(req, list):
            return encode(_error(None, INVALID_REQUEST, "batch requests are not supported"))
        if not isinstance(req, dict):
            return encode(_error(None, INVALID_REQUEST, "a request must be a JSON object"))
        id_ = req.get("id")
        is_notification = "id" not in req
        if req.get("jsonrpc") != "2.0":
            return encode(_error(id_, INVALID_REQUEST, 'missing "jsonrpc": "2.0"'))
        if id_ is not None and not isinstance(id_, (str, int)) or isinstance(id_, bool):
            return encode(_error(None, INVALID_REQUEST, "id must be a string, number or null"))
        method = req.get("method")
        if not isinstance(method, str):
            return encode(_error(id_, INVALID_REQUEST, "method must be a string"))
        params = req.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return encode(_error(id_, INVALID_PARAMS, "params must be an object (by-name)"))
        handler = self._methods.get(method)
        if handler is None:
            return encode(_error(id_, METHOD_NOT_FOUND, f"unknown method {method!r}"))
        try:
            result = await handler(params)
        except RpcError as e:
            response = _error(id_, e.code, str(e), e.data)
        except IcnError as e:
            response = _error(id_, DOMAIN_ERROR, str(e))
        except Exception as e:  # a handler bug must not take the server down
            log.exception("rpc_handler_failed", method=method)
            response = _error(id_, INTERNAL_ERROR, f"internal error in {method}: {e!r}")
        else:
            response = {"jsonrpc": "2.0", "id": id_, "result": result}
        if is_notification:
            return None
        return encode(response)
