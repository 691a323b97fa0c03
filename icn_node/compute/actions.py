"""What the protocol cores ask their driver to do: frozen dataclasses, executed in list order.

Four families, by base class:

- :class:`Send` — a direct message to one peer; ``to`` is the destination DID.
- :class:`Publish` — a gossip message to the whole mesh.
- :class:`Persist` / :class:`StateChanged` / :class:`StartRun` / :class:`StopRun` — local work:
  write a record to SQLite (the driver must finish the write before it executes the actions
  that follow it in the list), tell watchers, start or stop a sandbox.
- :class:`Metric` — a Prometheus observation (see the table in docs/ARCHITECTURE.md). The driver
  counts nothing else itself, so every metric is counted exactly once.

:class:`Ignored` reports an event the core dropped (duplicate, late, wrong sender, unknown
task); the driver may log it at debug level and count it. Nothing else is expected of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from icn_node.compute.records import JobRecord, TaskRecord
from icn_node.scheduler.policy import PlacementOffer, PlacementRequest
from icn_node.scheduler.resources import Reservation
from icn_node.scheduler.tasks import TaskResult, TaskSpec, TaskState

__all__ = [
    "Action",
    "CountLoss",
    "CountOfferReceived",
    "CountRequestReceived",
    "CountTaskFinished",
    "CountTaskSubmitted",
    "CountWin",
    "Ignored",
    "Metric",
    "ObservePlacementDuration",
    "ObserveScore",
    "Persist",
    "Publish",
    "PublishCancel",
    "PublishRequest",
    "PublishTaskClaimed",
    "PublishTaskSubmitted",
    "Send",
    "SendAbandon",
    "SendCancel",
    "SendClaim",
    "SendClaimReply",
    "SendClaimRequest",
    "SendDecline",
    "SendGrant",
    "SendHeartbeat",
    "SendOffer",
    "SendRefuse",
    "SendResult",
    "SendResultAck",
    "SendTask",
    "StartRun",
    "StateChanged",
    "StopRun",
]


@dataclass(frozen=True, slots=True)
class Action:
    """Base of every action."""


# -- local -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist(Action):
    """Write ``record`` (upsert by task hash; a :class:`TaskRecord` on the submitter, a
    :class:`JobRecord` on the executor) durably before executing the next action."""

    record: TaskRecord | JobRecord


@dataclass(frozen=True, slots=True)
class StateChanged(Action):
    """The submitter's task moved from ``old`` (None: just submitted) to ``new``."""

    task_hash: bytes
    old: TaskState | None
    new: TaskState
    record: TaskRecord


@dataclass(frozen=True, slots=True)
class StartRun(Action):
    """Fetch the code and input blobs and run ``spec`` inside ``reservation`` (its GPU devices
    are the ones to expose). Every StartRun must be answered by exactly one
    ``ExecutorCore.on_run_finished`` (also when the run could not start, or was stopped)."""

    spec: TaskSpec
    attempt: int
    reservation: Reservation


@dataclass(frozen=True, slots=True)
class StopRun(Action):
    """Stop the run of ``task_hash`` (cancel); the runner still reports a ``cancelled`` result."""

    task_hash: bytes
    attempt: int


@dataclass(frozen=True, slots=True)
class Ignored(Action):
    """An event the core dropped, and why (for debug logs and counters only)."""

    reason: str
    task_hash: bytes | None = None
    sender: str | None = None


# -- gossip ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish(Action):
    """Base of the gossip actions."""


@dataclass(frozen=True, slots=True)
class PublishRequest(Publish):
    """``PlacementRequest`` for round ``attempt``. ``deadline`` is when the submitter closes
    the offer window (on its own clock); ``window_s`` is the window's length, which executors
    use for their tentative reservations. ``excluded`` executors must not take part.
    ``targets``: the executors expected to answer, to be asked directly; None: nobody is
    expected, so gossip it to every member."""

    request: PlacementRequest
    attempt: int
    deadline: float
    window_s: float
    excluded: tuple[str, ...] = ()
    targets: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class PublishTaskSubmitted(Publish):
    """Legacy ``TaskSubmitted`` for round ``attempt`` (fields as :class:`PublishRequest`)."""

    spec: TaskSpec
    attempt: int
    deadline: float
    window_s: float
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PublishTaskClaimed(Publish):
    """``TaskClaimed``: ``winner`` was claimed for round ``attempt``; the others release.
    ``targets``: the other executors the round asked directly (possibly none); None: the round
    was gossiped, so gossip this too."""

    task_hash: bytes
    winner: str
    attempt: int
    targets: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class PublishCancel(Publish):
    """The task is cancelled while negotiating: every executor drops what it holds for it."""

    task_hash: bytes
    attempt: int


