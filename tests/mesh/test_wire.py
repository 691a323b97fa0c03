"""The wire module: every message round-trips; every malformed input is a named CodecError."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from icn_node import wire
from icn_node.errors import CodecError, RemoteProtocolError
from icn_node.identity import NodeIdentity

ME = NodeIdentity.generate()
OTHER = NodeIdentity.generate()

SAMPLES = [
    wire.Challenge(b"n" * 32),
    wire.Auth(ME.did, b"s" * 64),
    wire.Hello(wire.PROTOCOL_VERSION, ("127.0.0.1:7946",), "eu-west", ("gossip-v1",)),
    wire.Close("version", "peer speaks 2"),
    wire.Heartbeat(),
    wire.Ping(7),
    wire.Pong(7),
    wire.Peers(((ME.did, "10.0.0.1:7946"), (OTHER.did, "[::1]:7946"))),
    wire.Subscribe(("a", "b"), on=False),
    wire.Graft("a"),
    wire.Prune("a"),
    wire.Direct("offers", b"\x00\x01"),
    wire.Gossip.sign(ME, "jobs", 7, 1_700_000_000_000, b"payload"),
    wire.Gossip.sign(ME, "jobs", 8, 1_700_000_000_000, b"p", to=OTHER.did),
]


def test_every_registered_type_has_a_sample():
    from tests.netmap.test_wire_netmap import NETMAP_SAMPLES
    from tests.test_wire_compute import COMPUTE_SAMPLES

    sampled = {type(m) for m in [*SAMPLES, *COMPUTE_SAMPLES, *NETMAP_SAMPLES]}
    assert sampled == set(wire.REGISTRY.values())


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.TAG)
def test_round_trip_through_frames(msg):
    data = wire.encode_frame(msg) * 2
    dec = wire.FrameDecoder()
    # Fed one byte at a time: a frame split anywhere still decodes.
    out = []
    for i in range(len(data)):
        dec.feed(data[i : i + 1])
        out.extend(wire.decode_message(b) for b in dec)
    assert out == [msg, msg]
    assert dec.buffered == 0


def test_codec_error_is_the_remotes_fault():
    assert issubclass(CodecError, RemoteProtocolError)


@pytest.mark.parametrize(
    "body, match",
    [
        (b"\xff\xff", "not valid CBOR"),
        (cbor2.dumps({"t": 1}), r"array \[tag, fields\]"),
        (cbor2.dumps([1, {}]), "tag must be text"),
        (cbor2.dumps(["nope", {}]), "unknown message type 'nope'"),
        (cbor2.dumps(["graft", []]), "fields must be a map"),
        (cbor2.dumps(["graft", {}]), r"missing fields \['topic'\]"),
        (cbor2.dumps(["graft", {"topic": "a", "x": 1}]), r"unknown fields \['x'\]"),
        (cbor2.dumps(["graft", {"topic": 5}]), "graft.topic: expected text"),
        (cbor2.dumps(["graft", {"topic": ""}]), "invalid graft: a topic"),
        (cbor2.dumps(["challenge", {"nonce": b"short"}]), "nonce must have 32 bytes"),
        (cbor2.dumps(["hello", {"version": True}]), "hello.version: expected an integer"),
        (cbor2.dumps(["peers", {"peers": [["did:web:x", "a:1"]]}]), "not an Ed25519"),
        (cbor2.dumps(["peers", {"peers": [[ME.did]]}]), r"peers\[0\]: expected 2 items"),
        (cbor2.dumps(["subscribe", {"topics": ["a"] * 300}]), "at most 256 items"),
        (cbor2.dumps(["graft", {"topic": "a"}]) + b"\x00", "1 bytes after the CBOR body"),
    ],
)
def test_malformed_bodies_name_the_problem(body, match):
    with pytest.raises(CodecError, match=match):
        wire.decode_message(body)


def test_oversized_frame_is_refused_from_its_header():
    dec = wire.FrameDecoder(max_frame_bytes=1024)
    dec.feed(wire.HEADER.pack(1025))
    with pytest.raises(CodecError, match="1025 bytes exceeds the limit of 1024"):
        dec.next_body()


def test_gossip_signature_covers_every_field():
    g = wire.Gossip.sign(ME, "jobs", 1, 1000, b"x")
    assert g.verify()
    for change in (
        {"topic": "other"},
        {"seq": 2},
        {"ts_ms": 1001},
        {"payload": b"y"},
        {"to": OTHER.did},
        {"origin": OTHER.did},
    ):
        forged = wire.Gossip(**{**g.to_fields(), **change})
        assert not forged.verify(), change
        assert forged.msg_id != g.msg_id


def test_msg_id_ignores_the_signature():
    g = wire.Gossip.sign(ME, "jobs", 1, 1000, b"x")
    forged = wire.Gossip(**{**g.to_fields(), "signature": b"\x00" * 64})
    assert forged.msg_id == g.msg_id and not forged.verify()


def test_decode_as_insists_on_the_type():
    body = wire.encode_message(wire.Graft("a"))
    assert wire.decode_as(wire.Graft, body) == wire.Graft("a")
    with pytest.raises(CodecError, match="expected prune, got graft"):
        wire.decode_as(wire.Prune, body)


def test_registering_a_new_message_type():
    @wire.message("test_offer_v0")
    @dataclass(frozen=True, slots=True)
    class Offer(wire.Message):
        task: bytes
        score: float
        parts: tuple[tuple[str, int], ...] = ()
        note: str | None = None

        def validate(self) -> None:
            if not 0 <= self.score <= 1:
                raise ValueError("score must be in [0, 1]")

    try:
        o = Offer(b"t", 1, (("cpu", 2),))
        assert o.score == 1.0 and isinstance(o.score, float)
        assert wire.decode_message(wire.encode_message(o)) == o
        with pytest.raises(CodecError, match="score must be in"):
            wire.decode_message(cbor2.dumps(["test_offer_v0", {"task": b"", "score": 2}]))
        with pytest.raises(TypeError, match="already used"):
            wire.message("test_offer_v0")(Offer)
    finally:
        del wire.REGISTRY["test_offer_v0"]


@given(
    topic=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    seq=st.integers(0, 2**63),
    ts=st.integers(0, 2**50),
    payload=st.binary(max_size=512),
)
def test_gossip_round_trip_property(topic, seq, ts, payload):
    topic = topic[:128]
    g = wire.Gossip.sign(ME, topic, seq, ts, payload)
    back = wire.decode_message(wire.encode_message(g))
    assert back == g and back.verify() and back.msg_id == g.msg_id


@given(st.binary(max_size=64))
def test_garbage_never_raises_anything_but_codec_error(data):
    try:
        wire.decode_message(data)
    except CodecError:
        pass


def test_wire_and_mesh_core_do_not_import_trio():
    code = (
        "import sys\n"
        "import icn_node.wire, icn_node.mesh.core, icn_node.mesh.states\n"
        "assert 'trio' not in sys.modules, sorted(m for m in sys.modules if 'trio' in m)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
