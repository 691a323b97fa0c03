"""One JSON-RPC request line read within bounds, into a :class:`Request` that checked itself.

The standard library's ``json`` has no limits of its own: 1,500 ``[`` exhaust the recursion
limit and a 5,000-digit number trips the integer conversion limit, both as exceptions no
caller expects. :func:`read_request` measures the line before parsing it, so no input can take
the parser past :class:`Limits`:

* nesting depth (``max_depth``), found on the line's structure with its strings blanked out,
  in C-speed passes (a run of ``max_depth + 1`` opening brackets, then at most ``max_depth``
  passes that remove innermost ``[]``/``{}`` pairs);
* values (``max_items``: array items and object members, counted from the commas and
  brackets), so the structure it measures and the objects parsing builds stay small;
* number literals (``max_number_chars``), and numbers must be finite (no ``NaN``,
  ``Infinity``, or a float that overflows);
* object keys (``max_key_chars``); a string value is bounded by the line itself
  (``rpc.max_request_bytes``).

The line must be UTF-8 and one JSON object: ``"jsonrpc": "2.0"``, ``method`` a string,
``id`` a string, an integer within ±(2^53 − 1) (what every JSON parser reads exactly) or
null, absent for a notification; ``params`` an object, or absent. Anything else raises
:class:`RequestRefused` with the JSON-RPC code and a message naming the problem, and the id to
answer with (null where the id itself is unusable).

Pure: no I/O, no clock; the registry and the server call it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import RpcError
from .codes import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)

MAX_SAFE_INTEGER = (1 << 53) - 1


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 32
    max_items: int = 10_000
    max_number_chars: int = 40
    max_key_chars: int = 256
    max_method_chars: int = 128


DEFAULT_LIMITS = Limits()


class InvalidParams(RpcError):
    """Parameters a method cannot take; the message starts with the parameter's name."""

    def __init__(self, message: str):
        super().__init__(INVALID_PARAMS, message)


