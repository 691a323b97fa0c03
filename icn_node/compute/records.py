"""The records each side persists: the submitter's :class:`TaskRecord` and the executor's
:class:`JobRecord` (with :class:`OfferSummary` and :class:`JobState`).

They never travel between nodes (the wire carries the values of :mod:`icn_node.scheduler.tasks`);
the driver stores their ``to_dict()`` form in SQLite and serves their ``to_dict(json_safe=True)``
form over RPC. A bad field raises :class:`~icn_node.scheduler.tasks.TaskError` naming it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from icn_node.scheduler import _checks as chk
from icn_node.scheduler.resources import Reservation
from icn_node.scheduler.tasks import (
    MAX_ATTEMPT,
    TaskError,
    TaskResult,
    TaskSpec,
    TaskState,
    _attempt,
    _did,
    _enum,
    _hash_out,
    _opt_time,
    _task_errors,
    _time,
)

__all__ = ["MAX_OFFERS", "JobRecord", "JobState", "OfferSummary", "TaskRecord"]

MAX_OFFERS = 4096
MAX_REASON_LEN = 1024


class JobState(enum.StrEnum):
    """Where a job (a task this node accepted to run) is, on the executor.

    ``reserved``: accepted, capacity held, run asked for (fetching blobs or starting).
    ``running``: the sandbox runs. ``finished``: a result exists (re-sent until acknowledged).
    ``abandoned``: given back to the submitter without a result (the daemon restarted under it).
    """

    RESERVED = "reserved"
    RUNNING = "running"
    FINISHED = "finished"
    ABANDONED = "abandoned"


# -- the submitter's record ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferSummary:
    """One ranked offer as ``icnctl compute status`` shows it: the executor, the score the
    submitter recomputed with its own trust, and the executor's cost."""

    executor: str
    score: float
    cost: int

    def __post_init__(self) -> None:
        with _task_errors():
            _did("offer_summary.executor", self.executor)
            object.__setattr__(
                self, "score", chk.number("offer_summary.score", self.score, lo=0.0, hi=1.0)
            )
            chk.integer("offer_summary.cost", self.cost, lo=0, hi=2**53)

    def to_dict(self, *, json_safe: bool = False) -> dict[str, Any]:
        return {"executor": self.executor, "score": self.score, "cost": self.cost}

    @classmethod
    def from_dict(cls, d: Any) -> OfferSummary:
        with _task_errors():
            d = chk.mapping("offer_summary", d)
            f = chk.field
            return cls(
                f("offer_summary", d, "executor"),
                f("offer_summary", d, "score"),
                f("offer_summary", d, "cost"),
            )


def _spec_of(name: str, d: Mapping[str, Any]) -> TaskSpec:
    """``d["spec"]``; a ``task_hash`` key, when present, must match the spec's hash."""
    spec = TaskSpec.from_dict(chk.field(name, d, "spec"))
    if "task_hash" in d and chk.hash32(f"{name}.task_hash", d["task_hash"]) != spec.task_hash:
        raise TaskError(f"{name}.task_hash: does not match the spec")
    return spec


