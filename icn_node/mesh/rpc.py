"""JSON-RPC methods of the mesh: ``mesh.peers``, ``mesh.publish``, ``mesh.subscribe``,
``mesh.received``. For operators debugging the mesh, the multi-process tests and the benchmark.
"""

from __future__ import annotations

import base64
from typing import Any

import trio

from ..rpc import RpcRegistry
from ..rpc.protocol import InvalidParams as _Invalid
from ..wire import check_topic
from .driver import MeshService

MAX_COUNT = 100_000


def _topic(params: dict[str, Any]) -> str:
    topic = params.get("topic")
    if not isinstance(topic, str):
        raise _Invalid("topic must be a string")
    try:
        return check_topic(topic)
    except ValueError as e:
        raise _Invalid(str(e)) from None


def _number(params: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _Invalid(f"{name} must be a number between {lo} and {hi}")
    return value


def _payload_view(payload: bytes) -> dict[str, Any]:
    try:
        return {"text": payload.decode("utf-8"), "size": len(payload)}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(payload).decode(), "size": len(payload)}


def register(rpc: RpcRegistry, mesh: MeshService) -> None:
    async def peers(params: dict[str, Any]) -> dict[str, Any]:
        return {"did": mesh.did, "address": mesh.address, "peers": mesh.peers()}

    async def publish(params: dict[str, Any]) -> dict[str, Any]:
        topic = _topic(params)
        text = params.get("text", "")
        if not isinstance(text, str):
            raise _Invalid("text must be a string")
        count = int(_number(params, "count", 1, 1, MAX_COUNT))
        interval = float(_number(params, "interval_s", 0.0, 0.0, 60.0))
        payload = text.encode()
        links = 0
        for i in range(count):
            links += await mesh.publish(topic, payload)
            if interval and i + 1 < count:
                await trio.sleep(interval)
        return {"topic": topic, "published": count, "sends": links}

    async def subscribe(params: dict[str, Any]) -> dict[str, Any]:
        topic = _topic(params)
        mesh.record(topic)
        return {"topic": topic, "recording": True}

    async def received(params: dict[str, Any]) -> dict[str, Any]:
        topic = _topic(params)
        limit = int(_number(params, "limit", 100, 0, 1000))
        with_payload = params.get("payload", True) is not False
        out = mesh.received(topic, limit)
        for item in out["messages"]:
            payload = item.pop("payload")
            if with_payload:
                item.update(_payload_view(payload))
            else:
                item["size"] = len(payload)
        return out

    rpc.register("mesh.peers", peers)
    rpc.register("mesh.publish", publish)
    rpc.register("mesh.subscribe", subscribe)
    rpc.register("mesh.received", received)
