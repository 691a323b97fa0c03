"""The netmap's wire messages: round-trips, limits, and the coordinate in announcements."""

import cbor2
import pytest

from icn_node import wire
from icn_node.errors import CodecError
from icn_node.scheduler import NodeCapacity
from icn_node.scheduler.coordinates import Coordinate
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.tasks import TaskError

C = Coordinate((12.5, -3.25), 4.0, 0.2)

NETMAP_SAMPLES = [
    wire.NetmapCoordMsg(C),
    wire.NetmapProbeMsg(7, 1024),
    wire.NetmapProbeReplyMsg(7, C, b"\x00" * 1024),
    wire.NetmapProbeReplyMsg(8, C, error="budget"),
]


@pytest.mark.parametrize("msg", NETMAP_SAMPLES, ids=lambda m: m.TAG)
def test_round_trip(msg):
    assert wire.decode_message(wire.encode_message(msg)) == msg


def raw(tag, fields):
    return cbor2.dumps([tag, fields])


COORD = {"vec": [1.0, 2.0], "height": 1.0, "error": 0.5}


@pytest.mark.parametrize(
    "tag, fields, words",
    [
        ("netmap_probe", {"probe": 1, "size": wire.MAX_PROBE_BYTES + 1}, "netmap_probe.size"),
        ("netmap_probe", {"probe": -1, "size": 1}, "netmap_probe.probe"),
        (
            "netmap_probe_reply",
            {"probe": 1, "coordinate": COORD, "payload": b"x" * 102401},
            "payload",
        ),
        ("netmap_probe_reply", {"probe": 1, "coordinate": {**COORD, "height": -1}}, "height"),
        ("netmap_probe_reply", {"probe": 1, "coordinate": {**COORD, "error": 2}}, "error"),
        ("netmap_coord", {"coordinate": {**COORD, "vec": [1.0]}}, "vec"),
        ("netmap_coord", {"coordinate": {**COORD, "vec": [1e7, 0.0]}}, "vec"),
        ("netmap_coord", {"coordinate": {**COORD, "vec": [float("nan"), 0.0]}}, "vec"),
        ("netmap_coord", {"coordinate": C.to_dict(), "extra": 1}, "unknown fields"),
    ],
)
def test_malformed_netmap_messages_are_codec_errors(tag, fields, words):
    with pytest.raises(CodecError, match=words):
        wire.decode_message(raw(tag, fields))


CAP = NodeCapacity.from_totals(4.0, 8192, 10_000, 1000.0)
DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def test_an_announcement_without_a_coordinate_is_the_document_it_was():
    info = ExecutorInfo(did=DID, capacity=CAP, region="eu")
    assert "coordinate" not in info.to_dict()
    assert "coordinate" not in info.to_dict(json_safe=True)
    assert ExecutorInfo.from_dict(info.to_dict()).coordinate is None


def test_an_announcement_carries_the_coordinate_and_validates_it():
    info = ExecutorInfo(did=DID, capacity=CAP, coordinate=C)
    doc = info.to_dict()
    assert doc["coordinate"] == {"vec": [12.5, -3.25], "height": 4.0, "error": 0.2}
    msg = wire.decode_message(wire.encode_message(wire.ExecutorAnnounceMsg(info)))
    assert msg.info.coordinate == C
    with pytest.raises(TaskError, match="coordinate.height"):
        ExecutorInfo.from_dict({**doc, "coordinate": {**doc["coordinate"], "height": -1.0}})


def test_an_old_peer_reads_an_announcement_with_a_coordinate():
    """Documents ignore keys they do not know (icn_node.codec): an executor_announce from a node
    with the netmap decodes on a node without it, the coordinate left out."""
    doc = ExecutorInfo(did=DID, capacity=CAP, coordinate=C).to_dict()
    doc["some_future_field"] = 1  # what an old peer sees in the coordinate: an unknown key
    assert ExecutorInfo.from_dict(doc).did == DID


def test_distance_is_planar_plus_heights():
    a = Coordinate((0.0, 0.0), 5.0, 0.1)
    b = Coordinate((3.0, 4.0), 2.0, 0.1)
    assert a.distance_ms(b) == b.distance_ms(a) == 5.0 + 5.0 + 2.0
    assert a.distance_ms(a) == 10.0  # a node to itself crosses its access link twice
