"""The records each side persists: the submitter's :class:`TaskRecord` and the executor's
:class:`JobRecord` (with :class:`OfferSummary` and :class:`JobState`).

They never travel between nodes (the wire carries the values of :mod:`icn_node.scheduler.tasks`);
the driver stores their ``to_dict()`` document (derived by :mod:`icn_node.codec`) in SQLite.
A bad field raises :class:`~icn_node.scheduler.tasks.TaskError` naming it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Annotated, Any

from icn_node.codec import OMIT_DEFAULT
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.policy import ScoreComponents
from icn_node.scheduler.resources import Reservation
from icn_node.scheduler.tasks import (
    MAX_ATTEMPT,
    TaskDocument,
    TaskError,
    TaskResult,
    TaskSpec,
    TaskState,
    _attempt,
    _did,
    _enum,
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
class OfferSummary(TaskDocument):
    """One ranked offer as ``icnctl compute status`` shows it: the executor, the score the
    submitter recomputed with its own trust, and the executor's cost; ``components``, the
    score's inputs as the executor sent them, and ``trust``, the submitter's trust it ranked
    with in place of the executor's (None in records written before they were kept)."""

    executor: str
    score: float
    cost: int
    components: Annotated[ScoreComponents | None, OMIT_DEFAULT] = None
    trust: Annotated[float | None, OMIT_DEFAULT] = None

    def __post_init__(self) -> None:
        with _task_errors():
            _did("offer_summary.executor", self.executor)
            object.__setattr__(
                self, "score", chk.number("offer_summary.score", self.score, lo=0.0, hi=1.0)
            )
            chk.integer("offer_summary.cost", self.cost, lo=0, hi=2**53)
            if self.components is not None and not isinstance(self.components, ScoreComponents):
                raise TaskError("offer_summary.components: expected ScoreComponents or None")
            if self.trust is not None:
                trust = chk.number("offer_summary.trust", self.trust, lo=0.0, hi=1.0)
                object.__setattr__(self, "trust", trust)


def _dids(name: str, value: Any) -> tuple[str, ...]:
    items = chk.sequence(name, value, max_len=MAX_OFFERS)
    out = tuple(_did(f"{name}[{i}]", v) for i, v in enumerate(items))
    if len(set(out)) != len(out):
        raise TaskError(f"{name}: duplicate DIDs")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord(TaskDocument):
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
    declines: Annotated[tuple[tuple[str, str], ...], OMIT_DEFAULT] = ()
    """The last window's declines: (executor, why), the executor's reason and detail as it
    sent them (or why its offer was refused)."""
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
            declines = chk.sequence("task_record.declines", self.declines, max_len=MAX_OFFERS)
            for d in declines:
                if not (isinstance(d, tuple) and len(d) == 2):
                    raise TaskError("task_record.declines: expected (executor, why) pairs")
                _did("task_record.declines executor", d[0])
                chk.text("task_record.declines why", d[1], max_len=MAX_REASON_LEN)
            s(self, "declines", tuple(declines))
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


# -- the executor's record -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord(TaskDocument):
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
