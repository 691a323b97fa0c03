"""The WebAssembly task sandbox: wasmtime + WASI preview 1, driven from trio.

A run gets its own wasmtime ``Engine`` (``consume_fuel`` and ``epoch_interruption`` on) and
``Store``, so bumping the epoch stops this run and no other. Limits:

* compute: ``store.set_fuel(job.fuel)``; running dry is a ``Trap`` with ``OUT_OF_FUEL``;
* memory: ``store.set_limits(memory_size=...)``; ``memory.grow`` past it returns -1 to the
  guest, and a module whose initial memory is over it fails to instantiate;
* wall clock and cancel: ``store.set_epoch_deadline(1)``; whoever wants the run stopped records
  why in a :class:`RunControl` and then calls ``engine.increment_epoch()``. Wasm checks the
  epoch at every function entry and loop back-edge, so it stops within one straight-line body.
* files: inputs are staged (hard link, else copy) into a per-run temp dir preopened read-only
  at ``/inputs`` (fd 3); ``job.output_dir`` is preopened read-write at ``/outputs`` (fd 4);
* stdout/stderr go to in-memory sinks that keep at most the job's caps;
* WASI ``poll_oneoff`` is replaced by a stub returning ``ENOTSUP``: it is the one WASI call that
  can block the worker thread (a clock sleep), and epoch interruption cannot reach into a host
  call.

:func:`run_wasm_blocking` is the synchronous core (call it from a worker thread).
:class:`WasmRun` is the trio driver: the run in a worker thread, the deadline as a trio
timer, ``cancel()`` to stop one task and still get a ``cancelled`` result.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import trio
import wasmtime
from wasmtime import (
    Config,
    Engine,
    ExitTrap,
    FuncType,
    Linker,
    Module,
    Store,
    Trap,
    TrapCode,
    ValType,
    WasiConfig,
    WasmtimeError,
)

from icn_node.runner._checks import check_env, check_int, check_strings, check_timeout
from icn_node.runner.result import DEFAULT_OUTPUT_CAP, CappedBuffer, RunResult, TaskState

if TYPE_CHECKING:
    import outcome

WASM_MAGIC = b"\0asm"
GUEST_INPUTS = "/inputs"
"""Guest path of the read-only input directory; always preopened first, as fd 3."""
GUEST_OUTPUTS = "/outputs"
"""Guest path of the read-write output directory; always preopened second, as fd 4."""
PROGRAM_NAME = "task"
"""argv[0] as the guest sees it; ``WasmJob.args`` follow it."""
MAX_FUEL = 2**64 - 1
SHUTDOWN_GRACE_S = 5.0
"""How long a cancelled caller waits (shielded) for the worker thread after stopping it."""
_WASI_ERRNO_NOTSUP = 58
_MAX_MESSAGE = 2000


# --------------------------------------------------------------------------------------------
# The job


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"inputs: names must be non-empty strings, got {name!r}")
    if "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"inputs: {name!r} is not a plain file name")
    return name


@dataclass(frozen=True, kw_only=True)
class WasmJob:
    """One WebAssembly task: the module, its arguments and its limits.

    ``module`` is binary wasm (starts with ``\\0asm``) or WAT text. ``args`` follow argv[0]
    (``"task"``). ``inputs`` maps a file name under ``/inputs`` to a host file. ``output_dir``
    must be missing or empty when the run starts; it is created if missing.
    """

    module: bytes
    fuel: int
    output_dir: Path
    args: tuple[str, ...] = ()
    memory_limit_bytes: int | None = None
    timeout_s: float | None = None
    inputs: Mapping[str, Path] = field(default_factory=dict)
    stdout_cap: int = DEFAULT_OUTPUT_CAP
    stderr_cap: int = DEFAULT_OUTPUT_CAP
    env: Mapping[str, str] = field(default_factory=dict)
    deterministic: bool = False
    """Refuse a module that could tell two runs apart: one importing a clock or randomness
    (:data:`NONDETERMINISTIC_IMPORTS`). Replicated tasks run this way."""

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.module, bytes | bytearray | memoryview):
            raise ValueError(f"module: expected bytes, got {type(self.module).__name__}")
        put("module", bytes(self.module))
        if not self.module:
            raise ValueError("module: is empty")

        put("args", check_strings("args", self.args))
        check_int("fuel", self.fuel, minimum=1, maximum=MAX_FUEL)
        check_int("memory_limit_bytes", self.memory_limit_bytes, minimum=1, optional=True)
        check_timeout("timeout_s", self.timeout_s)

        if not isinstance(self.inputs, Mapping):
            raise ValueError("inputs: expected a mapping of name to path")
        put("inputs", MappingProxyType({_check_name(k): Path(v) for k, v in self.inputs.items()}))

        if not isinstance(self.output_dir, str | os.PathLike):
            raise ValueError(f"output_dir: expected a path, got {self.output_dir!r}")
        put("output_dir", Path(self.output_dir))

        check_int("stdout_cap", self.stdout_cap, minimum=0)
        check_int("stderr_cap", self.stderr_cap, minimum=0)
        put("env", check_env("env", self.env))


NONDETERMINISTIC_IMPORTS = frozenset(
    {"clock_time_get", "clock_res_get", "random_get", "poll_oneoff"}
)
"""WASI calls whose answers differ between two runs: the clocks, randomness, and sleeping on a
clock. Everything else the sandbox offers (arguments, environment, the read-only inputs, the
output directory, stdout/stderr) is the same for every replica."""


# --------------------------------------------------------------------------------------------
# Stopping a run from another thread


class RunControl:
    """The stop switch of one run, shared by the worker thread and whoever may stop it.

    :meth:`stop` records why (the first reason wins) and bumps the run's epoch, which traps the
    guest at its next check. Thread-safe; callable before the run starts (the run then ends
    at once with that state).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: TaskState | None = None
        self._engine: Engine | None = None

    @property
    def reason(self) -> TaskState | None:
        return self._reason

    def stop(self, reason: TaskState) -> None:
        if reason not in (TaskState.CANCELLED, TaskState.TIMED_OUT):
            raise ValueError(f"a run is stopped as cancelled or timed_out, not {reason}")
        with self._lock:
            if self._reason is None:
                self._reason = reason
            # Under the lock, so the worker cannot close the engine in between.
            if self._engine is not None:
                self._engine.increment_epoch()

    def _attach(self, engine: Engine) -> TaskState | None:
        with self._lock:
            self._engine = engine
            return self._reason

    def _detach(self) -> None:
        with self._lock:
            self._engine = None


