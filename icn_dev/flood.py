"""An adversarial member for flood tests: one admitted identity that links to one icnd and
publishes signed placement requests as fast as it is told (10,000 a second by default).

It speaks the real protocol without the daemon's driver, as an attacker would: TLS, the
channel-bound ``auth`` proof, ``hello``, then a stream of ``gossip`` frames on the compute topic,
each a valid, signed ``placement_request`` for a fresh task that fits any executor. Signing is
done before the flood starts so the sending rate is not bounded by Ed25519. It answers pings so
that only the receiver's own limits can slow or drop it, and reports what it sent and whether
and why the receiver closed the link.

    python -m icn_dev.flood --target 127.0.0.1:7946 --key flooder.key --rate 10000 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from icn_node.config import parse_hostport
from icn_node.identity import NodeIdentity
from icn_node.mesh import tls
from icn_node.mesh.core import FEATURES
from icn_node.scheduler.policy import PlacementRequest
from icn_node.scheduler.resources import ResourceProfile
from icn_node.wire import (
    COMPUTE_TOPIC,
    PROTOCOL_VERSION,
    Challenge,
    Close,
    FrameDecoder,
    Gossip,
    Hello,
    Ping,
    PlacementRequestMsg,
    Pong,
    decode_message,
    encode_frame,
    encode_message,
)

TICK_S = 0.01  # frames go out in one write per tick: rate * TICK_S frames at a time
MAX_FRAMES = 400_000  # pre-signed frames held at most (about 200 MB at most; ~25 s at 10,000/s)


@dataclass
class FloodReport:
    target: str
    target_did: str
    rate: float
    seconds: float
    sent: int
    elapsed_s: float
    closed_by_target: str  # the reason of the target's close frame, "" if it did not close
    signing_s: float

    @property
    def achieved_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def request_frames(identity: NodeIdentity, n: int, now: float, cpu_cores: float) -> list[bytes]:
    """``n`` signed gossip frames, each a placement request for a new task any executor fits."""
    profile = ResourceProfile(cpu_cores=cpu_cores, memory_mb=64, duration_estimate=1.0)
    out = []
    seq0 = time.time_ns()
    ts_ms = int(now * 1000)
    for i in range(n):
        req = PlacementRequest(secrets.token_bytes(32), profile, identity.did, requested_at=now)
        payload = encode_message(PlacementRequestMsg(req, 1, 1.0))
        out.append(encode_frame(Gossip.sign(identity, COMPUTE_TOPIC, seq0 + i, ts_ms, payload)))
    return out


async def _handshake(stream: trio.SSLStream, identity: NodeIdentity, decoder: FrameDecoder):
    await stream.do_handshake()
    der = stream.getpeercert(binary_form=True)
    target_did = tls.did_from_certificate(der)
    challenge = await _read(stream, decoder)
    if not isinstance(challenge, Challenge):
        raise ConnectionError(f"expected a challenge, got {challenge.TAG}")
    assert der is not None
    await stream.send_all(encode_frame(tls.make_proof(identity, challenge.nonce, der)))
    hello = await _read(stream, decoder)
    if not isinstance(hello, Hello):
        raise ConnectionError(f"refused: {hello!r}")
    await stream.send_all(encode_frame(Hello(PROTOCOL_VERSION, (), "", FEATURES)))
    return target_did


async def _read(stream: trio.SSLStream, decoder: FrameDecoder):
    while True:
        body = decoder.next_body()
        if body is not None:
            return decode_message(body)
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("the target closed the link")
        decoder.feed(data)


async def flood(
    target: str,
    identity: NodeIdentity,
    rate: float = 10_000.0,
    seconds: float = 5.0,
    cpu_cores: float = 0.5,
) -> FloodReport:
    """Link to ``target`` as ``identity`` and publish ``rate`` requests a second for
    ``seconds`` (or until the target closes the link)."""
    n = min(MAX_FRAMES, math.ceil(rate * seconds))
    t0 = time.monotonic()
    frames = request_frames(identity, n, time.time(), cpu_cores)
    signing_s = time.monotonic() - t0
    host, port = parse_hostport(target)
    raw = await trio.open_tcp_stream(host, port)
    stream = trio.SSLStream(raw, tls.client_context(), server_side=False, https_compatible=False)
    decoder = FrameDecoder(1 << 20)
    closed = ""
    sent = 0
    async with stream:
        with trio.fail_after(10):
            target_did = await _handshake(stream, identity, decoder)
        done = trio.Event()
        sending = trio.Lock()  # one writer at a time: the flood and the pongs share the stream

        async def answer() -> None:
            nonlocal closed
            try:
                while True:
                    msg = await _read(stream, decoder)
                    if isinstance(msg, Ping):
                        async with sending:
                            await stream.send_all(encode_frame(Pong(msg.nonce)))
                    elif isinstance(msg, Close):
                        closed = msg.reason or "closed"
                        done.set()
                        return
            except (ConnectionError, trio.BrokenResourceError, trio.ClosedResourceError):
                closed = closed or "eof"
                done.set()

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            tick = 0
            while sent < n and not done.is_set():
                due = min(n, math.floor(rate * (tick + 1) * TICK_S))
                batch = frames[sent:due]
                try:
                    if batch:
                        async with sending:
                            await stream.send_all(b"".join(batch))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    closed = closed or "broken"
                    break
                sent += len(batch)
                tick += 1
                await trio.sleep_until(start + tick * TICK_S)
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    return FloodReport(target, target_did, rate, seconds, sent, elapsed, closed, signing_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m icn_dev.flood", description=__doc__.split("\n")[0])
    p.add_argument("--target", required=True, help="the icnd mesh address (host:port)")
    p.add_argument("--key", type=Path, required=True, help="an admitted member's key file")
    p.add_argument("--rate", type=float, default=10_000.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--cpu", type=float, default=0.5, help="cores each flood task asks for")
    args = p.parse_args(argv)
    identity = NodeIdentity.load(args.key)
    report = trio.run(flood, args.target, identity, args.rate, args.seconds, args.cpu)
    out = asdict(report) | {"achieved_per_s": round(report.achieved_per_s, 1)}
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
