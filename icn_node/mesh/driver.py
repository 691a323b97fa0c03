"""The mesh service: a thin trio driver around :class:`~icn_node.mesh.core.MeshCore`.

It owns the I/O the core may not touch: the TLS listener and dialer, the link handshake
(certificate key check, challenge and channel-bound proof, admission), one reader and one writer
task per link with a bounded send queue, and the timer loop that calls ``core.tick(now)``.
Everything the core decides comes back as actions, carried out by :meth:`MeshService._apply`.

Time: the core's ``now`` is Unix-epoch seconds. The driver reads the wall clock once at start,
then derives ``now`` from ``trio.current_time()``, so ``MockClock`` drives the whole mesh in
tests and a wall-clock step on the host cannot reorder the core's timers.

Other services use: :meth:`subscribe`, :meth:`publish`, :meth:`send_direct`,
:meth:`peer_count`, :meth:`peers`; the network map also :meth:`rtt_samples`, :meth:`linked`
and :meth:`bytes_total`. The node calls :meth:`serve` and :meth:`shutdown`.
"""

from __future__ import annotations

import itertools
import random
import secrets
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..config import MeshSection, format_hostport, parse_hostport
from ..errors import CodecError, RemoteProtocolError
from ..identity import NodeIdentity
from ..logs import get_logger
from ..wire import (
    Auth,
    Challenge,
    Close,
    Direct,
    FrameDecoder,
    Gossip,
    Message,
    decode_message,
    encode_frame,
)
from . import tls
from .core import (
    Action,
    CloseLink,
    CoreConfig,
    Deliver,
    Delivery,
    Dial,
    Drop,
    MeshCore,
    PeerDown,
    PeerUp,
    Reject,
    RttSample,
    Send,
)

log = get_logger("icn.mesh")

CLOSE_FLUSH_S = 1.0  # how long a closing link may take to flush its Close frame
SHUTDOWN_S = 2.0  # how long shutdown waits for links to say goodbye
STALL_S = 5.0  # a peer whose queue stays over half full this long while we wait is dropped
SUBSCRIBER_BUFFER = 1024
RECEIVE_CHUNK = 65536
WRITE_BATCH_BYTES = 65536

Connect = Callable[[str], Awaitable[trio.abc.Stream]]


