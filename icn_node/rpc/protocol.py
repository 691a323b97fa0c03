"""JSON-RPC 2.0 request handling, independent of the socket.

:class:`RpcRegistry` maps method names to async handlers and turns one request line into one
response line (or none, for a notification). The line is read within bounds and checked as a
request by :mod:`.request` (depth, number and key sizes, values; ``id``, ``method``,
``params``), so no line can raise out of :meth:`RpcRegistry.handle_line`.

A method is registered with the dataclass its parameters are read into (``params=``): the
registry parses them with :func:`~icn_node.rpc.params.parse` before the handler runs, so a
handler never sees a parameter of the wrong type, and the client gets ``invalid params``
naming it. Handlers return a JSON-serialisable result and signal a domain failure with
:class:`~icn_node.errors.RpcError` (or :class:`InvalidParams`). Any other exception is a bug:
an "internal error" response, logged with the method (the traceback the first time a method
fails that way, then a count at every power of two, so a client repeating the call cannot
flood the log); it never takes the server down.

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
from .codes import BUSY as BUSY  # re-exported: the server imports these here
from .codes import DOMAIN_ERROR as DOMAIN_ERROR
from .codes import PERMISSION_DENIED as PERMISSION_DENIED
from .params import parse
from .request import (
    DEFAULT_LIMITS,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Limits,
    Request,
    RequestRefused,
    read_request,
)
from .request import INVALID_PARAMS as INVALID_PARAMS  # re-exported: handlers import it here
from .request import InvalidParams as InvalidParams

log = get_logger("icn.rpc")


Handler = Callable[[Any], Awaitable[Any]]
Notify = Callable[[str, dict[str, Any]], Awaitable[bool]]


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
    params: type | None  # the parameter class the registry parses params into; None: the dict


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": err}


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON line; strict JSON (no NaN or Infinity), ValueError or TypeError when ``obj``
    has no such form."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def error_line(id_: Any, code: int, message: str) -> bytes:
    return encode(_error(id_, code, message))


class _Repeats:
    """How often each kind of failure has happened, to log the first fully and then only at
    every power of two (1, 2, 4, 8, ...): a log line count that grows with the logarithm."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, ...], int] = {}

    def count(self, *kind: str) -> tuple[int, bool]:
        """The count of ``kind`` including this one, and whether to log it."""
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        return n, n & (n - 1) == 0


class RpcRegistry:
    """Method name → async handler, with the class its parameters are read into."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._methods: dict[str, _Method] = {}
        self.limits = limits
        self._failures = _Repeats()

    def register(self, name: str, handler: Handler, params: type | None = None) -> None:
        """``handler(params)``; with ``params`` (a parameter dataclass) it receives that class,
        parsed and checked, else the params object as it came."""
        self._add(name, _Method(handler, 0, params))

    def register_streaming(
        self,
        name: str,
        handler: Callable[[Any, Call], Awaitable[Any]],
        *,
        max_fds: int = 1,
        params: type | None = None,
    ) -> None:
        """A method called as ``handler(params, call)`` that takes up to ``max_fds`` file
        descriptors and may send notifications before its response."""
        if max_fds < 1:
            raise ValueError("a streaming method takes at least one file descriptor")
        self._add(name, _Method(handler, max_fds, params))

    def _add(self, name: str, method: _Method) -> None:
        if name in self._methods:
            raise ValueError(f"RPC method {name} registered twice")
        self._methods[name] = method

    def method(self, name: str, params: type | None = None) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.register(name, fn, params)
            return fn

        return deco

    @property
    def names(self) -> list[str]:
        return sorted(self._methods)

    async def invoke(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call plain method ``method`` in-process, its parameters parsed as for a request:
        the handler's result, or the :class:`RpcError` (or other :class:`IcnError`) it raises.
        For in-process readers of the same views (the dashboard's JSON API); a streaming
        method needs a :class:`Call` and is refused as unknown."""
        entry = self._methods.get(method)
        if entry is None or entry.max_fds:
            raise RpcError(METHOD_NOT_FOUND, f"unknown method {method!r}")
        given = params if params is not None else {}
        return await entry.handler(given if entry.params is None else parse(entry.params, given))

    async def handle_line(self, line: bytes, call: Call | None = None) -> bytes | None:
        """One request line in, one response line out (None for a notification). ``call``:
        what came with the line (file descriptors) and how to notify; none off a socket.
        Raises nothing but cancellation."""
        call = call if call is not None else Call()
        try:
            req = read_request(line, self.limits)
        except RequestRefused as e:
            return error_line(e.id, e.code, e.message)
        response = await self._answer(req, call)
        if req.notification:
            return None
        try:
            return encode(response)
        except (TypeError, ValueError) as e:  # a result with no JSON form: a handler bug
            self._log_bug(req.method, e)
            return error_line(req.id, INTERNAL_ERROR, f"internal error in {req.method}")

    async def _answer(self, req: Request, call: Call) -> dict[str, Any]:
        entry = self._methods.get(req.method)
        if entry is None:
            return _error(req.id, METHOD_NOT_FOUND, f"unknown method {req.method!r}")
        refused = _fds_refused(req.method, entry.max_fds, call)
        if refused is not None:
            return _error(req.id, INVALID_REQUEST, refused)
        call.request_id = req.id
        try:
            params = req.params if entry.params is None else parse(entry.params, req.params)
            if entry.max_fds:
                result = await entry.handler(params, call)
            else:
                result = await entry.handler(params)
        except RpcError as e:
            return _error(req.id, e.code, str(e), e.data)
        except IcnError as e:
            return _error(req.id, DOMAIN_ERROR, str(e))
        except Exception as e:  # a handler bug must not take the server down
            self._log_bug(req.method, e)
            return _error(req.id, INTERNAL_ERROR, f"internal error in {req.method}: {_short(e)}")
        return {"jsonrpc": "2.0", "id": req.id, "result": result}

    def _log_bug(self, method: str, e: Exception) -> None:
        n, loud = self._failures.count(method, type(e).__name__)
        if n == 1:
            log.error("rpc_handler_failed", method=method, exc_info=e)
        elif loud:
            log.error("rpc_handler_failed", method=method, error=_short(e), times=n)


def _short(e: BaseException, limit: int = 200) -> str:
    text = repr(e)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
