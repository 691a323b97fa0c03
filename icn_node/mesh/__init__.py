"""The gossip mesh: authenticated TLS links, admission, signed dissemination, membership.

* :mod:`icn_node.mesh.core` — the sans-IO membership and gossip core (no trio, no clock).
* :mod:`icn_node.mesh.states` — its state machines as transition tables.
* :mod:`icn_node.mesh.tls` — certificates, SSL contexts and the channel-bound link proof.
* :mod:`icn_node.mesh.driver` — :class:`MeshService`, the trio service around the core.

``MeshService`` is imported lazily so that importing the core never imports trio.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MeshService"]


def __getattr__(name: str) -> Any:
    if name == "MeshService":
        from .driver import MeshService

        return MeshService
    raise AttributeError(name)
