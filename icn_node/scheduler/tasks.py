"""Task value types that travel between nodes: what a submitter asks for, what an executor reports.

Every type is a frozen dataclass that validates itself on construction; its documents are
derived from its annotations by :mod:`icn_node.codec` (``to_dict`` / ``from_dict``).
``to_dict()`` keeps hashes and payloads as ``bytes`` (the CBOR form the driver stores in SQLite
and sends on the wire); ``to_dict(json_safe=True)`` turns hashes into hex and stdout/stderr into
base64 (for RPC and ``icnctl --json``). ``from_dict`` accepts either form. A bad value raises
:class:`TaskError` and a document of the wrong shape :class:`~icn_node.errors.CodecError`, each
message starting with the field's dotted name.

:attr:`TaskSpec.task_hash` is the SHA-256 of ``cbor2.dumps(spec.to_dict(), canonical=True)``:
two nodes that hold the same spec agree on its hash, and the driver-supplied ``nonce`` makes two
identical submissions two tasks.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Self

import cbor2

from icn_node.codec import BASE64, OMIT_DEFAULT, Document, from_doc, to_doc
from icn_node.errors import CodecError, IcnError, ResourceError
from icn_node.scheduler import _checks as chk
from icn_node.scheduler.locality import MAX_DID_LEN, LocalityHint
from icn_node.scheduler.policy import RUNTIMES
from icn_node.scheduler.resources import ResourceProfile

__all__ = [
    "FINAL_STATES",
    "MAX_ARGS",
    "MAX_BLOBS",
    "MAX_OUTPUT_BYTES",
    "TaskError",
    "TaskResult",
    "TaskSpec",
    "TaskState",
]

MAX_OUTPUT_BYTES = 64 * 1024
"""Bound on a result's stdout and on its stderr (the runner's default cap)."""
MAX_ARGS = 1024
MAX_ARG_LEN = 4096
MAX_BLOBS = 1024
MAX_NAME_LEN = 1024
MAX_MESSAGE_LEN = 4096
MAX_FUEL = 2**63 - 1
MAX_ATTEMPT = 1_000_000
MAX_HINTS = 64
NONCE_LEN = 16
MAX_REPLICAS = 7


class TaskError(IcnError):
    """A task spec, result or record is invalid. The message names the field."""


@contextmanager
def _task_errors() -> Iterator[None]:
    """Re-raise the scheduler's field errors (``ResourceError``) and document shape errors
    (``CodecError``) as :class:`TaskError`, keeping the message that names the field."""
    try:
        yield
    except TaskError:
        raise
    except (ResourceError, CodecError) as e:
        raise TaskError(str(e)) from e


class TaskDocument(Document):
    """:class:`~icn_node.codec.Document` whose ``from_dict`` raises :class:`TaskError` for
    any bad field, nested ones included (a task's profile, hints, result)."""

    __slots__ = ()

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        with _task_errors():
            value: Self = from_doc(cls, d)
        return value


class TaskState(enum.StrEnum):
    """Where a task is, from the submitter's point of view.

    The last five are final. The last four are also the runner's outcome names, so
    ``TaskState(run_result.state.value)`` converts a runner outcome.
    """

    PENDING = "pending"
    NEGOTIATING = "negotiating"
    CLAIMING = "claiming"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    FUEL_EXHAUSTED = "fuel_exhausted"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        TaskState.COMPLETED,
        TaskState.FAILED,
        TaskState.FUEL_EXHAUSTED,
        TaskState.TIMED_OUT,
        TaskState.CANCELLED,
    }
)


# -- field helpers ---------------------------------------------------------------------------


