"""Local control plane: JSON-RPC 2.0 over a Unix socket, one JSON object per line.

Importing the package loads only the error codes: a client (``icnctl`` through
:mod:`.client`) must not pay for the server side, which brings logging and the codec.
:class:`RpcRegistry` is loaded on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .codes import (
    BUSY,
    DOMAIN_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PERMISSION_DENIED,
)

if TYPE_CHECKING:
    from .protocol import RpcRegistry


def __getattr__(name: str) -> Any:
    if name == "RpcRegistry":
        from .protocol import RpcRegistry

        return RpcRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUSY",
    "DOMAIN_ERROR",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "PERMISSION_DENIED",
    "RpcRegistry",
]
