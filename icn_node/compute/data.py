"""A task's data, sans-IO: which bytes it reads, where they are, and what a placement moves.

Compute goes to data. A task's module and inputs are its *data*; a placement request carries
them with their sizes (:func:`task_data`) so executors score locality by bytes without any
hint. When a placement is made, :func:`placement_effects` counts what it moves (the bytes its
executor lacks) and what it saved against the locality-blind choice: the offer the seed's 16A
weights (no locality component) would have ranked first.
"""

from __future__ import annotations

from icn_node.compute.effects import (
    DATA_TRANSFER_NEEDED,
    DATA_TRANSFER_SAVED,
    PLACEMENTS_DATA_LOCAL,
    PLACEMENTS_WITH_DATA,
    Count,
    Effect,
)
from icn_node.scheduler.locality import BlobRegistry
from icn_node.scheduler.tasks import TaskSpec

__all__ = [
    "BLIND_WEIGHTS",
    "Data",
    "bytes_needed",
    "placement_effects",
    "run_limit_s",
    "task_data",
]

MIN_FUEL_PER_S = 100_000_000
"""The slowest executor the run deadline allows for: about a twentieth of this project's
machine (1.7 G fuel/s measured with ``make bench-sandbox``)."""
MIN_BYTES_PER_S = 10_000_000
"""The slowest fetch of a task's data the run deadline allows for."""
RUN_GRACE_S = 10.0
RUN_SLACK = 1.5

Data = tuple[tuple[bytes, int], ...]
"""(blob hash, size in bytes) pairs."""

BLIND_WEIGHTS = "phase16a"
"""The locality-blind choice that ``data_transfer_saved`` is measured against."""


def run_limit_s(spec: TaskSpec, data_bytes: int = 0) -> float | None:
    """How long a run may take before its executor counts as overrunning: the task's own limit
    (``timeout_s``, set by ``--duration``) or its expected duration, else its fuel at the
    slowest executor allowed — with slack, a grace, and time to fetch its data. None: no limit
    can be derived (an exec task without a timeout)."""
    base: float | None = spec.timeout_s
    if base is None and spec.profile is not None:
        base = spec.profile.duration_estimate
    if base is None and spec.runtime == "wasm":
        base = spec.fuel / MIN_FUEL_PER_S
    if base is None:
        return None
    return base * RUN_SLACK + RUN_GRACE_S + data_bytes / MIN_BYTES_PER_S


def task_data(spec: TaskSpec, registry: BlobRegistry) -> Data:
    """The task's module and inputs with the sizes ``registry`` knows (unknown ones are left
    out: executors then weigh what they know)."""
    hashes = [spec.code_blob] if spec.code_blob is not None else []
    hashes += [h for _, h in spec.input_blobs]
    out: dict[bytes, int] = {}
    for h in hashes:
        e = registry.lookup(h)
        if e is not None:
            out[h] = e[0]
    return tuple(out.items())


def bytes_needed(data: Data, executor: str, registry: BlobRegistry) -> int:
    """Bytes of ``data`` that ``executor`` does not hold, as far as ``registry`` knows."""
    lookup = registry.lookup
    need = 0
    for h, size in data:
        e = lookup(h)
        if e is None or executor not in e[1]:
            need += size
    return need


def placement_effects(
    data: Data, executor: str, blind_need: int | None, registry: BlobRegistry
) -> list[Effect]:
    """The counts for a task placed on ``executor``: placements with data, data-local ones,
    bytes moved, and bytes saved against a blind pick that would have moved ``blind_need``."""
    need = bytes_needed(data, executor, registry)
    effects: list[Effect] = [Count(PLACEMENTS_WITH_DATA)]
    if need == 0:
        effects.append(Count(PLACEMENTS_DATA_LOCAL))
    else:
        effects.append(Count(DATA_TRANSFER_NEEDED, n=need))
    if blind_need is not None and blind_need > need:
        effects.append(Count(DATA_TRANSFER_SAVED, n=blind_need - need))
    return effects