class _Refused(Exception):
    """A link handshake failed; ``reason`` is the metric label, ``did`` the peer if known."""

    def __init__(self, reason: str, did: str | None = None, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.did = did
        self.detail = detail


@dataclass(eq=False)
class _LinkIO:
    id: int
    did: str
    direction: str
    stream: trio.SSLStream
    send: trio.MemorySendChannel[bytes]
    scope: trio.CancelScope | None = None
    closing: bool = False
    reason: str = "eof"
    drained: trio.Event | None = None  # set by the writer when the queue falls to half


@dataclass
class _Ring:
    """The last deliveries on a topic, for ``mesh.received`` (tests, benchmark, operators)."""

    items: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    total: int = 0


class _Metrics:
    def __init__(self, registry: CollectorRegistry, core: MeshCore) -> None:
        self.registry = registry
        self.peers = Gauge("icn_mesh_peers", "Peers with an active mesh link.", registry=registry)
        self.peers.set_function(core.peer_count)
        self.rejected = Counter(
            "icn_mesh_rejected_total", "Links refused, by reason.", ["reason"], registry=registry
        )
        self.messages = Counter(
            "icn_gossip_messages_total",
            "Gossip and direct messages on links, by topic (subscribed topics; else 'other').",
            ["topic", "direction"],
            registry=registry,
        )
        self.bytes = Counter(
            "icn_gossip_bytes_total",
            "Frame bytes on mesh links, by direction.",
            ["direction"],
            registry=registry,
        )
        self.dropped = Counter(
            "icn_gossip_dropped_total",
            "Messages dropped, by reason.",
            ["reason"],
            registry=registry,
        )


class MeshService:
    def __init__(
        self,
        config: MeshSection,
        identity: NodeIdentity,
        *,
        region: str = "",
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
        connect: Connect | None = None,
        listen: bool = True,
    ) -> None:
        self.config = config
        self.identity = identity
        self.did = identity.did
        self.core = MeshCore(identity, CoreConfig.from_section(config, region), rng)
        registry = registry if registry is not None else CollectorRegistry()
        self.metrics = _Metrics(registry, self.core)
        self._cert = tls.self_signed_certificate(identity)
        self._cert_der = tls.certificate_der(self._cert)
        self._server_ctx = tls.server_context(identity, self._cert)
        self._client_ctx = tls.client_context()
        self._connect = connect or _tcp_connect
        self._listen = listen
        self._links: dict[int, _LinkIO] = {}
        self._ids = itertools.count(1)
        self._subscribers: dict[str, list[trio.MemorySendChannel[Delivery]]] = {}
        self._rings: dict[str, _Ring] = {}
        self._rtt_watchers: list[trio.MemorySendChannel[RttSample]] = []
        self._peer_watchers: list[trio.MemorySendChannel[PeerUp | PeerDown]] = []
        self.bytes_in = 0  # frame bytes on links, as icn_gossip_bytes_total counts them
        self.bytes_out = 0
        self._nursery: trio.Nursery | None = None
        self._wakeup = trio.Event()
        self._stopping = False
        self._all_closed = trio.Event()
        self._offset = 0.0
        self.address: str | None = None

    # --- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        return trio.current_time() + self._offset

    # --- service -------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial the bootstrap peers, run the timers; started() gets the bound address."""
        self._offset = time.time() - trio.current_time()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listen_addrs: tuple[str, ...] = ()
            if self._listen:
                host, port = parse_hostport(self.config.listen)
                listeners = await trio.open_tcp_listeners(port, host=host)
                bound = listeners[0].socket.getsockname()
                self.address = format_hostport(bound[0], bound[1])
                nursery.start_soon(self._accept_loop, listeners)
            else:
                self.address = self.config.listen
            listen_addrs = (self.config.advertise or self.address,)
            log.info(
                "mesh_listening",
                address=self.address,
                advertise=listen_addrs[0],
                members=len(self.config.members),
                bootstrap=len(self.config.bootstrap),
            )
            self._apply(self.core.start(self.now(), listen_addrs))
            nursery.start_soon(self._timer_loop)
            task_status.started(self.address)

    async def _accept_loop(self, listeners: list[trio.SocketListener]) -> None:
        assert self._nursery is not None
        await trio.serve_listeners(self._accept_socket, listeners, handler_nursery=self._nursery)

    async def _accept_socket(self, stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()
            address = format_hostport(peer[0], peer[1])
        except OSError:
            address = "?"
        await self._run_link(stream, "in", address, None, None)

    def accept(self, stream: trio.abc.Stream, address: str) -> None:
        """Handle an inbound stream that did not come from our listener (tests, other hosts)."""
        assert self._nursery is not None, "serve() is not running"
        self._nursery.start_soon(self._run_link, stream, "in", address, None, None)

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.core.next_timer() - self._offset
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._apply(self.core.tick(self.now()))

    def _rearm(self) -> None:
        self._wakeup.set()

    async def shutdown(self) -> None:
        """Say goodbye on every link and wait (bounded) for them to close."""
        if self._stopping:
            return
        self._stopping = True
        self._apply(self.core.shutdown(self.now()))
        if not self._links:
            self._all_closed.set()
        with trio.move_on_after(SHUTDOWN_S):
            await self._all_closed.wait()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # --- actions -------------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self._send(a.links, a.msg)
            elif isinstance(a, Deliver):
                self._deliver(a.delivery)
            elif isinstance(a, Dial):
                if self._nursery is not None and not self._stopping:
                    self._nursery.start_soon(self._dial, a.address, a.did)
            elif isinstance(a, CloseLink):
                io = self._links.get(a.link)
                if io is not None:
                    self._close_link(io, a.reason, a.detail)
            elif isinstance(a, Drop):
                self.metrics.dropped.labels(reason=a.reason).inc()
                if a.reason != "duplicate":
                    log.debug("gossip_dropped", reason=a.reason, topic=a.topic, origin=a.origin)
            elif isinstance(a, Reject):
                self.metrics.rejected.labels(reason=a.reason).inc()
                log.warning("peer_refused", did=a.did, reason=a.reason, detail=a.detail)
            elif isinstance(a, PeerUp):
                log.info("peer_up", did=a.did, address=a.address, direction=a.direction)
                self._peer_event(a)
            elif isinstance(a, PeerDown):
                log.info("peer_down", did=a.did, reason=a.reason)
                self._peer_event(a)
            elif isinstance(a, RttSample):
                self._rtt_sample(a)

    def _topic_label(self, topic: str) -> str:
        return topic if topic in self.core.subscriptions else "other"

    def _send(self, links: tuple[int, ...], msg: Message) -> None:
        data = encode_frame(msg)
        counted = isinstance(msg, (Gossip, Direct))
        for lid in links:
            io = self._links.get(lid)
            if io is None or io.closing:
                continue
            try:
                io.send.send_nowait(data)
            except trio.WouldBlock:
                self.metrics.dropped.labels(reason="send-queue-full").inc()
                self._close_link(io, "send-queue-full", "peer is not reading; dropped")
                continue
            if counted:
                label = self._topic_label(msg.topic)  # type: ignore[attr-defined]
                self.metrics.messages.labels(topic=label, direction="out").inc()

    async def _backpressure(self, actions: list[Action]) -> None:
        """Wait while a link we just sent to is more than half full (bounded by STALL_S).

        Local publishers and link readers call this, so a burst slows its source (down to TCP
        flow control on the upstream link) instead of overflowing queues; a peer that does not
        drain within STALL_S is dropped as stuck.
        """
        half = self.config.send_queue_len // 2
        deadline = None
        for a in actions:
            if not isinstance(a, Send):
                continue
            for lid in a.links:
                io = self._links.get(lid)
                while (
                    io is not None
                    and not io.closing
                    and io.send.statistics().current_buffer_used > half
                ):
                    if deadline is None:
                        deadline = trio.current_time() + STALL_S
                    if io.drained is None:
                        io.drained = trio.Event()
                    with trio.move_on_at(deadline) as scope:
                        await io.drained.wait()
                    if scope.cancelled_caught:
                        self.metrics.dropped.labels(reason="send-queue-stuck").inc()
                        self._close_link(io, "send-queue-stuck", "peer stopped draining")

    def _deliver(self, d: Delivery) -> None:
        subscribers = self._subscribers.get(d.topic, [])
        for chan in list(subscribers):
            try:
                chan.send_nowait(d)
            except trio.WouldBlock:
                self.metrics.dropped.labels(reason="subscriber-full").inc()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                subscribers.remove(chan)
                if not subscribers and d.topic not in self._rings:
                    self._apply(self.core.unsubscribe(d.topic, self.now()))
        ring = self._rings.get(d.topic)
        if ring is not None:
            ring.total += 1
            ring.items.append(
                {
                    "topic": d.topic,
                    "origin": d.origin,
                    "seq": d.seq,
                    "ts_ms": d.ts_ms,
                    "received_ms": round(self.now() * 1000, 3),
                    "direct": d.direct,
                    "id": d.msg_id.hex(),
                    "payload": d.payload,
                }
            )

    def _rtt_sample(self, sample: RttSample) -> None:
        for chan in list(self._rtt_watchers):
            try:
                chan.send_nowait(sample)
            except trio.WouldBlock:
                pass  # a watcher that falls behind misses samples; the next ones come
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._rtt_watchers.remove(chan)

    def _peer_event(self, event: PeerUp | PeerDown) -> None:
        for chan in list(self._peer_watchers):
            try:
                chan.send_nowait(event)
            except trio.WouldBlock:
                pass  # a watcher that falls behind misses events; linked() tells the truth
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._peer_watchers.remove(chan)

    def _close_link(self, io: _LinkIO, reason: str, detail: str) -> None:
        """Queue a Close frame, stop accepting sends, give the writer a moment to flush."""
        if io.closing:
            return
        io.closing = True
        io.reason = reason
        log.info("link_closing", link=io.id, did=io.did, reason=reason, detail=detail)
        if reason not in ("peer-closed", "eof", "broken"):
            try:
                io.send.send_nowait(encode_frame(Close(reason[:64], detail[:1024])))
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass
        io.send.close()
        if io.scope is not None:
            io.scope.deadline = min(io.scope.deadline, trio.current_time() + CLOSE_FLUSH_S)
        # The core forgets the link now (idempotent), not after the flush.
        self._apply(self.core.link_closed(io.id, reason, self.now()))

    # --- links ---------------------------------------------------------------------------

    async def _dial(self, address: str, did: str | None) -> None:
        try:
            with trio.fail_after(self.config.handshake_timeout_s):
                raw = await self._connect(address)
        except (OSError, trio.TooSlowError, ValueError) as e:
            # ValueError: an address a peer gave us that does not parse (a member's `peers` or
            # `hello.listen` is its word): a failed dial like any other, never a crash.
            reason = "bad-address" if isinstance(e, ValueError) else "unreachable"
            log.debug("dial_failed", address=address, did=did, error=str(e) or type(e).__name__)
            self._apply(self.core.dial_failed(address, reason, self.now(), None))
            self._rearm()
            return
        await self._run_link(raw, "out", address, did, address)

    async def _run_link(
        self,
        raw: trio.abc.Stream,
        direction: str,
        address: str,
        expect_did: str | None,
        dial_address: str | None,
    ) -> None:
        server = direction == "in"
        ctx = self._server_ctx if server else self._client_ctx
        stream = trio.SSLStream(raw, ctx, server_side=server, https_compatible=False)
        decoder = FrameDecoder(self.config.max_frame_bytes)
        io: _LinkIO | None = None
        try:
            if self._stopping:
                return
            try:
                with trio.fail_after(self.config.handshake_timeout_s):
                    if server:
                        did = await self._authenticate_dialer(stream, decoder)
                    else:
                        did = await self._authenticate_listener(stream, decoder, expect_did)
            except _Refused as r:
                self._refused(r, direction, address, dial_address)
                if server and r.did is not None:
                    with trio.move_on_after(CLOSE_FLUSH_S):
                        await stream.send_all(encode_frame(Close(r.reason, r.detail[:1024])))
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as e:
                cause = e.__cause__ if isinstance(e.__cause__, ssl.SSLError) else e
                log.info(
                    "handshake_failed",
                    direction=direction,
                    address=address,
                    error=str(cause) or type(cause).__name__,
                )
                if dial_address is not None:
                    self._apply(self.core.dial_failed(dial_address, "handshake", self.now()))
                    self._rearm()
                return
            send, receive = trio.open_memory_channel[bytes](self.config.send_queue_len)
            io = _LinkIO(next(self._ids), did, direction, stream, send)
            self._links[io.id] = io
            opened = self.core.link_opened(io.id, did, direction, address, self.now(), dial_address)
            self._apply(opened)
            async with trio.open_nursery() as nursery:
                io.scope = nursery.cancel_scope
                nursery.start_soon(self._writer, io, receive)
                await self._reader(io, decoder)
                self._close_link(io, io.reason, "")
        finally:
            await trio.aclose_forcefully(stream)
            if io is not None:
                self._links.pop(io.id, None)
                if not io.closing:
                    io.closing = True
                    io.send.close()
                self._apply(self.core.link_closed(io.id, io.reason, self.now()))
                self._rearm()
                if self._stopping and not self._links:
                    self._all_closed.set()

    def _refused(self, r: _Refused, direction: str, address: str, dial_address: str | None) -> None:
        if r.reason != "self":
            self.metrics.rejected.labels(reason=r.reason).inc()
            log.warning(
                "peer_refused",
                did=r.did,
                reason=r.reason,
                detail=r.detail,
                direction=direction,
                address=address,
            )
        if dial_address is not None:
            self._apply(self.core.dial_failed(dial_address, r.reason, self.now(), r.did))
            self._rearm()

    async def _read_one(self, stream: trio.SSLStream, decoder: FrameDecoder) -> Message:
        while True:
            body = decoder.next_body()
            if body is not None:
                return decode_message(body)
            data = await stream.receive_some(RECEIVE_CHUNK)
            if not data:
                raise trio.BrokenResourceError("closed during the handshake")
            self.metrics.bytes.labels(direction="in").inc(len(data))
            self.bytes_in += len(data)
            decoder.feed(data)

    async def _authenticate_dialer(self, stream: trio.SSLStream, decoder: FrameDecoder) -> str:
        """Listener side: challenge the dialer, check its channel-bound proof, admit it."""
        await stream.do_handshake()
        nonce = secrets.token_bytes(32)
        await stream.send_all(encode_frame(Challenge(nonce)))
        try:
            msg = await self._read_one(stream, decoder)
        except CodecError as e:
            raise _Refused("bad-handshake", None, str(e)) from None
        if isinstance(msg, Close):
            raise trio.BrokenResourceError(f"dialer closed: {msg.reason} {msg.detail}")
        if not isinstance(msg, Auth):
            raise _Refused("bad-handshake", None, f"expected auth, got {msg.TAG}")
        if not tls.check_proof(msg, nonce, self._cert_der):
            raise _Refused("bad-proof", msg.did, "signature does not match our challenge")
        reason = self.core.admission(msg.did)
        if reason is not None:
            raise _Refused(reason, msg.did, "")
        return msg.did

    async def _authenticate_listener(
        self, stream: trio.SSLStream, decoder: FrameDecoder, expect_did: str | None
    ) -> str:
        """Dialer side: the listener's certificate key is its DID; answer its challenge."""
        await stream.do_handshake()
        der = stream.getpeercert(binary_form=True)
        try:
            did = tls.did_from_certificate(der)
        except RemoteProtocolError as e:
            raise _Refused("bad-certificate", None, str(e)) from None
        if expect_did is not None and did != expect_did:
            raise _Refused("unexpected-did", did, f"expected {expect_did}")
        reason = self.core.admission(did)
        if reason is not None:
            await stream.send_all(encode_frame(Close(reason, "")))
            raise _Refused(reason, did, "")
        try:
            msg = await self._read_one(stream, decoder)
        except CodecError as e:
            raise _Refused("bad-handshake", did, str(e)) from None
        if isinstance(msg, Close):
            raise _Refused(f"refused-by-peer:{msg.reason}"[:64], did, msg.detail)
        if not isinstance(msg, Challenge):
            raise _Refused("bad-handshake", did, f"expected challenge, got {msg.TAG}")
        assert der is not None
        await stream.send_all(encode_frame(tls.make_proof(self.identity, msg.nonce, der)))
        return did

    async def _reader(self, io: _LinkIO, decoder: FrameDecoder) -> None:
        messages = self.metrics.messages
        try:
            while not io.closing:
                for body in decoder:
                    msg = decode_message(body)
                    if isinstance(msg, (Gossip, Direct)):
                        label = self._topic_label(msg.topic)
                        messages.labels(topic=label, direction="in").inc()
                    actions = self.core.frame_received(io.id, msg, self.now())
                    self._apply(actions)
                    if io.closing:
                        return
                    await self._backpressure(actions)
                data = await io.stream.receive_some(RECEIVE_CHUNK)
                if not data:
                    io.reason = "eof"
                    return
                self.metrics.bytes.labels(direction="in").inc(len(data))
                self.bytes_in += len(data)
                decoder.feed(data)
        except CodecError as e:
            reason = "frame-too-large" if "exceeds the limit" in str(e) else "bad-frame"
            self.metrics.dropped.labels(reason=reason).inc()
            log.warning("link_protocol_error", link=io.id, did=io.did, reason=reason, detail=str(e))
            self._close_link(io, reason, str(e))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            io.reason = "broken" if not io.closing else io.reason

    async def _writer(self, io: _LinkIO, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        out = self.metrics.bytes.labels(direction="out")
        try:
            half = self.config.send_queue_len // 2
            async for data in receive:
                # Let the tasks already runnable in this tick queue theirs, then send all that
                # is queued at once: one TLS record and one syscall per batch, not per frame
                # (on loopback a send also pays for the receiver's wake-up).
                await trio.lowlevel.cancel_shielded_checkpoint()
                batch = [data]
                size = len(data)
                while size < WRITE_BATCH_BYTES:
                    try:
                        more = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(more)
                    size += len(more)
                await io.stream.send_all(b"".join(batch) if len(batch) > 1 else data)
                out.inc(size)
                self.bytes_out += size
                if io.drained is not None and receive.statistics().current_buffer_used <= half:
                    io.drained.set()
                    io.drained = None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if not io.closing:
                io.reason = "broken"
        finally:
            if io.scope is not None:
                io.scope.cancel()

    # --- API for other services ----------------------------------------------------------

    def subscribe(
        self, topic: str, buffer: int = SUBSCRIBER_BUFFER
    ) -> trio.MemoryReceiveChannel[Delivery]:
        """Deliveries on ``topic`` (gossip, and direct messages sent to us on it).

        The channel is bounded: a subscriber that falls behind loses deliveries (counted as
        ``subscriber-full``) rather than stalling the mesh. Close the channel to leave.
        """
        send, receive = trio.open_memory_channel[Delivery](buffer)
        self._subscribers.setdefault(topic, []).append(send)
        self._apply(self.core.subscribe(topic, self.now()))
        return receive

    def record(self, topic: str) -> None:
        """Subscribe ``topic`` into a ring of the last deliveries (see :meth:`received`)."""
        self._rings.setdefault(topic, _Ring())
        self._apply(self.core.subscribe(topic, self.now()))

    def received(self, topic: str, limit: int = 100) -> dict[str, Any]:
        ring = self._rings.get(topic)
        stats = self.core.topic_stats.get(topic)
        items = [dict(m) for m in list(ring.items)[-limit:]] if ring and limit > 0 else []
        return {
            "topic": topic,
            "recording": ring is not None,
            "delivered_total": ring.total if ring else 0,
            "copies_received": stats.received if stats else 0,
            "duplicates": stats.duplicates if stats else 0,
            "messages": items,
        }

    async def publish(self, topic: str, payload: bytes) -> int:
        """Sign and send ``payload`` to the topic's subscribers; returns the links it went to."""
        actions = self.core.publish(topic, payload, self.now())
        self._apply(actions)
        await trio.lowlevel.checkpoint()
        await self._backpressure(actions)
        return sum(len(a.links) for a in actions if isinstance(a, Send))

    async def send_direct(self, did: str, topic: str, payload: bytes) -> None:
        """To one DID's ``topic`` subscribers: on our link to it, or signed through the mesh."""
        actions = self.core.send_direct(did, topic, payload, self.now())
        self._apply(actions)
        await trio.lowlevel.checkpoint()
        await self._backpressure(actions)

    def peer_count(self) -> int:
        return self.core.peer_count()

    def rtt_ms(self) -> dict[str, float]:
        """Smoothed round-trip times (ms) to linked peers, from keepalive ping/pong."""
        return self.core.rtt_ms()

    def rtt_samples(self, buffer: int = 256) -> trio.MemoryReceiveChannel[RttSample]:
        """Every RTT sample from now on, as it is measured (one per pong). Bounded: a watcher
        that falls behind misses samples instead of stalling the mesh. Close it to stop."""
        send, receive = trio.open_memory_channel[RttSample](buffer)
        self._rtt_watchers.append(send)
        return receive

    def peer_events(self, buffer: int = 256) -> trio.MemoryReceiveChannel[PeerUp | PeerDown]:
        """Links to peers coming up and going down, from now on (bounded, as
        :meth:`rtt_samples`). A ``PeerDown`` may be one of two links to a peer: ask
        :meth:`linked` whether the peer is still there."""
        send, receive = trio.open_memory_channel[PeerUp | PeerDown](buffer)
        self._peer_watchers.append(send)
        return receive

    def linked(self, did: str) -> bool:
        """True while there is an active link to ``did``."""
        return did in self.core.active

    def bytes_total(self) -> int:
        """Frame bytes sent and received on mesh links since start (both directions)."""
        return self.bytes_in + self.bytes_out

    def peers(self) -> list[dict[str, Any]]:
        rows = self.core.peers(self.now())
        for row in rows:
            io = self._links.get(row["link"])
            row["queued"] = io.send.statistics().current_buffer_used if io else 0
        return rows


async def _tcp_connect(address: str) -> trio.abc.Stream:
    host, port = parse_hostport(address)
    return await trio.open_tcp_stream(host, port)
