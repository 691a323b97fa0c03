"""RunResult serialisation and the capped output sink."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2

from icn_node.runner import CappedBuffer, RunResult, TaskState


def sample() -> RunResult:
    return RunResult(
        state=TaskState.FAILED,
        fuel_used=7,
        exit_code=3,
        message="exited with code 3",
        stdout=b"\x00\xffout",
        stderr=b"err",
        stdout_truncated=True,
        outputs=(Path("/o/a"), Path("/o/b")),
        wall_time_s=0.5,
    )


def test_task_states_are_the_wire_strings():
    assert [s.value for s in TaskState] == [
        "completed",
        "failed",
        "fuel_exhausted",
        "timed_out",
        "cancelled",
    ]


def test_round_trips_through_cbor():
    r = sample()
    d = cbor2.loads(cbor2.dumps(r.to_dict()))
    assert d["state"] == "failed" and d["stdout"] == b"\x00\xffout"
    assert RunResult.from_dict(d) == r


def test_round_trips_through_json_with_base64_blobs():
    r = sample()
    d = json.loads(json.dumps(r.to_dict(json_safe=True)))
    assert d["outputs"] == ["/o/a", "/o/b"]
    assert RunResult.from_dict(d) == r


def test_documents_are_pinned():
    # The CBOR form keeps the output as bytes; the JSON form has it in base64 (not hex).
    doc = {
        "state": "failed",
        "fuel_used": 7,
        "exit_code": 3,
        "message": "exited with code 3",
        "stdout": b"\x00\xffout",
        "stderr": b"err",
        "stdout_truncated": True,
        "stderr_truncated": False,
        "outputs": ["/o/a", "/o/b"],
        "wall_time_s": 0.5,
    }
    r = sample()
    assert r.to_dict() == doc
    assert r.to_dict(json_safe=True) == doc | {"stdout": "AP9vdXQ=", "stderr": "ZXJy"}
    assert RunResult.from_dict({"state": "completed"}) == RunResult(state=TaskState.COMPLETED)


def test_capped_buffer_keeps_the_head_and_counts_the_rest():
    buf = CappedBuffer(5)
    buf.write(b"abc")
    assert not buf.truncated
    buf.write(b"defg")
    buf.write(b"h")
    assert (buf.getvalue(), buf.total, buf.truncated) == (b"abcde", 8, True)
    exact = CappedBuffer(3)
    exact.write(b"abc")
    assert not exact.truncated
