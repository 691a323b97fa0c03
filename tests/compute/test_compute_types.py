"""Task value types and the executor registry: validation, round-trips, hashing, expiry."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from harness import SUB, capacity, did, h, result, spec

from icn_node.compute import ExecutorRegistry, JobRecord, JobState, OfferSummary, TaskRecord
from icn_node.scheduler import (
    GpuDevice,
    NodeCapacity,
    NodeMetrics,
    PreferLowLatency,
    Reservation,
    ResourceProfile,
)
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.policy import ScoreComponents
from icn_node.scheduler.tasks import TaskError, TaskResult, TaskSpec, TaskState

FULL = spec(
    "full",
    args=("--n", "10"),
    input_blobs=(("data.csv", h("data")),),
    hints=(PreferLowLatency(20.0),),
    max_cost=150,
    timeout_s=30.0,
    created_at=12.5,
)


def roundtrip(obj):
    cls = type(obj)
    assert cls.from_dict(obj.to_dict()) == obj
    assert cls.from_dict(cbor2.loads(cbor2.dumps(obj.to_dict()))) == obj
    import json

    assert cls.from_dict(json.loads(json.dumps(obj.to_dict(json_safe=True)))) == obj


def test_states():
    assert {s.value for s in TaskState if s.is_final} == {
        "completed",
        "failed",
        "fuel_exhausted",
        "timed_out",
        "cancelled",
    }
    assert not TaskState.RUNNING.is_final
    from icn_node.runner.result import TaskState as Outcome

    assert {o.value for o in Outcome} <= {s.value for s in TaskState}


def test_spec_roundtrip_and_hash():
    roundtrip(FULL)
    roundtrip(spec("legacy", profile=None))
    assert FULL.protocol == "placement" and spec(profile=None).protocol == "legacy"
    # The hash is the canonical CBOR of to_dict, stable across a round trip...
    again = TaskSpec.from_dict(FULL.to_dict(json_safe=True))
    assert again.task_hash == FULL.task_hash
    assert (
        FULL.task_hash
        == __import__("hashlib").sha256(cbor2.dumps(FULL.to_dict(), canonical=True)).digest()
    )
    # ...and differs when anything differs, the nonce included.
    assert spec("a").task_hash != spec("b").task_hash
    assert spec("a", fuel=1).task_hash != spec("a", fuel=2).task_hash


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code_blob": b"short"}, "task_spec.code_blob"),
        ({"fuel": 0}, "task_spec.fuel"),
        ({"nonce": b"x"}, "task_spec.nonce"),
        ({"args": ("a", 3)}, "task_spec.args[1]"),
        ({"input_blobs": (("../etc", h("x")),)}, "task_spec.input_blobs[0].name"),
        ({"input_blobs": (("a/b", h("x")),)}, "task_spec.input_blobs[0].name"),
        ({"input_blobs": (("a", h("x")), ("a", h("y")))}, "task_spec.input_blobs[1].name"),
        ({"profile": "big"}, "task_spec.profile"),
        ({"timeout_s": 0}, "task_spec.timeout_s"),
        ({"max_cost": -1}, "task_spec.max_cost"),
        ({"submitter": ""}, "task_spec.submitter"),
        ({"hints": ("near",)}, "task_spec.hints[0]"),
    ],
)
def test_spec_validation_names_the_field(changes, field):
    kw = dict(
        code_blob=h("c"), submitter=SUB, fuel=10, nonce=b"n" * 16, profile=ResourceProfile.minimal()
    )
    kw.update(changes)
    with pytest.raises(TaskError, match=field.replace("[", r"\[").replace("]", r"\]")):
        TaskSpec(**kw)


def test_spec_from_dict_errors_are_task_errors():
    d = FULL.to_dict()
    d["profile"]["cpu_cores"] = -1
    with pytest.raises(TaskError, match="resource_profile.cpu_cores"):
        TaskSpec.from_dict(d)
    with pytest.raises(TaskError, match="task_spec.nonce: missing"):
        TaskSpec.from_dict({k: v for k, v in FULL.to_dict().items() if k != "nonce"})
    with pytest.raises(TaskError, match="locality hints need"):
        spec("x", profile=None, hints=(PreferLowLatency(5.0),))


def test_result_roundtrip_and_bounds():
    r = TaskResult(
        state=TaskState.FUEL_EXHAUSTED,
        executor=did("A"),
        fuel_used=10,
        message="out of fuel",
        stdout=b"\x00\xff" * 10,
        stderr=b"e",
        output_blobs=(("out/a.txt", h("a")),),
        started_at=1,
        finished_at=2,
        attempt=3,
        stdout_truncated=True,
    )
    roundtrip(r)
    with pytest.raises(TaskError, match="task_result.state"):
        result(did("A"), state=TaskState.RUNNING)
    with pytest.raises(TaskError, match="task_result.stdout"):
        TaskResult(state="completed", executor="x", stdout=b"x" * (64 * 1024 + 1))
    with pytest.raises(TaskError, match="finished_at"):
        TaskResult(state="completed", executor="x", started_at=2, finished_at=1)
    with pytest.raises(TaskError, match="task_result.output_blobs"):
        TaskResult(state="completed", executor="x", output_blobs=(("/abs", h("a")),))
    assert TaskResult(state="completed", executor="x").state is TaskState.COMPLETED


def test_task_record_roundtrip():
    rec = TaskRecord(
        spec=FULL,
        state=TaskState.COMPLETED,
        attempt=2,
        executor=did("B"),
        excluded=(did("A"),),
        claimed=(did("A"), did("B")),
        retries=1,
        offers=(OfferSummary(did("B"), 0.7, 100),),
        declines=((did("A"), "no_capacity: needs 2 cores"),),
        result=result(did("B"), 2),
        reason="",
        submitted_at=1.0,
        negotiation_started_at=2.0,
        claimed_at=3.0,
        started_at=3.5,
        finished_at=9.0,
        updated_at=9.0,
    )
    roundtrip(rec)
    assert rec.task_hash == FULL.task_hash
    # The hash is the SQLite row's key, derived from the spec: the document holds the spec only.
    assert set(rec.to_dict()) == {f.name for f in dataclasses.fields(TaskRecord)}
    with pytest.raises(TaskError, match="task_record.spec.fuel"):
        TaskRecord.from_dict({**rec.to_dict(), "spec": {**FULL.to_dict(), "fuel": "many"}})
    with pytest.raises(TaskError, match="task_record.state"):
        TaskRecord(spec=FULL, state="lost")
    with pytest.raises(TaskError, match="task_record.excluded"):
        TaskRecord(spec=FULL, state="pending", excluded=("a", "a"))


def test_offer_summary_keeps_score_components_and_reads_records_without_them():
    parts = ScoreComponents(0.9, 0.5, 1.0, 0.0, 0.7, 0.01)
    full = OfferSummary(did("B"), 0.7, 100, parts, 0.8)
    roundtrip(full)
    assert full.to_dict(json_safe=True)["components"]["network"] == 0.7
    old = {"executor": did("B"), "score": 0.7, "cost": 100}  # a record from before them
    assert OfferSummary.from_dict(old) == OfferSummary(did("B"), 0.7, 100)
    assert OfferSummary(did("B"), 0.7, 100).to_dict() == old
    with pytest.raises(TaskError, match="offer_summary.trust"):
        OfferSummary(did("B"), 0.7, 100, parts, 1.5)
    with pytest.raises(TaskError, match="offer_summary.components"):
        OfferSummary.from_dict({**old, "components": {"trust": "high"}})


def test_job_record_roundtrip_and_invariant():
    res = Reservation(4, ResourceProfile.minimal(), ())
    roundtrip(JobRecord(spec=FULL, attempt=1, state=JobState.RESERVED, reservation=res))
    roundtrip(
        JobRecord(
            spec=FULL,
            attempt=1,
            state=JobState.FINISHED,
            result=result(did("A")),
            result_acked=True,
        )
    )
    with pytest.raises(TaskError, match="job_record.result"):
        JobRecord(spec=FULL, attempt=1, state=JobState.FINISHED)
    with pytest.raises(TaskError, match="job_record.result"):
        JobRecord(spec=FULL, attempt=1, state=JobState.RUNNING, result=result(did("A")))
    job = JobRecord(spec=FULL, attempt=1, state=JobState.RUNNING)
    assert job.submitter == SUB and job.task_hash == FULL.task_hash


# -- registry --------------------------------------------------------------------------------


def info(name: str, at: float = 0.0, cap: NodeCapacity | None = None, **kw) -> ExecutorInfo:
    return ExecutorInfo(did=did(name), capacity=cap or capacity(), announced_at=at, **kw)


def test_registry_newer_announcement_replaces_older():
    r = ExecutorRegistry(10.0)
    assert r.announce(info("A", at=5.0, queue_depth=1), 0.0)
    assert not r.announce(info("A", at=4.0, queue_depth=2), 1.0)
    assert not r.announce(info("A", at=5.0, queue_depth=3), 1.0)
    assert r.get(did("A")).queue_depth == 1
    assert r.announce(info("A", at=6.0, queue_depth=4), 2.0)
    assert r.get(did("A")).queue_depth == 4 and len(r) == 1 and did("A") in r


def test_registry_expires_after_three_missed_intervals_of_local_time():
    r = ExecutorRegistry(10.0)
    r.announce(info("A", at=1e9), 0.0)  # the executor's clock is not ours
    r.announce(info("B"), 15.0)
    assert [i.did for i in r.live(30.0)] == [did("A"), did("B")]
    assert r.next_expiry() == 30.0
    assert [i.did for i in r.live(30.1)] == [did("B")]
    assert r.expire(30.1) == [did("A")]
    assert r.get(did("A")) is None
    assert r.expire(45.1) == [did("B")] and r.next_expiry() is None


def test_registry_candidates_could_fit_on_totals():
    r = ExecutorRegistry(10.0)
    busy = capacity()
    busy.reserve(ResourceProfile.compute_heavy(7.0, 1024))  # busy now, could fit later
    gpu = GpuDevice("0", "RTX", 11.0, "sm_75", available=False)
    r.announce(info("Busy", cap=busy), 0.0)
    r.announce(info("Small", cap=capacity(cores=1)), 0.0)
    r.announce(info("Gpu", cap=NodeCapacity.from_totals(8, 16384, 1000, 100.0, [gpu])), 0.0)
    p = ResourceProfile.compute_heavy(2.0, 4096)
    assert r.candidates(p, 1.0) == {did("Busy"), did("Gpu")}
    assert r.candidates(p, 1.0, exclude=[did("Busy")]) == {did("Gpu")}
    assert r.candidates(ResourceProfile.gpu(8.0, "sm_70"), 1.0) == {did("Gpu")}
    assert r.candidates(None, 1.0) == {did("Busy"), did("Small"), did("Gpu")}
    assert r.candidates(None, 100.0) == frozenset()


def test_executor_info_roundtrip():
    i = info(
        "A", at=3.0, queue_depth=2, region="eu", metrics=NodeMetrics(did("A"), 3.0, 0.25, 100, 1000)
    )
    assert ExecutorInfo.from_dict(i.to_dict()) == i
    assert ExecutorInfo.from_dict(cbor2.loads(cbor2.dumps(i.to_dict()))) == i
    with pytest.raises(TaskError, match="executor_info.queue_depth"):
        info("A", queue_depth=-1)
    with pytest.raises(TaskError, match="executor_info.capacity"):
        ExecutorInfo(did="x", capacity={})


def test_registry_interval_must_be_positive():
    with pytest.raises(TaskError, match="compute.announce_interval_s"):
        ExecutorRegistry(0)


def test_exec_specs_name_an_absolute_command_and_carry_no_module():
    exe = TaskSpec(
        code_blob=None,
        runtime="exec",
        submitter=SUB,
        fuel=1,
        nonce=b"n" * 16,
        args=("/bin/echo", "hi"),
    )
    assert TaskSpec.from_dict(exe.to_dict()) == exe
    assert TaskSpec.from_dict(exe.to_dict(json_safe=True)).task_hash == exe.task_hash
    with pytest.raises(TaskError, match="absolute command path"):
        TaskSpec(
            code_blob=None, runtime="exec", submitter=SUB, fuel=1, nonce=b"n" * 16, args=("echo",)
        )
    with pytest.raises(TaskError, match="no module"):
        TaskSpec(
            code_blob=b"\0" * 32,
            runtime="exec",
            submitter=SUB,
            fuel=1,
            nonce=b"n" * 16,
            args=("/bin/echo",),
        )
    with pytest.raises(TaskError, match="runtime"):
        TaskSpec(code_blob=b"\0" * 32, runtime="docker", submitter=SUB, fuel=1, nonce=b"n" * 16)
    # a sandbox task's hash does not depend on the new field (runtime only sent when not wasm)
    wasm = TaskSpec(code_blob=b"\0" * 32, submitter=SUB, fuel=1, nonce=b"n" * 16)
    assert "runtime" not in wasm.to_dict()


def test_the_registry_expects_only_executors_that_offer_the_runtime():
    reg = ExecutorRegistry(10.0)
    reg.announce(ExecutorInfo(did=did("W"), capacity=capacity()), 0.0)
    reg.announce(ExecutorInfo(did=did("X"), capacity=capacity(), runtimes=("wasm", "exec")), 0.0)
    assert reg.candidates(None, 1.0) == {did("W"), did("X")}
    assert reg.candidates(None, 1.0, runtime="exec") == {did("X")}
    info = ExecutorInfo.from_dict(reg.get(did("X")).to_dict())
    assert info.runtimes == ("wasm", "exec")
