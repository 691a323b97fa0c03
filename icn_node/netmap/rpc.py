"""JSON-RPC methods of the network map: ``netmap.topology`` and ``netmap.estimate``.

``netmap.topology`` ``{}``: this node's coordinate and, for every peer measured and every node
whose coordinate is known, the measured RTT, the coordinates' estimate, bandwidth (with its age
and source) and the coordinate. ``netmap.estimate`` ``{"a": DID, "b": DID}``: the RTT the two
nodes' coordinates predict (either may be this node), or error ``NO_COORDINATE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import IdentityError, RpcError
from ..identity import validate_did
from ..rpc import RpcRegistry
from ..rpc.params import parse
from .driver import NetmapService

NO_COORDINATE = -32020
"""``netmap.estimate``: no coordinate is known for one of the nodes (yet)."""


@dataclass(frozen=True, slots=True)
class EstimateParams:
    a: str
    b: str

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            try:
                validate_did(getattr(self, name))
            except IdentityError as e:
                raise ValueError(f"{name}: {e}") from None


def register(rpc: RpcRegistry, service: NetmapService) -> None:
    async def topology(params: dict[str, Any]) -> dict[str, Any]:
        return service.topology()

    async def estimate(params: dict[str, Any]) -> dict[str, Any]:
        p = parse(EstimateParams, params)
        rtt = service.rtt_between(p.a, p.b)
        if rtt is None:
            missing = [d for d in (p.a, p.b) if service.core.coordinate_of(d) is None]
            raise RpcError(NO_COORDINATE, f"no coordinate known for {', '.join(missing)}")
        return {"a": p.a, "b": p.b, "rtt_ms": round(rtt, 3)}

    rpc.register("netmap.topology", topology)
    rpc.register("netmap.estimate", estimate)
