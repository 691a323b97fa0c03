"""The opt-in host-command driver: runs an operator-allowlisted program with rlimits.

Off unless the operator lists commands: an empty allowlist refuses everything. The program
runs in its own session and process group with

* ``RLIMIT_CPU`` (``cpu_seconds``; SIGXCPU at the limit, SIGKILL a second later),
* ``RLIMIT_AS`` (``memory_bytes``; note that CUDA programs reserve huge address ranges, so
  GPU tasks usually need ``memory_bytes=None``),
* ``RLIMIT_NOFILE`` (``max_open_files``) and ``RLIMIT_CORE`` = 0,
* a clean environment: ``PATH`` (unless the job sets it), the job's ``env``, and
  ``CUDA_VISIBLE_DEVICES`` set to the GPUs reserved for the task ("" when none; the job's env
  cannot override it),
* stdin from /dev/null, stdout/stderr kept up to the caps (the rest is read and dropped).

At the deadline, on :meth:`ExecRun.cancel`, or when the caller's scope is cancelled, the whole
process group gets SIGKILL; after a normal exit, stragglers left in the group are killed too.
Outcomes use the wasm driver's :class:`TaskState`; running out of CPU seconds (SIGXCPU) is
``fuel_exhausted``, the exec driver's analogue of fuel. ``fuel_used`` is always 0: a host
process has no fuel meter.

The rlimits are applied in ``preexec_fn``, which runs between fork and exec; it only calls
``setrlimit`` with values computed beforehand, which keeps it safe in a threaded process.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trio

from icn_node.errors import IcnError
from icn_node.runner._checks import check_env, check_int, check_strings, check_timeout
from icn_node.runner.result import DEFAULT_OUTPUT_CAP, CappedBuffer, RunResult, TaskState

__all__ = ["ExecJob", "ExecRefusedError", "ExecRun", "resolve_command", "run_exec"]

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_MAX_OPEN_FILES = 256
DRAIN_GRACE_S = 1.0
"""After the process is gone, how long to keep reading pipes a stray descendant holds open."""
KILL_GRACE_S = 5.0
_READ_CHUNK = 65536


class ExecRefusedError(IcnError):
    """The exec driver refused to run a command: it is disabled, or the command is not in the
    operator allowlist. Nothing was started."""


@dataclass(frozen=True, kw_only=True)
class ExecJob:
    """One host command. ``argv[0]`` is an absolute path or a bare name looked up on ``PATH``;
    either way the result must be one of ``allowlist`` (absolute paths, set by the operator)."""

    argv: tuple[str, ...]
    allowlist: frozenset[str]
    cpu_seconds: int | None = None
    memory_bytes: int | None = None
    timeout_s: float | None = None
    gpu_ids: tuple[str, ...] = ()
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stdout_cap: int = DEFAULT_OUTPUT_CAP
    stderr_cap: int = DEFAULT_OUTPUT_CAP
    max_open_files: int = DEFAULT_MAX_OPEN_FILES

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("argv", check_strings("argv", self.argv))
        if not self.argv or not self.argv[0]:
            raise ValueError("argv: the command is missing")

        if isinstance(self.allowlist, str):
            raise ValueError("allowlist: expected a collection of paths, got a string")
        put("allowlist", frozenset(os.fspath(p) for p in self.allowlist))
        for entry in self.allowlist:
            if not os.path.isabs(entry):
                raise ValueError(f"allowlist: {entry!r} is not an absolute path")

        check_int("cpu_seconds", self.cpu_seconds, minimum=1, optional=True)
        check_int("memory_bytes", self.memory_bytes, minimum=1, optional=True)
        check_timeout("timeout_s", self.timeout_s)
        check_int("stdout_cap", self.stdout_cap, minimum=0)
        check_int("stderr_cap", self.stderr_cap, minimum=0)
        check_int("max_open_files", self.max_open_files, minimum=3)

        put("gpu_ids", check_strings("gpu_ids", self.gpu_ids))
        for gpu in self.gpu_ids:
            if not gpu or "," in gpu:
                raise ValueError(f"gpu_ids: {gpu!r} is not a GPU id")

        if self.cwd is not None:
            put("cwd", Path(self.cwd))
        put("env", check_env("env", self.env))


def resolve_command(command: str, allowlist: frozenset[str], search_path: str) -> str:
    """The absolute path to execute for ``command``, or :class:`ExecRefusedError`.

    A bare name is looked up on ``search_path``; an absolute path is normalised lexically. The
    result must equal an allowlist entry exactly. Symlinks are deliberately not resolved for
    the comparison: with multi-call binaries (busybox) every applet resolves to the same file,
    so allowing ``/bin/echo`` would allow ``/bin/rm``.
    """
    if not allowlist:
        raise ExecRefusedError("the exec driver is disabled: the operator allowlist is empty")
    if os.path.isabs(command):
        path = os.path.normpath(command)
    elif "/" in command:
        raise ExecRefusedError(
            f"command {command!r} must be an absolute path or a bare name, not a relative path"
        )
    else:
        found = shutil.which(command, path=search_path)
        if found is None:
            raise ExecRefusedError(f"command {command!r} is not on PATH {search_path}")
        path = os.path.normpath(os.path.abspath(found))
    if path not in {os.path.normpath(entry) for entry in allowlist}:
        raise ExecRefusedError(
            f"command {command!r} (resolved to {path}) is not in the operator allowlist"
        )
    return path


def _rlimits(job: ExecJob) -> tuple[tuple[int, tuple[int, int]], ...]:
    """(resource, (soft, hard)) pairs, clamped to this process's hard limits."""

    def clamp(res: int, soft: int, hard: int) -> tuple[int, int]:
        _cur_soft, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        return soft, hard

    limits = [
        (resource.RLIMIT_CORE, (0, 0)),
        (
            resource.RLIMIT_NOFILE,
            clamp(resource.RLIMIT_NOFILE, job.max_open_files, job.max_open_files),
        ),
    ]
    if job.cpu_seconds is not None:
        limits.append(
            (resource.RLIMIT_CPU, clamp(resource.RLIMIT_CPU, job.cpu_seconds, job.cpu_seconds + 1))
        )
    if job.memory_bytes is not None:
        limits.append(
            (resource.RLIMIT_AS, clamp(resource.RLIMIT_AS, job.memory_bytes, job.memory_bytes))
        )
    return tuple(limits)


