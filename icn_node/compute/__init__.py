"""icn_node.compute: placement negotiation and the task lifecycle.

The rooms: :mod:`.core` (:class:`ComputeCore`, the one pure object the driver talks to) over the
pure sub-cores :mod:`.submitter` (a node's submitted tasks, from submission to exactly one final
result), :mod:`.executor` (the tasks a node offers for, accepts and runs) and :mod:`.registry`
(announced executors); :mod:`.effects` (what the cores ask the driver to do) and :mod:`.records`
(what each side persists). The trio side: :mod:`.driver` (moves bytes and time), :mod:`.runs`
(the sandboxes) and :mod:`.rpc` (local RPC handlers). See docs/ARCHITECTURE.md.
"""

from icn_node.compute.core import ComputeCore
from icn_node.compute.effects import (
    Count,
    Effect,
    Ignored,
    Observe,
    Persist,
    Publish,
    Rejected,
    Send,
    StartRun,
    StateChanged,
    StopRun,
)
from icn_node.compute.executor import ExecutorCore
from icn_node.compute.records import JobRecord, JobState, OfferSummary, TaskRecord
from icn_node.compute.registry import ExecutorRegistry
from icn_node.compute.submitter import CANCELLED_BY_USER, MAX_ATTEMPTS, NO_EXECUTOR, SubmitterCore

__all__ = [
    "CANCELLED_BY_USER",
    "MAX_ATTEMPTS",
    "NO_EXECUTOR",
    "ComputeCore",
    "Count",
    "Effect",
    "ExecutorCore",
    "ExecutorRegistry",
    "Ignored",
    "JobRecord",
    "JobState",
    "Observe",
    "OfferSummary",
    "Persist",
    "Publish",
    "Rejected",
    "Send",
    "StartRun",
    "StateChanged",
    "StopRun",
    "SubmitterCore",
    "TaskRecord",
]