# --------------------------------------------------------------------------------------------
# The synchronous core


class _SetupError(Exception):
    """The run could not be set up; the message goes into a ``failed`` result."""


def _summarize(error: BaseException) -> str:
    """One line from a wasmtime error: the headline and its causes, without the backtrace."""
    text = str(error).strip()
    head, _, causes = text.partition("Caused by:")
    parts = [] if head.startswith("error while executing") else [head.splitlines()[0]]
    for line in causes.splitlines():
        line = line.strip()
        number, sep, rest = line.partition(": ")
        parts.append(rest if sep and number.isdigit() else line)
    summary = "; ".join(p for p in parts if p) or type(error).__name__
    return summary[:_MAX_MESSAGE]


def _to_binary(module: bytes) -> bytes:
    if module.startswith(WASM_MAGIC):
        return module
    try:
        text = module.decode("utf-8")
    except UnicodeDecodeError:
        raise _SetupError(
            "module is neither binary wasm (no \\0asm magic) nor UTF-8 WAT text"
        ) from None
    try:
        return bytes(wasmtime.wat2wasm(text))
    except WasmtimeError as e:
        raise _SetupError(f"module is not valid WAT: {_summarize(e)}") from None


def _stage_inputs(inputs: Mapping[str, Path], dest: Path) -> None:
    dest.mkdir()
    for name, src in inputs.items():
        try:
            info = os.stat(src)
        except OSError as e:
            raise _SetupError(f"input {name!r}: cannot read {src}: {e.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise _SetupError(f"input {name!r}: {src} is not a regular file")
        try:
            os.link(src, dest / name)  # cheap; safe because /inputs is preopened read-only
        except OSError:
            try:
                shutil.copyfile(src, dest / name)
            except OSError as e:
                raise _SetupError(f"input {name!r}: cannot stage {src}: {e.strerror}") from None


def _prepare_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise _SetupError(f"output_dir {path} is not empty")
    except OSError as e:
        raise _SetupError(f"output_dir {path}: {e.strerror or e}") from None


def list_outputs(root: Path) -> tuple[Path, ...]:
    found = []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            path = Path(dirpath, name)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    found.append(path)
            except OSError:
                continue
    return tuple(sorted(found))


def _new_engine() -> Engine:
    config = Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    return Engine(config)


def _poll_oneoff_unsupported(*_args: object) -> int:
    return _WASI_ERRNO_NOTSUP


def _new_linker(engine: Engine) -> Linker:
    linker = Linker(engine)
    linker.define_wasi()
    linker.allow_shadowing = True
    i32 = ValType.i32()
    linker.define_func(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        FuncType([i32, i32, i32, i32], [i32]),
        _poll_oneoff_unsupported,
    )
    return linker


def _stopped_message(reason: TaskState, job: WasmJob) -> str:
    if reason is TaskState.TIMED_OUT:
        return f"wall-clock limit of {job.timeout_s} s reached"
    return "cancelled"


def _classify(
    error: BaseException, control: RunControl, job: WasmJob
) -> tuple[TaskState, int | None, str]:
    """(state, exit_code, message) for the exception that ended a run."""
    if isinstance(error, ExitTrap):
        if error.code == 0:
            return TaskState.COMPLETED, 0, ""
        return TaskState.FAILED, error.code, f"exited with code {error.code}"
    if isinstance(error, Trap):
        code = error.trap_code
        if code is TrapCode.OUT_OF_FUEL:
            return TaskState.FUEL_EXHAUSTED, None, f"fuel limit of {job.fuel} exhausted"
        if code is TrapCode.INTERRUPT and control.reason is not None:
            return control.reason, None, _stopped_message(control.reason, job)
        name = code.name.lower() if code is not None else "trap"
        return TaskState.FAILED, None, f"trap ({name}): {_summarize(error)}"
    return TaskState.FAILED, None, _summarize(error)


def _execute(job: WasmJob, control: RunControl, scratch: Path) -> RunResult:
    """One run inside an existing scratch directory; wall_time_s is filled in by the caller."""
    stdout = CappedBuffer(job.stdout_cap)
    stderr = CappedBuffer(job.stderr_cap)

    output_dir_ready = False  # only then are files under output_dir this run's outputs

    def result(
        state: TaskState, message: str = "", exit_code: int | None = None, fuel_used: int = 0
    ) -> RunResult:
        return RunResult(
            state=state,
            fuel_used=fuel_used,
            exit_code=exit_code,
            message=message,
            stdout=stdout.getvalue(),
            stderr=stderr.getvalue(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            outputs=list_outputs(job.output_dir) if output_dir_ready else (),
        )

    if control.reason is not None:
        return result(control.reason, _stopped_message(control.reason, job))
    try:
        _stage_inputs(job.inputs, scratch / "inputs")
        _prepare_output_dir(job.output_dir)
        output_dir_ready = True
        wasm = _to_binary(job.module)
    except _SetupError as e:
        return result(TaskState.FAILED, str(e))

    engine = _new_engine()
    store = Store(engine)
    # Deadline first, then make the engine reachable by stop(): any bump from here on traps.
    store.set_epoch_deadline(1)
    module = linker = None
    try:
        reason = control._attach(engine)
        if reason is not None:
            return result(reason, _stopped_message(reason, job))
        try:
            module = Module(engine, wasm)  # compiling is not interruptible; cap module size
        except WasmtimeError as e:
            return result(TaskState.FAILED, f"module does not compile: {_summarize(e)}")
        if job.deterministic:
            found = sorted(
                imp.name
                for imp in module.imports
                if imp.module.startswith("wasi") and imp.name in NONDETERMINISTIC_IMPORTS
            )
            if found:
                return result(
                    TaskState.FAILED,
                    "a replicated task must be deterministic; the module imports "
                    + ", ".join(found),
                )
        if control.reason is not None:
            return result(control.reason, _stopped_message(control.reason, job))

        try:
            store.set_fuel(job.fuel)
            if job.memory_limit_bytes is not None:
                store.set_limits(memory_size=job.memory_limit_bytes)
            wasi = WasiConfig()
            wasi.argv = [PROGRAM_NAME, *job.args]
            wasi.env = list(job.env.items())
            wasi.stdout_custom = stdout.write
            wasi.stderr_custom = stderr.write
            wasi.preopen_dir(str(scratch / "inputs"), GUEST_INPUTS, False)  # fd 3, read-only
            wasi.preopen_dir(str(job.output_dir), GUEST_OUTPUTS, True)  # fd 4
            store.set_wasi(wasi)
            linker = _new_linker(engine)
        except WasmtimeError as e:
            return result(TaskState.FAILED, f"sandbox setup failed: {_summarize(e)}")

        exit_code: int | None
        state, exit_code, message = TaskState.COMPLETED, 0, ""
        try:
            instance = linker.instantiate(store, module)
            start = instance.exports(store).get("_start")
            if not isinstance(start, wasmtime.Func):
                return result(
                    TaskState.FAILED,
                    "module has no _start function to run",
                    fuel_used=job.fuel - store.get_fuel(),
                )
            start(store)
        except (Trap, WasmtimeError) as e:
            state, exit_code, message = _classify(e, control, job)
        return result(state, message, exit_code, fuel_used=job.fuel - store.get_fuel())
    finally:
        control._detach()
        for thing in (linker, module, store, engine):
            if thing is not None:
                thing.close()


def run_wasm_blocking(
    job: WasmJob,
    control: RunControl | None = None,
    *,
    enforce_timeout: bool = True,
    scratch_root: Path | None = None,
) -> RunResult:
    """Run ``job`` to one of the five outcomes, in the calling thread. Never raises for
    anything the task or its module does; every such problem is a ``failed`` result.

    ``control`` lets another thread stop the run (``control.stop(TaskState.CANCELLED)``). With
    ``enforce_timeout`` a ``threading.Timer`` applies ``job.timeout_s``; the trio driver turns
    it off and keeps the deadline itself. The scratch directory for staged inputs lives under
    ``scratch_root`` (default: the system temp dir; the same filesystem as the blob store lets
    inputs be hard-linked instead of copied) and is always removed.
    """
    control = control if control is not None else RunControl()
    started = time.monotonic()
    timer = None
    if enforce_timeout and job.timeout_s is not None:
        timer = threading.Timer(job.timeout_s, control.stop, args=(TaskState.TIMED_OUT,))
        timer.daemon = True
        timer.start()
    try:
        with tempfile.TemporaryDirectory(prefix="icn-run-", dir=scratch_root) as scratch:
            result = _execute(job, control, Path(scratch))
    finally:
        if timer is not None:
            timer.cancel()
    return replace(result, wall_time_s=time.monotonic() - started)


# --------------------------------------------------------------------------------------------
# The trio driver


class WasmRun:
    """One run of a :class:`WasmJob`, driven from trio, that can be cancelled on its own.

    ``await run.run()`` returns a :class:`RunResult` for every outcome of the task, including
    ``timed_out`` (a trio timer at ``job.timeout_s`` bumps the epoch) and ``cancelled`` (after
    :meth:`cancel`). That is the handle a task runner needs to cancel one task and still report
    it. If instead the *caller's* cancel scope is cancelled (daemon shutdown), ``run()`` stops
    the guest through the epoch, waits for the worker thread (shielded, at most ``grace_s``),
    and then lets ``trio.Cancelled`` propagate, as trio code expects: no thread is left running
    wasm behind the caller's back.

    The deadline is a real-time trio timer in the caller's clock; the worker thread does not
    follow a ``MockClock``, so test the deadline with a short real timeout.
    """

    def __init__(
        self,
        job: WasmJob,
        *,
        grace_s: float = SHUTDOWN_GRACE_S,
        scratch_root: Path | None = None,
    ) -> None:
        self.job = job
        self._grace_s = grace_s
        self._scratch_root = scratch_root
        self._control = RunControl()
        self._started = False
        self._done = False

    @property
    def done(self) -> bool:
        """The worker thread has finished (the guest is no longer running)."""
        return self._done

    def cancel(self) -> None:
        """Stop the task; ``run()`` then returns a ``cancelled`` result. Idempotent, any thread,
        also before ``run()`` starts. A task that finishes first keeps its real outcome."""
        self._control.stop(TaskState.CANCELLED)

    async def run(self) -> RunResult:
        if self._started:
            raise RuntimeError("a WasmRun runs once; make a new one")
        self._started = True
        token = trio.lowlevel.current_trio_token()
        started = trio.current_time()
        finished = trio.Event()
        delivered: list[outcome.Outcome[RunResult]] = []

        def work() -> RunResult:
            return run_wasm_blocking(
                self.job, self._control, enforce_timeout=False, scratch_root=self._scratch_root
            )

        def deliver(result: outcome.Outcome[RunResult]) -> None:  # in the worker thread
            delivered.append(result)
            self._done = True
            try:
                token.run_sync_soon(finished.set)
            except trio.RunFinishedError:
                pass

        async with trio.open_nursery() as nursery:
            if self.job.timeout_s is not None:
                nursery.start_soon(self._deadline, self.job.timeout_s)
            # start_thread_soon rather than to_thread.run_sync: the thread has surely started
            # once this returns, so a cancelled caller always has a thread to wait for.
            trio.lowlevel.start_thread_soon(work, deliver, name="icn-wasm-run")
            try:
                await finished.wait()
            except trio.Cancelled:
                self._control.stop(TaskState.CANCELLED)
                with trio.move_on_after(self._grace_s, shield=True):
                    await finished.wait()
                raise
            nursery.cancel_scope.cancel()
        # Wall time in the clock the deadline was measured in, so timed_out implies
        # wall_time_s >= timeout_s.
        return replace(delivered[0].unwrap(), wall_time_s=trio.current_time() - started)

    async def _deadline(self, timeout_s: float) -> None:
        await trio.sleep(timeout_s)
        self._control.stop(TaskState.TIMED_OUT)


async def run_wasm(
    job: WasmJob, *, grace_s: float = SHUTDOWN_GRACE_S, scratch_root: Path | None = None
) -> RunResult:
    """Run ``job`` from trio; see :class:`WasmRun` (no separate cancel handle)."""
    return await WasmRun(job, grace_s=grace_s, scratch_root=scratch_root).run()
