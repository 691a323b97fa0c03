"""The one error family of icnd.

Every error the daemon raises on purpose derives from :class:`IcnError`. Errors say whose fault
they are: :class:`ConfigError` (the operator's file), :class:`RemoteProtocolError` (a peer sent
something wrong), :class:`LocalProtocolError` (we misused a protocol core), and so on.
"""

from __future__ import annotations


class IcnError(Exception):
    """Base of every error icnd raises on purpose."""


class ConfigError(IcnError):
    """The configuration is invalid. The message names the file, the key and the problem."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        parts = []
        if source:
            parts.append(str(source))
        if key:
            parts.append(key)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class IdentityError(IcnError):
    """A node key or DID is missing, malformed, or unsafe to use."""


class ProtocolError(IcnError):
    """A protocol rule was broken."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol (bad frame, bad signature, wrong state)."""


class LocalProtocolError(ProtocolError):
    """We used a protocol core wrongly (an event with no transition in the current state)."""


class CodecError(RemoteProtocolError):
    """Bytes could not be decoded into a known, valid message."""


class ResourceError(IcnError):
    """A resource profile or capacity operation is invalid or does not fit."""


class RpcError(IcnError):
    """A JSON-RPC call failed; carries the JSON-RPC error code."""

    def __init__(self, code: int, message: str, data: object | None = None):
        self.code = code
        self.data = data
        super().__init__(message)