def _enum(cls: type[enum.Enum], name: str, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        raise TaskError(f"{name}: unknown value {value!r}") from None


def _time(name: str, value: Any) -> float:
    return chk.number(name, value, lo=0.0, hi=math.inf)


def _opt_time(name: str, value: Any) -> float | None:
    return None if value is None else _time(name, value)


def _did(name: str, value: Any) -> str:
    return chk.text(name, value, max_len=MAX_DID_LEN)


def _payload(name: str, value: Any, *, max_len: int) -> bytes:
    """Bytes (CBOR form) or base64 text (JSON form) of at most ``max_len`` bytes."""
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except ValueError:
            raise TaskError(f"{name}: not valid base64") from None
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise TaskError(f"{name}: expected bytes, got {type(value).__name__}")
    if len(value) > max_len:
        raise TaskError(f"{name}: {len(value)} bytes, at most {max_len} allowed")
    return value


def _nonce(name: str, value: Any) -> bytes:
    with _task_errors():
        return chk.fixed_bytes(name, value, NONCE_LEN)


def _file_name(name: str, value: Any, *, allow_dirs: bool) -> str:
    v = chk.text(name, value, max_len=MAX_NAME_LEN)
    if "\x00" in v or v.startswith("/"):
        raise TaskError(f"{name}: {v!r} must be a relative name without NUL")
    parts = v.split("/")
    if not allow_dirs and len(parts) > 1:
        raise TaskError(f"{name}: {v!r} must be a plain file name (no '/')")
    if any(p in ("", ".", "..") for p in parts):
        raise TaskError(f"{name}: {v!r} has an empty, '.' or '..' component")
    return v


def _named_blobs(name: str, value: Any, *, allow_dirs: bool) -> tuple[tuple[str, bytes], ...]:
    """``[(file name, 32-byte hash), ...]`` with distinct names; a mapping is accepted too."""
    if isinstance(value, Mapping):
        value = list(value.items())
    items = chk.sequence(name, value, max_len=MAX_BLOBS)
    out: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        pair = chk.sequence(f"{name}[{i}]", item, max_len=2)
        if len(pair) != 2:
            raise TaskError(f"{name}[{i}]: expected [name, hash]")
        n = _file_name(f"{name}[{i}].name", pair[0], allow_dirs=allow_dirs)
        if n in seen:
            raise TaskError(f"{name}[{i}].name: duplicate name {n!r}")
        seen.add(n)
        out.append((n, chk.hash32(f"{name}[{i}].hash", pair[1])))
    return tuple(out)


def _attempt(name: str, value: Any) -> int:
    return chk.integer(name, value, lo=1, hi=MAX_ATTEMPT)


# -- the spec --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec(TaskDocument):
    """What a submitter asks to have run. Immutable for the life of the task.

    ``code_blob``: SHA-256 of the module. ``fuel``: the fuel limit. ``args``: the task's argv.
    ``input_blobs``: (file name, blob hash) pairs mounted read-only. ``profile``: the resources
    needed; None selects the legacy first-claim protocol. ``hints``: locality hints.
    ``max_cost``: credits per 1,000 fuel the submitter pays at most (None: any).
    ``timeout_s``: wall-clock limit of one run (None: the runner's default). ``nonce``: 16
    random bytes from the driver. ``created_at``: the submitter's clock at submission.
    """

    code_blob: bytes | None
    submitter: str
    fuel: int
    nonce: bytes
    args: tuple[str, ...] = ()
    input_blobs: tuple[tuple[str, bytes], ...] = ()
    profile: ResourceProfile | None = None
    hints: tuple[LocalityHint, ...] = ()
    max_cost: int | None = None
    timeout_s: float | None = None
    created_at: float = 0.0
    runtime: Annotated[str, OMIT_DEFAULT] = "wasm"
    group: Annotated[bytes | None, OMIT_DEFAULT] = None
    """Replicated tasks: the group's id (16 bytes), the same in every replica."""
    replicas: Annotated[int, OMIT_DEFAULT] = 1
    wait_for_capacity: Annotated[bool, OMIT_DEFAULT] = False
    """Stay pending until some live executor could fit it, instead of failing at once."""
    """How many replicas must agree before the group's result is accepted."""
    _hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = object.__setattr__
        with _task_errors():
            if self.runtime not in RUNTIMES:
                raise TaskError(
                    f"task_spec.runtime: one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
                )
            if self.runtime == "wasm":
                s(self, "code_blob", chk.hash32("task_spec.code_blob", self.code_blob))
            elif self.code_blob is not None:
                raise TaskError("task_spec.code_blob: an exec task has no module")
            _did("task_spec.submitter", self.submitter)
            chk.integer("task_spec.fuel", self.fuel, lo=1, hi=MAX_FUEL)
            args = tuple(chk.sequence("task_spec.args", self.args, max_len=MAX_ARGS))
            for i, a in enumerate(args):
                chk.text(f"task_spec.args[{i}]", a, max_len=MAX_ARG_LEN, allow_empty=True)
            s(self, "args", args)
            if self.runtime == "exec" and (not args or not args[0].startswith("/")):
                raise TaskError(
                    "task_spec.args: an exec task's args[0] is an absolute command path"
                )
            s(
                self,
                "input_blobs",
                _named_blobs("task_spec.input_blobs", self.input_blobs, allow_dirs=False),
            )
            if self.profile is not None and not isinstance(self.profile, ResourceProfile):
                raise TaskError("task_spec.profile: expected a ResourceProfile or None")
            hints = tuple(chk.sequence("task_spec.hints", self.hints, max_len=MAX_HINTS))
            for i, h in enumerate(hints):
                if not isinstance(h, LocalityHint):
                    raise TaskError(f"task_spec.hints[{i}]: expected a LocalityHint")
            if hints and self.profile is None:
                raise TaskError("task_spec.hints: locality hints need a resource profile")
            s(self, "hints", hints)
            if self.max_cost is not None:
                chk.integer("task_spec.max_cost", self.max_cost, lo=0, hi=2**53)
            if self.timeout_s is not None:
                s(
                    self,
                    "timeout_s",
                    chk.number("task_spec.timeout_s", self.timeout_s, lo=0.0, hi=1e9, lo_open=True),
                )
            s(self, "nonce", _nonce("task_spec.nonce", self.nonce))
            chk.integer("task_spec.replicas", self.replicas, lo=1, hi=MAX_REPLICAS)
            if self.group is not None:
                s(self, "group", chk.fixed_bytes("task_spec.group", self.group, NONCE_LEN))
            elif self.replicas != 1:
                raise TaskError("task_spec.replicas: replicas need a group")
            s(self, "created_at", _time("task_spec.created_at", self.created_at))
        s(self, "_hash", hashlib.sha256(cbor2.dumps(to_doc(self), canonical=True)).digest())

    @property
    def task_hash(self) -> bytes:
        """SHA-256 of the canonical CBOR encoding of :meth:`to_dict`."""
        return self._hash

    @property
    def protocol(self) -> str:
        """``"placement"`` (with a resource profile) or ``"legacy"`` (first claim wins)."""
        return "legacy" if self.profile is None else "placement"


# -- the result ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult(TaskDocument):
    """How one run of a task ended, as the executor reports it.

    ``state`` is final. ``stdout``/``stderr`` hold at most :data:`MAX_OUTPUT_BYTES` each;
    ``*_truncated`` says the task wrote more. ``output_blobs``: (relative file name, blob hash)
    of the files the task left in its output directory. ``started_at``/``finished_at`` are on
    the executor's clock; ``attempt`` is the placement round the run belongs to.
    """

    state: TaskState
    executor: str
    fuel_used: int = 0
    exit_code: int | None = None
    message: str = ""
    stdout: Annotated[bytes, BASE64] = b""
    stderr: Annotated[bytes, BASE64] = b""
    output_blobs: tuple[tuple[str, bytes], ...] = ()
    started_at: float = 0.0
    finished_at: float = 0.0
    attempt: int = 1
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def __post_init__(self) -> None:
        s = object.__setattr__
        with _task_errors():
            st = _enum(TaskState, "task_result.state", self.state)
            if not st.is_final:
                raise TaskError(f"task_result.state: {st.value!r} is not a final state")
            s(self, "state", st)
            _did("task_result.executor", self.executor)
            chk.integer("task_result.fuel_used", self.fuel_used, lo=0, hi=MAX_FUEL)
            if self.exit_code is not None:
                chk.integer("task_result.exit_code", self.exit_code, lo=-(2**31), hi=2**31 - 1)
            chk.text("task_result.message", self.message, max_len=MAX_MESSAGE_LEN, allow_empty=True)
            s(self, "stdout", _payload("task_result.stdout", self.stdout, max_len=MAX_OUTPUT_BYTES))
            s(self, "stderr", _payload("task_result.stderr", self.stderr, max_len=MAX_OUTPUT_BYTES))
            s(
                self,
                "output_blobs",
                _named_blobs("task_result.output_blobs", self.output_blobs, allow_dirs=True),
            )
            s(self, "started_at", _time("task_result.started_at", self.started_at))
            s(self, "finished_at", _time("task_result.finished_at", self.finished_at))
            if self.finished_at < self.started_at:
                raise TaskError("task_result.finished_at: earlier than started_at")
            _attempt("task_result.attempt", self.attempt)
            chk.boolean("task_result.stdout_truncated", self.stdout_truncated)
            chk.boolean("task_result.stderr_truncated", self.stderr_truncated)
