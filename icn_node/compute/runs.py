"""Running tasks on this executor: fetch the blobs, run the sandbox, store the outputs.

:meth:`Runs.run` does one run and returns how it ended: a
:class:`~icn_node.scheduler.tasks.TaskResult` (also for a run that could not start), or
:class:`Abandoned` when the task's blobs cannot be fetched from anyone, which is not the task's
fault. It never calls back into the driver or the core; the driver turns the outcome into one
core event (``run_finished`` or ``run_abandoned``), so every ``StartRun`` is answered once.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio
from prometheus_client import Gauge

from ..blobs import BlobError, BlobStore
from ..config import ComputeSection
from ..errors import IcnError
from ..logs import get_logger
from ..runner import ExecJob, ExecRun, RunResult, WasmJob, WasmRun, list_outputs
from ..scheduler.resources import Reservation
from ..scheduler.tasks import MAX_OUTPUT_BYTES, TaskResult, TaskSpec, TaskState

log = get_logger("icn.compute")

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The run could not start for a reason outside the task (its blobs are unreachable)."""

    reason: str


class BlobFetcher(Protocol):
    """What a run needs of the blob service."""

    async def ensure(self, h: bytes, holders: list[str], *, cause: str = ...) -> None: ...

    def added(self, h: bytes, size: int) -> None: ...


def _remove_run_dir(run_dir: Path) -> None:
    """Remove a finished run's directory: two rmdir calls when the task left nothing behind
    (the usual case, its outputs are blobs by now), a full rmtree otherwise."""
    for d in (run_dir / "out", run_dir):
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty
            shutil.rmtree(run_dir, ignore_errors=True)
            return


class Runs:
    """The sandboxes of this executor, one per running task."""

    def __init__(
        self,
        did: str,
        config: ComputeSection,
        runs_dir: Path,
        blobs: BlobStore,
        fetcher: BlobFetcher,
        now: Callable[[], float],
        running: Gauge,
    ) -> None:
        self.did = did
        self.config = config
        self.runs_dir = runs_dir
        self.blobs = blobs
        self.fetcher = fetcher
        self.now = now
        self.running = running
        self._runs: dict[bytes, WasmRun | ExecRun] = {}

    async def clear(self) -> None:
        """No run survives a restart (the core gives those tasks back), so whatever a crash
        left in runs/ is garbage."""
        await trio.to_thread.run_sync(lambda: shutil.rmtree(self.runs_dir, ignore_errors=True))

    def stop(self, task_hash: bytes) -> None:
        run = self._runs.get(task_hash)
        if run is not None:
            run.cancel()

    async def run(
        self, spec: TaskSpec, attempt: int, reservation: Reservation | None
    ) -> TaskResult | Abandoned:
        th = spec.task_hash
        started = self.now()
        run_dir = self.runs_dir / f"{th.hex()}-{attempt}"
        result: TaskResult
        try:
            holders = [spec.submitter]
            try:
                if spec.code_blob is not None:
                    await self.fetcher.ensure(spec.code_blob, holders, cause="module")
                for _name, h in spec.input_blobs:
                    await self.fetcher.ensure(h, holders, cause="task_input")
            except BlobError as e:
                # Not the task's fault: give it back so it is placed elsewhere (or here again
                # once its blobs can be reached), instead of failing it.
                log.warning("task_blobs_unavailable", task=th.hex(), error=str(e))
                return Abandoned(f"blobs unavailable: {e}"[:200])
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            out_dir = run_dir / "out"
            gpus = reservation.gpu_device_ids if reservation is not None else ()
            sandbox = await self._sandbox(spec, run_dir, out_dir, gpus)
            self._runs[th] = sandbox
            self.running.inc()
            try:
                outcome: RunResult = await sandbox.run()
            finally:
                self.running.dec()
                self._runs.pop(th, None)
            outputs = []
            produced = outcome.outputs if spec.runtime == "wasm" else list_outputs(out_dir)
            for path in produced:
                h, size = await trio.to_thread.run_sync(self.blobs.put_file, path)
                self.fetcher.added(h, size)
                outputs.append((str(path.relative_to(out_dir)), h))
            result = TaskResult(
                state=TaskState(outcome.state.value),
                executor=self.did,
                fuel_used=outcome.fuel_used,
                exit_code=outcome.exit_code,
                message=outcome.message,
                stdout=outcome.stdout,
                stderr=outcome.stderr,
                output_blobs=tuple(outputs),
                started_at=started,
                finished_at=self.now(),
                attempt=attempt,
                stdout_truncated=outcome.stdout_truncated,
                stderr_truncated=outcome.stderr_truncated,
            )
        except (BlobError, IcnError, OSError, ValueError) as e:
            log.warning("task_run_failed", task=th.hex(), error=str(e))
            result = TaskResult(
                state=TaskState.FAILED,
                executor=self.did,
                message=f"could not run: {e}"[:1024],
                started_at=started,
                finished_at=self.now(),
                attempt=attempt,
            )
        finally:
            _remove_run_dir(run_dir)
        log.info(
            "task_run_finished", task=th.hex(), state=result.state.value, fuel=result.fuel_used
        )
        return result

    def _stage_exec(
        self, run_dir: Path, out_dir: Path, input_blobs: tuple[tuple[str, bytes], ...]
    ) -> Path:
        inputs = run_dir / "inputs"
        inputs.mkdir()
        for name, h in input_blobs:
            os.link(self.blobs.path(h), inputs / name)
        out_dir.mkdir()
        return inputs

    async def _sandbox(
        self, spec: TaskSpec, run_dir: Path, out_dir: Path, gpus: tuple[str, ...]
    ) -> WasmRun | ExecRun:
        """The sandbox for a wasm task, or (operator allowlist) the host-command driver."""
        prof = spec.profile
        memory = (prof.memory_mb * MB) if prof and prof.memory_mb else None
        if spec.runtime == "exec":
            # Inputs under run_dir/inputs (hard-linked), outputs: files the command leaves in
            # its working directory; both paths also in the environment.
            inputs = await trio.to_thread.run_sync(
                self._stage_exec, run_dir, out_dir, spec.input_blobs
            )
            cores = prof.cpu_cores if prof and prof.cpu_cores else 1.0
            job = ExecJob(
                argv=spec.args,
                allowlist=frozenset(self.config.exec_allowlist),
                cpu_seconds=math.ceil(spec.timeout_s * max(1.0, cores)) if spec.timeout_s else None,
                memory_bytes=memory,
                timeout_s=spec.timeout_s,
                gpu_ids=gpus,
                cwd=out_dir,
                env={"ICN_INPUTS": str(inputs), "ICN_OUTPUTS": str(out_dir)},
                stdout_cap=MAX_OUTPUT_BYTES,
                stderr_cap=MAX_OUTPUT_BYTES,
            )
            return ExecRun(job)
        assert spec.code_blob is not None
        module = await trio.to_thread.run_sync(self.blobs.get, spec.code_blob)
        wasm = WasmJob(
            module=module,
            fuel=spec.fuel,
            output_dir=out_dir,
            args=spec.args,
            memory_limit_bytes=memory,
            timeout_s=spec.timeout_s,
            inputs={name: self.blobs.path(h) for name, h in spec.input_blobs},
            stdout_cap=MAX_OUTPUT_BYTES,
            stderr_cap=MAX_OUTPUT_BYTES,
            deterministic=spec.group is not None,
        )
        # Scratch (staged inputs) beside the blob store: inputs are hard-linked, not copied.
        return WasmRun(wasm, scratch_root=run_dir)