def _apply_rlimits(limits: tuple[tuple[int, tuple[int, int]], ...]) -> None:
    # Runs in the child between fork and exec: setrlimit calls only.
    for res, pair in limits:
        resource.setrlimit(res, pair)


def _child_env(job: ExecJob) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH}
    env.update(job.env)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(job.gpu_ids)
    return env


def _kill_group(process: trio.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left in the group


async def _drain(stream: trio.abc.ReceiveStream | None, sink: CappedBuffer) -> None:
    if stream is None:
        return
    while chunk := await stream.receive_some(_READ_CHUNK):
        sink.write(chunk)


def _exit_outcome(returncode: int, job: ExecJob) -> tuple[TaskState, str]:
    if returncode == 0:
        return TaskState.COMPLETED, ""
    if returncode > 0:
        return TaskState.FAILED, f"exited with code {returncode}"
    signum = -returncode
    if signum == signal.SIGXCPU:
        return TaskState.FUEL_EXHAUSTED, f"CPU time limit of {job.cpu_seconds} s exceeded"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return TaskState.FAILED, f"killed by {name}"


class ExecRun:
    """One run of an :class:`ExecJob`, driven from trio.

    Like :class:`~icn_node.runner.wasm.WasmRun`: ``run()`` returns a result for every outcome
    of the task (``cancelled`` after :meth:`cancel`, ``timed_out`` at ``job.timeout_s``); if the
    caller's scope is cancelled, the process group is killed and reaped (shielded, bounded)
    before ``trio.Cancelled`` propagates. The deadline follows the trio clock.
    """

    def __init__(self, job: ExecJob) -> None:
        self.job = job
        self._scope = trio.CancelScope()
        self._reason: TaskState | None = None
        self._started = False

    def cancel(self) -> None:
        """Kill the task; ``run()`` then returns ``cancelled``. Idempotent; from the trio thread
        (use ``trio.from_thread.run_sync`` elsewhere)."""
        if self._reason is None:
            self._reason = TaskState.CANCELLED
        self._scope.cancel()

    async def run(self) -> RunResult:
        """Run the command. Raises :class:`ExecRefusedError` before starting anything if the
        command is not allowed."""
        if self._started:
            raise RuntimeError("an ExecRun runs once; make a new one")
        self._started = True
        job = self.job
        env = _child_env(job)
        executable = resolve_command(job.argv[0], job.allowlist, env["PATH"])
        started = trio.current_time()
        stdout = CappedBuffer(job.stdout_cap)
        stderr = CappedBuffer(job.stderr_cap)

        def result(state: TaskState, message: str, exit_code: int | None) -> RunResult:
            return RunResult(
                state=state,
                exit_code=exit_code,
                message=message,
                stdout=stdout.getvalue(),
                stderr=stderr.getvalue(),
                stdout_truncated=stdout.truncated,
                stderr_truncated=stderr.truncated,
                wall_time_s=trio.current_time() - started,
            )

        if self._reason is not None:
            return result(self._reason, "cancelled before it started", None)
        limits = _rlimits(job)
        try:
            process = await trio.lowlevel.open_process(
                [executable, *job.argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=job.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=lambda: _apply_rlimits(limits),
            )
        except (OSError, subprocess.SubprocessError) as e:
            return result(TaskState.FAILED, f"cannot start {executable}: {e}", None)

        stopped_as: TaskState | None = None  # set only if we stopped it before it exited
        try:
            async with trio.open_nursery() as readers:
                readers.start_soon(_drain, process.stdout, stdout)
                readers.start_soon(_drain, process.stderr, stderr)
                if job.timeout_s is not None:
                    self._scope.deadline = trio.current_time() + job.timeout_s
                with self._scope:
                    await process.wait()
                if self._scope.cancelled_caught:
                    # cancel() records its reason before cancelling; otherwise the deadline hit.
                    stopped_as = self._reason or TaskState.TIMED_OUT
                _kill_group(process)  # the task, if stopped; stragglers, if it exited
                await process.wait()
                readers.cancel_scope.deadline = trio.current_time() + DRAIN_GRACE_S
        finally:
            if process.returncode is None:
                _kill_group(process)
                with trio.move_on_after(KILL_GRACE_S, shield=True):
                    await process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    await trio.aclose_forcefully(stream)

        if stopped_as is TaskState.TIMED_OUT:
            return result(stopped_as, f"wall-clock limit of {job.timeout_s} s reached", None)
        if stopped_as is TaskState.CANCELLED:
            return result(stopped_as, "cancelled", None)
        assert process.returncode is not None  # the process was waited for
        state, message = _exit_outcome(process.returncode, job)
        return result(state, message, process.returncode)


async def run_exec(job: ExecJob) -> RunResult:
    """Run ``job`` from trio; see :class:`ExecRun` (no separate cancel handle)."""
    return await ExecRun(job).run()
