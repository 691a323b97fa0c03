"""In-process mesh networks for driver tests: MeshServices joined by trio memory streams.

TLS, the link proof and the codec all run for real; only TCP is replaced. Run under
``MockClock(autojump_threshold=0)`` (the ``autojump_clock`` fixture) so no test sleeps for real.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio
import trio.testing

from icn_node import wire
from icn_node.config import MeshSection
from icn_node.identity import NodeIdentity
from icn_node.mesh import tls
from icn_node.mesh.driver import MeshService


def section(address: str, members: list[str], **kw) -> MeshSection:
    return MeshSection(listen=address, members=list(members), **kw)


class MemNet:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.services: dict[str, MeshService] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.pair: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]] = (
            trio.testing.memory_stream_pair
        )

    def connector(self, source: str):
        async def connect(address: str) -> trio.abc.Stream:
            await trio.sleep(0.001)  # a little latency, as a real dial has
            svc = self.services.get(address)
            if svc is None:
                raise ConnectionRefusedError(f"nothing listens on {address}")
            near, far = self.pair()
            svc.accept(far, source)
            return near

        return connect

    async def start(
        self, identity: NodeIdentity, address: str, members: list[str], seed: int = 0, **kw
    ) -> MeshService:
        svc = MeshService(
            section(address, members, **kw),
            identity,
            rng=random.Random(seed),
            connect=self.connector(address),
            listen=False,
        )

        async def run(task_status=trio.TASK_STATUS_IGNORED):
            with trio.CancelScope() as scope:
                self.scopes[address] = scope
                await svc.serve(task_status=task_status)

        await self.nursery.start(run)
        self.services[address] = svc
        return svc

    def crash(self, address: str) -> None:
        """The node vanishes: its tasks are cancelled and its streams closed, no goodbye."""
        self.services.pop(address)
        self.scopes.pop(address).cancel()

    def raw(self, identity: NodeIdentity, target: str, stream_pair=None) -> RawPeer:
        near, far = (stream_pair or self.pair)()
        self.services[target].accept(far, "raw:1")
        return RawPeer(identity, near)


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, step: float = 0.05):  # noqa: ASYNC109
    """Poll ``predicate`` (state owned by other tasks) until true; fail after ``timeout``."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(step)


class RawPeer:
    """A hand-driven dialer: real TLS and the real proof, then whatever frames a test sends."""

    def __init__(self, identity: NodeIdentity, stream: trio.abc.Stream) -> None:
        self.identity = identity
        self.stream = trio.SSLStream(stream, tls.client_context(), server_side=False)
        self.decoder = wire.FrameDecoder(1 << 24)

    async def handshake(self, version: int = wire.PROTOCOL_VERSION, hello: bool = True) -> str:
        await self.stream.do_handshake()
        der = self.stream.getpeercert(binary_form=True)
        challenge = await self.recv()
        assert isinstance(challenge, wire.Challenge), challenge
        await self.send(tls.make_proof(self.identity, challenge.nonce, der))
        if hello:
            await self.send(wire.Hello(version))
        return tls.did_from_certificate(der)

    async def send(self, msg: wire.Message) -> None:
        await self.stream.send_all(wire.encode_frame(msg))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def recv(self) -> wire.Message | None:
        """The next message, or None at end of stream."""
        while True:
            body = self.decoder.next_body()
            if body is not None:
                return wire.decode_message(body)
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not data:
                return None
            self.decoder.feed(data)

    async def recv_until(self, kind: type, timeout: float = 30.0):  # noqa: ASYNC109
        with trio.fail_after(timeout):
            while True:
                msg = await self.recv()
                if msg is None or isinstance(msg, kind):
                    return msg
