"""JSON-RPC 2.0 request handling, independent of the socket.

:class:`RpcRegistry` maps method names to async handlers and turns one request line into one
response line (or none, for a notification). Handlers take the ``params`` object and return a
JSON-serialisable result; they signal a domain failure with :class:`~icn_node.errors.RpcError`
(or :class:`InvalidParams`). Any other exception becomes an "internal error" response and is
logged: a handler bug never takes the server down.

A method registered with :meth:`RpcRegistry.register_streaming` also gets a :class:`Call`: the
file descriptors the client sent with the request (SCM_RIGHTS; the server owns and closes them
once the handler returns) and a way to send notifications (progress) before the response. The
registry refuses file descriptors sent to any other method, or more than a method takes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
Notify = Callable[[str, dict[str, Any]], Awaitable[bool]]


class InvalidParams(RpcError):
    def __init__(self, message: str):
        super().__init__(INVALID_PARAMS, message)


async def _no_notify(method: str, params: dict[str, Any]) -> bool:
    return True


@dataclass
class Call:
    """What the connection gives a streaming handler besides ``params``.

    ``fds``: the file descriptors sent with the request, in order; a request names one by its
    index (``{"fd": 0}``). They belong to the server, which closes them after the handler
    returns: a handler never closes or keeps them. ``fds_dropped``: the client sent more than
    the server takes (the kernel closed the rest). ``send``: writes one notification line to
    the client before the response, False when the client is gone (the server's; a no-op off
    a socket). ``io_timeout_s``: how long a handler waits on a client's file descriptor that
    gives or takes no bytes. ``request_id``: set by the registry.
    """

    fds: tuple[int, ...] = ()
    fds_dropped: bool = False
    send: Notify = _no_notify
    io_timeout_s: float = 30.0
    request_id: Any = field(default=None)

    def fd(self, index: object, param: str = "fd") -> int:
        """The descriptor a request names by ``index``; InvalidParams naming ``param``."""
        if not isinstance(index, int) or isinstance(index, bool):
            raise InvalidParams(
                f"{param}: expected the index of a file descriptor sent with the request, "
                f"got {index!r}"
            )
        if not self.fds:
            raise InvalidParams(
                f"{param}: no file descriptor came with this request (send it with SCM_RIGHTS "
                "in the same message as the request line)"
            )
        if not 0 <= index < len(self.fds):
            raise InvalidParams(
                f"{param}: index {index} out of range ({_fds(len(self.fds))} came with the request)"
            )
        return self.fds[index]

    async def notify(self, method: str, params: dict[str, Any]) -> bool:
        """A notification about this request (``params`` gains ``request``, the request's id);
        False when it could not be delivered: the client went away or does not read."""
        return await self.send(method, {"request": self.request_id, **params})


def _fds(n: int) -> str:
    return f"{n} file descriptor" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class _Method:
    handler: Callable[..., Awaitable[Any]]
    max_fds: int  # 0: a plain method, called with params only


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
        self._methods: dict[str, _Method] = {}

    def register(self, name: str, handler: Handler) -> None:
        self._add(name, _Method(handler, 0))

    def register_streaming(
        self,
        name: str,
        handler: Callable[[dict[str, Any], Call], Awaitable[Any]],
        *,
        max_fds: int = 1,
    ) -> None:
        """A method called as ``handler(params, call)`` that takes up to ``max_fds`` file
        descriptors and may send notifications before its response."""
        if max_fds < 1:
            raise ValueError("a streaming method takes at least one file descriptor")
        self._add(name, _Method(handler, max_fds))

    def _add(self, name: str, method: _Method) -> None:
        if name in self._methods:
            raise ValueError(f"RPC method {name} registered twice")
        self._methods[name] = method

    def method(self, name: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.register(name, fn)
            return fn

        return deco

    @property
    def names(self) -> list[str]:
        return sorted(self._methods)

    async def handle_line(self, line: bytes, call: Call | None = None) -> bytes | None:
        """One request line in, one response line out (None for a notification). ``call``:
        what came with the line (file descriptors) and how to notify; none off a socket."""
        call = call if call is not None else Call()
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
        entry = self._methods.get(method)
        if entry is None:
            return encode(_error(id_, METHOD_NOT_FOUND, f"unknown method {method!r}"))
        refused = _fds_refused(method, entry.max_fds, call)
        if refused is not None:
            return encode(_error(id_, INVALID_REQUEST, refused))
        call.request_id = id_
        try:
            if entry.max_fds:
                result = await entry.handler(params, call)
            else:
                result = await entry.handler(params)
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


def _fds_refused(method: str, max_fds: int, call: Call) -> str | None:
    """Why the file descriptors that came with a request do not fit its method, if they do not."""
    if call.fds_dropped:
        return (
            f"too many file descriptors came with the request ({_fds(len(call.fds))} kept, "
            "the rest dropped)"
        )
    if len(call.fds) > max_fds:
        if not max_fds:
            return f"{method} takes no file descriptors ({len(call.fds)} came with the request)"
        return f"{method} takes at most {_fds(max_fds)} ({len(call.fds)} came with the request)"
    return None
