"""Outcome types shared by the task drivers (wasm and exec).

Pure data: no wasmtime, no trio. A run ends in exactly one :class:`TaskState`; the
:class:`RunResult` carries the evidence (fuel, exit code, message, capped output, files).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from icn_node import codec

DEFAULT_OUTPUT_CAP = 64 * 1024


class TaskState(enum.StrEnum):
    """How a run ended. Every run ends in exactly one of these."""

    COMPLETED = "completed"
    """The task finished on its own with exit code 0."""
    FAILED = "failed"
    """Trap, non-zero exit, a module that does not compile, or a setup problem (see message)."""
    FUEL_EXHAUSTED = "fuel_exhausted"
    """The task used up its compute budget (wasm fuel; CPU seconds for the exec driver)."""
    TIMED_OUT = "timed_out"
    """The wall-clock deadline passed before the task finished."""
    CANCELLED = "cancelled"
    """Someone cancelled the task before it finished."""


class CappedBuffer:
    """Keeps the first ``cap`` bytes written to it and counts the rest.

    Used as the sink for a task's stdout/stderr, so a chatty task costs at most ``cap`` bytes
    of memory however much it writes.
    """

    def __init__(self, cap: int) -> None:
        if cap < 0:
            raise ValueError(f"cap must be >= 0, got {cap}")
        self.cap = cap
        self.total = 0
        self._data = bytearray()

    def write(self, data: bytes | bytearray) -> None:
        room = self.cap - len(self._data)
        if room > 0:
            self._data += data[:room]
        self.total += len(data)

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def getvalue(self) -> bytes:
        return bytes(self._data)


@dataclass(frozen=True, kw_only=True)
class RunResult(codec.Document):
    """What one run of a task produced.

    ``stdout``/``stderr`` hold at most the job's caps; ``*_truncated`` says the task wrote more.
    ``outputs`` are the regular files found under the job's output directory after the run
    (sorted host paths; symlinks are neither listed nor followed). ``fuel_used`` is the fuel
    limit minus the fuel left; it is always 0 for the exec driver, which has no fuel meter.
    ``exit_code`` is None when the task did not exit (trap, fuel, deadline, cancel); for the exec
    driver a negative value is the signal that killed the process.
    """

    state: TaskState
    fuel_used: int = 0
    exit_code: int | None = None
    message: str = ""
    stdout: Annotated[bytes, codec.BASE64] = b""
    stderr: Annotated[bytes, codec.BASE64] = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    outputs: tuple[Path, ...] = ()
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", TaskState(self.state))
        object.__setattr__(self, "outputs", tuple(Path(p) for p in self.outputs))

    @property
    def ok(self) -> bool:
        return self.state is TaskState.COMPLETED