def _dids(name: str, value: Any) -> tuple[str, ...]:
    items = chk.sequence(name, value, max_len=MAX_OFFERS)
    out = tuple(_did(f"{name}[{i}]", v) for i, v in enumerate(items))
    if len(set(out)) != len(out):
        raise TaskError(f"{name}: duplicate DIDs")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    """The submitter's persisted view of one task. Replaced (never mutated) on every change.

    ``attempt``: the current placement round (1 at submission, +1 every time the task goes back
    to negotiation). ``executor``: the executor claimed (``claiming``) or running the task.
    ``excluded``: executors that lost the task (lease lapse, claim timeout, abandon); they are
    not asked again and their number is bounded by ``max_attempts``. ``claimed``: every executor
    a claim or grant was sent to; a final result is accepted from any of them. ``retries``:
    rounds in a row that ended without a running executor. ``offers``: the last round's ranked
    offers. ``reason``: why the task failed or was cancelled (``no_executor``,
    ``max_attempts``, ``cancelled by user``). ``cancel_requested``: a cancel was sent to the
    running executor and its confirmation is awaited.
    """

    spec: TaskSpec
    state: TaskState
    attempt: int = 1
    executor: str | None = None
    excluded: tuple[str, ...] = ()
    claimed: tuple[str, ...] = ()
    retries: int = 0
    offers: tuple[OfferSummary, ...] = ()
    result: TaskResult | None = None
    reason: str = ""
    cancel_requested: bool = False
    submitted_at: float = 0.0
    negotiation_started_at: float | None = None
    claimed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        s = object.__setattr__
        with _task_errors():
            if not isinstance(self.spec, TaskSpec):
                raise TaskError("task_record.spec: expected a TaskSpec")
            s(self, "state", _enum(TaskState, "task_record.state", self.state))
            _attempt("task_record.attempt", self.attempt)
            if self.executor is not None:
                _did("task_record.executor", self.executor)
            s(self, "excluded", _dids("task_record.excluded", self.excluded))
            s(self, "claimed", _dids("task_record.claimed", self.claimed))
            chk.integer("task_record.retries", self.retries, lo=0, hi=MAX_ATTEMPT)
            offers = tuple(chk.sequence("task_record.offers", self.offers, max_len=MAX_OFFERS))
            for o in offers:
                if not isinstance(o, OfferSummary):
                    raise TaskError("task_record.offers: expected OfferSummary items")
            s(self, "offers", offers)
            if self.result is not None and not isinstance(self.result, TaskResult):
                raise TaskError("task_record.result: expected a TaskResult or None")
            chk.text("task_record.reason", self.reason, max_len=MAX_REASON_LEN, allow_empty=True)
            chk.boolean("task_record.cancel_requested", self.cancel_requested)
            for name in ("submitted_at", "updated_at"):
                s(self, name, _time(f"task_record.{name}", getattr(self, name)))
            for name in ("negotiation_started_at", "claimed_at", "started_at", "finished_at"):
                s(self, name, _opt_time(f"task_record.{name}", getattr(self, name)))

    @property
    def task_hash(self) -> bytes:
        return self.spec.task_hash

    def evolve(self, **changes: Any) -> TaskRecord:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)

    def to_dict(self, *, json_safe: bool = False) -> dict[str, Any]:
        return {
            "task_hash": _hash_out(self.task_hash, json_safe),
            "spec": self.spec.to_dict(json_safe=json_safe),
            "state": self.state.value,
            "attempt": self.attempt,
            "executor": self.executor,
            "excluded": list(self.excluded),
            "claimed": list(self.claimed),
            "retries": self.retries,
            "offers": [o.to_dict() for o in self.offers],
            "result": None if self.result is None else self.result.to_dict(json_safe=json_safe),
            "reason": self.reason,
            "cancel_requested": self.cancel_requested,
            "submitted_at": self.submitted_at,
            "negotiation_started_at": self.negotiation_started_at,
            "claimed_at": self.claimed_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, d: Any) -> TaskRecord:
        """Parse; a ``task_hash`` key, when present, must match the spec's hash."""
        with _task_errors():
            d = chk.mapping("task_record", d)
            f = chk.field
            spec = _spec_of("task_record", d)
            r = d.get("result")
            offers = chk.sequence("task_record.offers", d.get("offers", []), max_len=MAX_OFFERS)
            return cls(
                spec=spec,
                state=f("task_record", d, "state"),
                attempt=d.get("attempt", 1),
                executor=d.get("executor"),
                excluded=tuple(
                    chk.sequence("task_record.excluded", d.get("excluded", []), max_len=MAX_OFFERS)
                ),
                claimed=tuple(
                    chk.sequence("task_record.claimed", d.get("claimed", []), max_len=MAX_OFFERS)
                ),
                retries=d.get("retries", 0),
                offers=tuple(OfferSummary.from_dict(o) for o in offers),
                result=None if r is None else TaskResult.from_dict(r),
                reason=d.get("reason", ""),
                cancel_requested=d.get("cancel_requested", False),
                submitted_at=d.get("submitted_at", 0.0),
                negotiation_started_at=d.get("negotiation_started_at"),
                claimed_at=d.get("claimed_at"),
                started_at=d.get("started_at"),
                finished_at=d.get("finished_at"),
                updated_at=d.get("updated_at", 0.0),
            )


# -- the executor's record -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """The executor's persisted view of a task it accepted. Replaced on every change.

    ``reservation`` is what the job holds (profile and pinned GPU devices), so a restarted
    daemon can rebuild its capacity ledger; its ``reservation_id`` is local to one process and
    is not reused on restore. ``result_acked``: the submitter acknowledged ``result``.
    """

    spec: TaskSpec
    attempt: int
    state: JobState
    reservation: Reservation | None = None
    result: TaskResult | None = None
    result_acked: bool = False
    accepted_at: float = 0.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        with _task_errors():
            if not isinstance(self.spec, TaskSpec):
                raise TaskError("job_record.spec: expected a TaskSpec")
            _attempt("job_record.attempt", self.attempt)
            object.__setattr__(self, "state", _enum(JobState, "job_record.state", self.state))
            if self.reservation is not None and not isinstance(self.reservation, Reservation):
                raise TaskError("job_record.reservation: expected a Reservation or None")
            if self.result is not None and not isinstance(self.result, TaskResult):
                raise TaskError("job_record.result: expected a TaskResult or None")
            if (self.state is JobState.FINISHED) != (self.result is not None):
                raise TaskError("job_record.result: present exactly when the state is finished")
            chk.boolean("job_record.result_acked", self.result_acked)
            for name in ("accepted_at", "updated_at"):
                object.__setattr__(self, name, _time(f"job_record.{name}", getattr(self, name)))

    @property
    def task_hash(self) -> bytes:
        return self.spec.task_hash

    @property
    def submitter(self) -> str:
        return self.spec.submitter

    def evolve(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)

    def to_dict(self, *, json_safe: bool = False) -> dict[str, Any]:
        return {
            "task_hash": _hash_out(self.task_hash, json_safe),
            "spec": self.spec.to_dict(json_safe=json_safe),
            "attempt": self.attempt,
            "state": self.state.value,
            "reservation": None if self.reservation is None else self.reservation.to_dict(),
            "result": None if self.result is None else self.result.to_dict(json_safe=json_safe),
            "result_acked": self.result_acked,
            "accepted_at": self.accepted_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, d: Any) -> JobRecord:
        with _task_errors():
            d = chk.mapping("job_record", d)
            f = chk.field
            spec = _spec_of("job_record", d)
            res = d.get("reservation")
            r = d.get("result")
            return cls(
                spec=spec,
                attempt=f("job_record", d, "attempt"),
                state=f("job_record", d, "state"),
                reservation=None if res is None else Reservation.from_dict(res),
                result=None if r is None else TaskResult.from_dict(r),
                result_acked=d.get("result_acked", False),
                accepted_at=d.get("accepted_at", 0.0),
                updated_at=d.get("updated_at", 0.0),
            )
