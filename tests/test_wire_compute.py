"""Compute and blob messages: round-trips, and malformed documents refused at decode."""

import cbor2
import pytest

from icn_node import wire
from icn_node.errors import CodecError
from icn_node.identity import NodeIdentity
from icn_node.scheduler import (
    DefaultPlacementPolicy,
    LocalityContext,
    NodeCapacity,
    NodeState,
    PlacementRequest,
    PreferLowLatency,
    ResourceProfile,
)
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.tasks import TaskResult, TaskSpec, TaskState

SUB = NodeIdentity.generate().did
EXE = NodeIdentity.generate().did
H = bytes(range(32))
SPEC = TaskSpec(
    code_blob=H,
    submitter=SUB,
    fuel=1000,
    nonce=b"n" * 16,
    args=("1",),
    profile=ResourceProfile.minimal(),
    hints=(PreferLowLatency(20.0),),
)
REQUEST = PlacementRequest(task_hash=SPEC.task_hash, profile=SPEC.profile, submitter=SUB)
CAP = NodeCapacity.from_totals(4.0, 8192, 10_000, 1000.0)
OFFER = DefaultPlacementPolicy().score(
    REQUEST, NodeState(did=EXE, capacity=CAP), 0.8, LocalityContext.empty(), 0.0
)
RESULT = TaskResult(
    state=TaskState.COMPLETED,
    executor=EXE,
    fuel_used=10,
    exit_code=0,
    stdout=b"5050\n",
    output_blobs=(("out.txt", H),),
)

COMPUTE_SAMPLES = [
    wire.PlacementRequestMsg(REQUEST, 1, 1.0, (EXE,)),
    wire.TaskSubmittedMsg(SPEC, 1, 1.0),
    wire.TaskClaimedMsg(H, EXE, 1),
    wire.TaskCancelMsg(H, 2),
    wire.ExecutorAnnounceMsg(ExecutorInfo(did=EXE, capacity=CAP, region="eu")),
    wire.PlacementOfferMsg(OFFER, 1),
    wire.DeclineMsg(H, 1, "low_trust", "trust 0.2 < 0.3"),
    wire.ClaimMsg(H, 1, SPEC),
    wire.ClaimReplyMsg(H, 1, False, "no_capacity"),
    wire.ClaimRequestMsg(H, 1),
    wire.GrantMsg(H, 1, SPEC),
    wire.RefuseMsg(H, 1),
    wire.TaskHeartbeatMsg(H, 3),
    wire.TaskResultMsg(H, 1, RESULT),
    wire.ResultAckMsg(H, 1),
    wire.AbandonMsg(H, 1, "executor restarted"),
    wire.BlobRequestMsg(7, H, 0, 65536),
    wire.BlobChunkMsg(7, H, 0, 3, b"abc"),
    wire.BlobAnnounceMsg(((H, 3), (bytes(32), 0))),
    wire.BlobFetchMsg(7, H, 0, 65536, "task_input"),
    wire.BlobHashesRequestMsg(8, H, 8192),
    wire.BlobHashesMsg(8, H, 3 * 262144, 0, bytes(96)),
    wire.BlobHaveMsg(((H, 3),), 600.0),
    wire.BlobWithdrawMsg((H,)),
    wire.BlobQueryMsg((H, bytes(32))),
    wire.BlobSyncMsg(),
]


@pytest.mark.parametrize("msg", COMPUTE_SAMPLES, ids=lambda m: m.TAG)
def test_round_trip(msg):
    assert wire.decode_message(wire.encode_message(msg)) == msg


def test_messages_carry_values_and_send_their_documents():
    """One form per message: the message holds the domain value; on the wire it is the
    value's document, parsed back into the value (validated) at decode."""
    data = wire.encode_message(COMPUTE_SAMPLES[0])
    assert cbor2.loads(data)[1]["request"] == REQUEST.to_dict()
    msg = wire.decode_message(data)
    assert isinstance(msg.request, PlacementRequest) and msg.request == REQUEST
    claim = wire.decode_message(wire.encode_message(wire.ClaimMsg(H, 1, SPEC)))
    assert isinstance(claim.spec, TaskSpec) and claim.spec.task_hash == SPEC.task_hash


def raw(tag, fields):
    return cbor2.dumps([tag, fields])


@pytest.mark.parametrize(
    "tag, fields, words",
    [
        ("placement_offer", {"offer": {"score": 2.0}, "attempt": 1}, "placement_offer.offer"),
        ("claim", {"task": H, "attempt": 1, "spec": {"fuel": -1}}, "claim.spec"),
        ("task_result", {"task": H, "attempt": 1, "result": []}, "map"),
        ("claim_reply", {"task": b"short", "attempt": 1, "accepted": True}, "32 bytes"),
        ("task_heartbeat", {"task": H, "attempt": -1}, "attempt"),
        ("blob_request", {"request_id": 1, "blob": H, "offset": 0, "length": 10**9}, "range"),
    ],
)
def test_malformed_documents_are_codec_errors(tag, fields, words):
    with pytest.raises(CodecError, match=words):
        wire.decode_message(raw(tag, fields))