# -- direct messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send(Action):
    """Base of the direct messages; ``to`` is the destination DID."""

    to: str


@dataclass(frozen=True, slots=True)
class SendTask(Send):
    """Base of the direct messages about one round of one task (all but :class:`SendOffer`,
    whose offer names the task)."""

    task_hash: bytes
    attempt: int


@dataclass(frozen=True, slots=True)
class SendOffer(Send):
    """Executor -> submitter: ``PlacementOffer`` for round ``attempt``."""

    offer: PlacementOffer
    attempt: int


@dataclass(frozen=True, slots=True)
class SendDecline(SendTask):
    """Executor -> submitter: no offer for round ``attempt``. ``reason`` is a
    :class:`~icn_node.scheduler.policy.DeclineReason` value or ``excluded``/``busy``."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SendClaim(SendTask):
    """Submitter -> executor: you won round ``attempt``; run ``spec``."""

    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class SendClaimReply(SendTask):
    """Executor -> submitter: the claim (or legacy grant) is accepted, or rejected with
    ``reason`` (``no_capacity``, ``low_trust``, ``busy``)."""

    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SendClaimRequest(SendTask):
    """Executor -> submitter (legacy): I have room, may I run it?"""


@dataclass(frozen=True, slots=True)
class SendGrant(SendTask):
    """Submitter -> executor (legacy): you asked first; run ``spec``."""

    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class SendRefuse(SendTask):
    """Submitter -> executor (legacy): someone else has it; release."""


@dataclass(frozen=True, slots=True)
class SendHeartbeat(SendTask):
    """Executor -> submitter: still working on round ``attempt`` (renews the lease)."""


@dataclass(frozen=True, slots=True)
class SendResult(SendTask):
    """Executor -> submitter: the run ended; re-sent until acknowledged."""

    result: TaskResult


@dataclass(frozen=True, slots=True)
class SendResultAck(SendTask):
    """Submitter -> executor: result received (sent for duplicates too)."""


@dataclass(frozen=True, slots=True)
class SendCancel(SendTask):
    """Submitter -> executor: stop the task (and report a result if it was running)."""


@dataclass(frozen=True, slots=True)
class SendAbandon(SendTask):
    """Executor -> submitter: I can no longer run round ``attempt`` (for example the daemon
    restarted under it); place it elsewhere now instead of waiting for the lease to lapse."""

    reason: str


# -- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric(Action):
    """Base of the metric actions."""


@dataclass(frozen=True, slots=True)
class CountRequestReceived(Metric):
    """``icn_compute_placement_requests_received_total`` += 1 (executor, first sight of a
    request round)."""

    task_hash: bytes


@dataclass(frozen=True, slots=True)
class CountOfferReceived(Metric):
    """``icn_compute_placement_offers_received_total`` += 1 (submitter, offer accepted into the
    window; duplicates and late offers are not counted)."""

    task_hash: bytes
    executor: str


@dataclass(frozen=True, slots=True)
class CountWin(Metric):
    """``icn_compute_placement_wins_total`` += 1 (executor accepted a placement claim)."""

    task_hash: bytes


@dataclass(frozen=True, slots=True)
class CountLoss(Metric):
    """``icn_compute_placement_losses_total`` += 1 (executor's sent offer lost)."""

    task_hash: bytes


@dataclass(frozen=True, slots=True)
class ObserveScore(Metric):
    """``icn_compute_placement_score`` histogram (executor, each offer it makes)."""

    score: float


@dataclass(frozen=True, slots=True)
class ObservePlacementDuration(Metric):
    """``icn_compute_placement_duration_seconds`` (submitter, round start -> claim accepted)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class CountTaskSubmitted(Metric):
    """``icn_compute_tasks_submitted_total{protocol}`` += 1."""

    protocol: str


@dataclass(frozen=True, slots=True)
class CountTaskFinished(Metric):
    """``icn_compute_tasks_finished_total{state}`` += 1 and ``icn_compute_fuel_used_total`` +=
    ``fuel_used`` (submitter, once per task, when its final state is recorded)."""

    state: TaskState
    fuel_used: int
