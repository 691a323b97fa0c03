"""Local control plane: JSON-RPC 2.0 over a Unix socket, one JSON object per line."""

from .protocol import BUSY, DOMAIN_ERROR, PERMISSION_DENIED, RpcRegistry
from .request import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR

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
