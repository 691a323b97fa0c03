"""icn_node.compute: the pure protocol cores of placement negotiation and task lifecycle.

:class:`SubmitterCore` (a node's submitted tasks, from submission to exactly one final result)
and :class:`ExecutorCore` (the tasks a node offers for, accepts and runs) are sans-IO state
machines: events in as method calls with ``now``, :mod:`.actions` out, executed in order by the
trio driver. :class:`ExecutorRegistry` tracks announced executors. :mod:`.tasks` holds the value
types the driver persists and sends. Nothing here reads a clock, does I/O or imports trio. See
docs/ARCHITECTURE.md for the state tables.
"""

from icn_node.compute.actions import (
    Action,
    CountLoss,
    CountOfferReceived,
    CountRequestReceived,
    CountTaskFinished,
    CountTaskSubmitted,
    CountWin,
    Ignored,
    Metric,
    ObservePlacementDuration,
    ObserveScore,
    Persist,
    Publish,
    PublishCancel,
    PublishRequest,
    PublishTaskClaimed,
    PublishTaskSubmitted,
    Send,
    SendAbandon,
    SendCancel,
    SendClaim,
    SendClaimReply,
    SendClaimRequest,
    SendDecline,
    SendGrant,
    SendHeartbeat,
    SendOffer,
    SendRefuse,
    SendResult,
    SendResultAck,
    SendTask,
    StartRun,
    StateChanged,
    StopRun,
)
from icn_node.compute.executor import ExecutorCore
from icn_node.compute.records import JobRecord, JobState, OfferSummary, TaskRecord
from icn_node.compute.registry import ExecutorRegistry
from icn_node.compute.submitter import CANCELLED_BY_USER, MAX_ATTEMPTS, NO_EXECUTOR, SubmitterCore
from icn_node.scheduler.executors import ExecutorInfo
from icn_node.scheduler.tasks import (
    FINAL_STATES,
    MAX_OUTPUT_BYTES,
    TaskError,
    TaskResult,
    TaskSpec,
    TaskState,
)

__all__ = [
    "CANCELLED_BY_USER",
    "FINAL_STATES",
    "MAX_ATTEMPTS",
    "MAX_OUTPUT_BYTES",
    "NO_EXECUTOR",
    "Action",
    "CountLoss",
    "CountOfferReceived",
    "CountRequestReceived",
    "CountTaskFinished",
    "CountTaskSubmitted",
    "CountWin",
    "ExecutorCore",
    "ExecutorInfo",
    "ExecutorRegistry",
    "Ignored",
    "JobRecord",
    "JobState",
    "Metric",
    "ObservePlacementDuration",
    "ObserveScore",
    "OfferSummary",
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
    "SubmitterCore",
    "TaskError",
    "TaskRecord",
    "TaskResult",
    "TaskSpec",
    "TaskState",
]
