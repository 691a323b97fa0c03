"""JSON-RPC methods of the mesh: ``mesh.peers``, ``mesh.publish``, ``mesh.subscribe``,
``mesh.received``. For operators debugging the mesh, the multi-process tests and the benchmark.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import trio

from ..rpc import RpcRegistry
from ..rpc.params import NoParams
from ..rpc.protocol import InvalidParams
from ..wire import check_topic
from .driver import MeshService

MAX_COUNT = 100_000
MAX_INTERVAL_S = 60.0
MAX_RECEIVED = 1000


# --- parameters --------------------------------------------------------------------------------


def _check_topic(topic: str) -> None:
    try:
        check_topic(topic)
    except ValueError as e:
        raise InvalidParams(f"topic: {e}") from None


def _within(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise InvalidParams(f"{name}: expected a number from {lo:g} to {hi:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class TopicParams:
    """``mesh.subscribe``: the topic to record deliveries of."""

    topic: str

    def __post_init__(self) -> None:
        _check_topic(self.topic)


@dataclass(frozen=True, slots=True)
class PublishParams:
    """``mesh.publish``: ``text`` (UTF-8) to ``topic``, ``count`` times, ``interval_s`` apart."""

    topic: str
    text: str = ""
    count: int = 1
    interval_s: float = 0.0

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        try:
            self.text.encode()
        except UnicodeEncodeError:
            raise InvalidParams("text: not valid Unicode (a lone surrogate)") from None
        _within("count", self.count, 1, MAX_COUNT)
        _within("interval_s", self.interval_s, 0.0, MAX_INTERVAL_S)


@dataclass(frozen=True, slots=True)
class ReceivedParams:
    """``mesh.received``: the last ``limit`` deliveries on ``topic``, with their payloads
    unless ``payload`` is false."""

    topic: str
    limit: int = 100
    payload: bool = True

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        _within("limit", self.limit, 0, MAX_RECEIVED)


def _payload_view(payload: bytes) -> dict[str, Any]:
    try:
        return {"text": payload.decode("utf-8"), "size": len(payload)}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(payload).decode(), "size": len(payload)}


# --- handlers ----------------------------------------------------------------------------------


def register(rpc: RpcRegistry, mesh: MeshService) -> None:
    async def peers(p: NoParams) -> dict[str, Any]:
        return {"did": mesh.did, "address": mesh.address, "peers": mesh.peers()}

    async def publish(p: PublishParams) -> dict[str, Any]:
        payload = p.text.encode()
        links = 0
        for i in range(p.count):
            links += await mesh.publish(p.topic, payload)
            if p.interval_s and i + 1 < p.count:
                await trio.sleep(p.interval_s)
        return {"topic": p.topic, "published": p.count, "sends": links}

    async def subscribe(p: TopicParams) -> dict[str, Any]:
        mesh.record(p.topic)
        return {"topic": p.topic, "recording": True}

    async def received(p: ReceivedParams) -> dict[str, Any]:
        out = mesh.received(p.topic, p.limit)
        for item in out["messages"]:
            payload = item.pop("payload")
            if p.payload:
                item.update(_payload_view(payload))
            else:
                item["size"] = len(payload)
        return out

    rpc.register("mesh.peers", peers, NoParams)
    rpc.register("mesh.publish", publish, PublishParams)
    rpc.register("mesh.subscribe", subscribe, TopicParams)
    rpc.register("mesh.received", received, ReceivedParams)