class RequestRefused(Exception):
    """A line that is not a request this server answers: ``code``, ``message`` and the id to
    answer with."""

    def __init__(self, code: int, message: str, id_: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id_


@dataclass(frozen=True, slots=True)
class Request:
    """A JSON-RPC 2.0 request, checked on construction. ``notification``: no ``id`` member
    (nothing is answered)."""

    method: str
    params: dict[str, Any]
    id: str | int | None = None
    notification: bool = False

    @classmethod
    def from_doc(cls, doc: Any, limits: Limits = DEFAULT_LIMITS) -> Request:
        if isinstance(doc, list):
            raise RequestRefused(INVALID_REQUEST, "batch requests are not supported")
        if not isinstance(doc, dict):
            got = _json_type(doc)
            raise RequestRefused(INVALID_REQUEST, f"a request must be a JSON object, got {got}")
        notification = "id" not in doc
        id_ = _check_id(doc.get("id"), limits)
        if doc.get("jsonrpc") != "2.0":
            raise RequestRefused(INVALID_REQUEST, 'missing "jsonrpc": "2.0"', id_)
        method = doc.get("method")
        if not isinstance(method, str) or not method:
            got = "missing" if "method" not in doc else _json_type(method)
            raise RequestRefused(INVALID_REQUEST, f"method: expected a string, got {got}", id_)
        if len(method) > limits.max_method_chars:
            raise RequestRefused(
                INVALID_REQUEST,
                f"method: longer than {limits.max_method_chars} characters",
                id_,
            )
        params = doc.get("params", {})
        if not isinstance(params, dict):
            by_position = (
                " (by-position params are not supported)" if isinstance(params, list) else ""
            )
            raise RequestRefused(
                INVALID_PARAMS,
                f"params: expected an object (by-name), got {_json_type(params)}{by_position}",
                id_,
            )
        return cls(method, params, id_, notification)


def _check_id(id_: Any, limits: Limits) -> str | int | None:
    if id_ is None:
        return None
    if isinstance(id_, str):
        if len(id_) > limits.max_key_chars:
            raise RequestRefused(
                INVALID_REQUEST, f"id: a string id is at most {limits.max_key_chars} characters"
            )
        return id_
    if isinstance(id_, int) and not isinstance(id_, bool):
        if -MAX_SAFE_INTEGER <= id_ <= MAX_SAFE_INTEGER:
            return id_
        raise RequestRefused(
            INVALID_REQUEST, f"id: an integer id must be within ±{MAX_SAFE_INTEGER}"
        )
    raise RequestRefused(
        INVALID_REQUEST, f"id: expected a string, an integer or null, got {_json_type(id_)}"
    )


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


# --- bounded parsing -----------------------------------------------------------------------------

# A JSON string, as the parser reads one (escapes included); never backtracks.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Brackets only, both kinds mapped to one: depth does not depend on which.
_BRACKETS = str.maketrans({"[": "(", "{": "(", "]": ")", "}": ")"})
_NOT_BRACKETS = re.compile(r"[^()]+")


def _too_deep(structure: str, max_depth: int) -> bool:
    """Whether some prefix of ``structure`` (a line with its strings blanked) opens more than
    ``max_depth`` brackets; an upper bound on how deep a parser of the line can go."""
    brackets = _NOT_BRACKETS.sub("", structure.translate(_BRACKETS))
    if "(" * (max_depth + 1) in brackets:
        return True
    # More closers in a row than can be open stop a parser there whatever their number:
    # keep max_depth + 1 of them, so that the passes below run over at most a few per opener.
    brackets = re.sub(rf"\){{{max_depth + 2},}}", ")" * (max_depth + 1), brackets)
    for _ in range(max_depth):
        shorter = brackets.replace("()", "")
        if shorter == brackets:
            break
        brackets = shorter
    # Left: matched pairs nested deeper than max_depth, or unmatched brackets. Unmatched
    # closers stop a parser; unmatched openers (a document cut short) it walks into.
    return "()" in brackets or brackets.count("(") > max_depth


def load_bounded(line: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The JSON value on ``line``, or :class:`RequestRefused` (a parse error) naming the limit
    or the syntax error."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestRefused(PARSE_ERROR, f"parse error: not UTF-8 (byte {e.start})") from None
    structure = _STRING.sub('""', text)
    items = structure.count(",") + structure.count("[") + structure.count("{")
    if items > limits.max_items:
        raise RequestRefused(
            PARSE_ERROR, f"parse error: more than {limits.max_items} values in one request"
        )
    if _too_deep(structure, limits.max_depth):
        raise RequestRefused(
            PARSE_ERROR, f"parse error: nested deeper than {limits.max_depth} levels"
        )

    def number(literal: str) -> str:
        if len(literal) > limits.max_number_chars:
            raise RequestRefused(
                PARSE_ERROR,
                f"parse error: a number longer than {limits.max_number_chars} characters",
            )
        return literal

    def parse_float(literal: str) -> float:
        value = float(number(literal))
        if not math.isfinite(value):
            raise RequestRefused(PARSE_ERROR, f"parse error: number out of range: {literal}")
        return value

    def parse_constant(name: str) -> Any:
        raise RequestRefused(PARSE_ERROR, f"parse error: {name} is not JSON")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        for k, _ in items:
            if len(k) > limits.max_key_chars:
                raise RequestRefused(
                    PARSE_ERROR,
                    f"parse error: an object key longer than {limits.max_key_chars} characters",
                )
        return dict(items)

    try:
        value = json.loads(
            text,
            parse_int=lambda literal: int(number(literal)),
            parse_float=parse_float,
            parse_constant=parse_constant,
            object_pairs_hook=pairs,
        )
    except json.JSONDecodeError as e:
        raise RequestRefused(PARSE_ERROR, f"parse error: {e}") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise RequestRefused(
            PARSE_ERROR, "parse error: a string holds a lone surrogate (\\ud800-\\udfff), not text"
        )
    return value


# JSON may escape half a UTF-16 pair on its own ("\ud800"); Python then holds a string that
# cannot be encoded (nor stored, hashed as text or logged). Only then are strings walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def read_request(line: bytes, limits: Limits = DEFAULT_LIMITS) -> Request:
    """One request line as a :class:`Request`; :class:`RequestRefused` says why not."""
    return Request.from_doc(load_bounded(line, limits), limits)


__all__ = [
    "DEFAULT_LIMITS",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "InvalidParams",
    "Limits",
    "Request",
    "RequestRefused",
    "load_bounded",
    "read_request",
]
