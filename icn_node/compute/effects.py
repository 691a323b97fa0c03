"""What the compute cores ask their driver to do: frozen dataclasses, executed in list order.

Messages travel as the wire messages themselves (as the mesh core's ``Send`` does), so there is
one form per message and the driver only encodes and moves them:

- :class:`Send` — a direct message to one peer (``to`` is its DID, never this node: the
  :class:`~icn_node.compute.core.ComputeCore` delivers messages to itself without the driver).
- :class:`Publish` — a gossip message to every member on the compute topic.
- :class:`Persist` / :class:`StateChanged` / :class:`StartRun` / :class:`StopRun` — local work:
  write a record to SQLite (the driver must finish the write before it executes the effects
  that follow it in the list), tell watchers, start or stop a sandbox.
- :class:`Count` / :class:`Observe` — a Prometheus observation, by metric name (the table in
  docs/ARCHITECTURE.md). The driver counts nothing else itself, so every metric is counted
  exactly once.
- :class:`Ignored` — an event the core dropped (duplicate, late, unknown task), for debug logs;
  :class:`Rejected` — a message refused because its sender broke the protocol (for example it
  speaks for another node): logged and counted as dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from icn_node.compute.records import JobRecord, TaskRecord
from icn_node.scheduler.resources import Reservation
from icn_node.scheduler.tasks import TaskSpec, TaskState
from icn_node.wire import Message

__all__ = [
    "DATA_TRANSFER_NEEDED",
    "DATA_TRANSFER_SAVED",
    "EXECUTOR_PENALTIES",
    "LOCALITY_SCORE",
    "NETWORK_SCORE",
    "PLACEMENTS_DATA_LOCAL",
    "PLACEMENTS_WITH_DATA",
    "RATE_LIMITED",
    "REPLICAS",
    "FUEL_USED",
    "LOSSES",
    "MESSAGES_DROPPED",
    "OFFERS_RECEIVED",
    "OFFERS_PREEMPTED",
    "OFFERS_SENT",
    "PLACEMENT_DURATION",
    "REQUESTS_RECEIVED",
    "SCORE",
    "TASKS_FINISHED",
    "TASKS_SUBMITTED",
    "WINS",
    "Count",
    "Effect",
    "Ignored",
    "Observe",
    "Persist",
    "Publish",
    "Rejected",
    "Send",
    "StartRun",
    "StateChanged",
    "StopRun",
]

# Metric names (the driver maps each to its Prometheus family).
REQUESTS_RECEIVED = "requests_received"
"""Executor: first sight of a placement request round."""
OFFERS_SENT = "offers_sent"
"""Executor: an offer sent."""
OFFERS_RECEIVED = "offers_received"
"""Submitter: an offer accepted into the window (duplicates and late ones are not counted)."""
WINS = "wins"
"""Executor: a placement claim accepted."""
LOSSES = "losses"
"""Executor: an offer sent and lost."""
SCORE = "score"
"""Executor (observed): the score of each offer it makes."""
PLACEMENT_DURATION = "placement_duration"
"""Submitter (observed): round start to claim accepted, in seconds."""
TASKS_SUBMITTED = "tasks_submitted"
"""Submitter: a task submitted; label: its protocol."""
TASKS_FINISHED = "tasks_finished"
"""Submitter: a task reached its final state; label: the state."""
FUEL_USED = "fuel_used"
"""Submitter: fuel used by a finished task (``n`` is the fuel)."""
DATA_TRANSFER_NEEDED = "data_transfer_needed"
"""Submitter: bytes of a placed task's module and inputs its executor lacks (``n``)."""
DATA_TRANSFER_SAVED = "data_transfer_saved"
"""Submitter: bytes a locality-blind pick (16A weights) would have moved beyond this one's."""
PLACEMENTS_WITH_DATA = "placements_with_data"
"""Submitter: a task with known data placed (claim accepted)."""
PLACEMENTS_DATA_LOCAL = "placements_data_local"
"""Submitter: ... on an executor that holds all of it."""
LOCALITY_SCORE = "locality_score"
"""Executor (observed): the locality component of each offer."""
NETWORK_SCORE = "network_score"
"""Executor (observed): the network component of each offer."""
EXECUTOR_PENALTIES = "executor_penalties"
"""Submitter: an executor caught out (label: lie, overrun, verify, lost); its effective trust
here drops."""
REPLICAS = "replicas"
"""Submitter: a replica group settled (label: agreed, majority, no_agreement) or ran one more
replica (extra)."""
OFFERS_PREEMPTED = "offers_preempted"
"""Executor: a tentative reservation released for another submitter's request because its
submitter held more than its fair share (see ``ExecutorCore.on_request``)."""
RATE_LIMITED = "rate_limited"
"""A member's request or announcement over its per-origin rate (label: request, announce)."""
MESSAGES_DROPPED = "messages_dropped"
"""A message refused (see :class:`Rejected`)."""


@dataclass(frozen=True, slots=True)
class Effect:
    """Base of every effect."""


@dataclass(frozen=True, slots=True)
class Send(Effect):
    """Send ``msg`` directly to the peer ``to``."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class Publish(Effect):
    """Gossip ``msg`` to every member (this node's own cores already had it)."""

    msg: Message


@dataclass(frozen=True, slots=True)
class Persist(Effect):
    """Write ``record`` (upsert by task hash; a :class:`TaskRecord` on the submitter, a
    :class:`JobRecord` on the executor) durably before executing the next effect."""

    record: TaskRecord | JobRecord


@dataclass(frozen=True, slots=True)
class StateChanged(Effect):
    """The submitter's task moved from ``old`` (None: just submitted) to ``new``."""

    task_hash: bytes
    old: TaskState | None
    new: TaskState
    record: TaskRecord


@dataclass(frozen=True, slots=True)
class StartRun(Effect):
    """Fetch the code and input blobs and run ``spec`` inside ``reservation`` (its GPU devices
    are the ones to expose). Every StartRun is answered by exactly one of
    ``ComputeCore.run_finished`` or ``ComputeCore.run_abandoned`` (also when the run could not
    start, or was stopped)."""

    spec: TaskSpec
    attempt: int
    reservation: Reservation


@dataclass(frozen=True, slots=True)
class StopRun(Effect):
    """Stop the run of ``task_hash`` (cancel); the runner still reports a ``cancelled`` result."""

    task_hash: bytes
    attempt: int


@dataclass(frozen=True, slots=True)
class Count(Effect):
    """Add ``n`` to the counter ``metric`` (one of the names above), with ``label`` when the
    family has one."""

    metric: str
    label: str = ""
    n: float = 1


@dataclass(frozen=True, slots=True)
class Observe(Effect):
    """Observe ``value`` in the histogram ``metric``."""

    metric: str
    value: float


@dataclass(frozen=True, slots=True)
class Ignored(Effect):
    """An event the core dropped, and why (for debug logs only)."""

    reason: str
    task_hash: bytes | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected(Effect):
    """A message refused because ``sender`` broke the protocol; ``tag`` is its type."""

    tag: str
    sender: str
    reason: str
