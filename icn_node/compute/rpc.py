"""JSON-RPC methods of the compute wing: ``compute.submit``, ``status``, ``list``, ``result``,
``cancel``, ``watch``, ``executors``.

Handlers check their parameters (an ``InvalidParams`` error names the parameter), read the
store, and hand events to the core through the driver; they decide nothing about placement.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from ..blobs import BlobError, parse_blob_id
from ..errors import IcnError, RpcError
from ..logs import get_logger
from ..rpc import RpcRegistry
from ..rpc.params import parse
from ..rpc.protocol import INVALID_PARAMS, InvalidParams
from ..scheduler.locality import LocalityHint
from ..scheduler.resources import ResourceProfile
from ..scheduler.tasks import MAX_REPLICAS, TaskResult, TaskSpec
from .core import ComputeCore
from .driver import ComputeDriver
from .effects import Effect
from .records import TaskRecord
from .replicas import MAX_EXTRA, verdict

log = get_logger("icn.compute")

MB = 1024 * 1024
MAX_MODULE_BYTES = 16 * MB
MAX_WATCH_WAIT_S = 30.0
MAX_LIST = 10_000

# Error codes beyond JSON-RPC's own (docs/PROTOCOL.md, "Local RPC").
NO_SUCH_TASK = -32004
AMBIGUOUS_TASK = -32005
UNKNOWN_BLOB = -32006
NO_RESULT = -32007
NOT_REPLICATED = -32008


# --- parameters --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputParam:
    """One task input: a blob (hex hash) and the file name it is mounted as."""

    blob: str
    name: str | None = None

    def __post_init__(self) -> None:
        try:
            parse_blob_id(self.blob)
        except BlobError as e:
            raise InvalidParams(f"inputs.blob: {e}") from None

    @property
    def blob_hash(self) -> bytes:
        return parse_blob_id(self.blob)


@dataclass(frozen=True, slots=True)
class SubmitParams:
    """``compute.submit``: a wasm module (base64 ``module``, or ``module_blob``: the hex hash of
    a blob held on this node, as ``blob.put`` stores it) or an exec command line, and the task."""

    fuel: int
    module: str | None = None
    module_name: str | None = None
    module_blob: str | None = None
    exec: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    inputs: tuple[InputParam, ...] = ()
    profile: ResourceProfile | None = None
    hints: tuple[LocalityHint, ...] = ()
    max_cost: int | None = None
    timeout_s: float | None = None
    replicas: int = 1
    wait_for_capacity: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise InvalidParams(f"replicas: expected 1-{MAX_REPLICAS}")
        if self.fuel <= 0:
            raise InvalidParams("fuel: expected a positive integer")
        if self.module_blob is not None:
            try:
                parse_blob_id(self.module_blob)
            except BlobError as e:
                raise InvalidParams(f"module_blob: {e}") from None
        given = [k for k in ("module", "module_blob", "exec") if getattr(self, k)]
        if len(given) > 1:
            both = " and ".join(given)
            raise InvalidParams(f"give one of module, module_blob or exec, not {both}")
        if self.exec is not None:
            if not self.exec or not self.exec[0].startswith("/"):
                raise InvalidParams("exec: expected [absolute command path, args...]")
        elif not self.module and not self.module_blob:
            raise InvalidParams("module: empty (or give module_blob or exec)")

    def module_bytes(self) -> bytes:
        try:
            module = base64.b64decode(self.module or "", validate=True)
        except binascii.Error:
            raise InvalidParams("module: expected base64") from None
        if len(module) > MAX_MODULE_BYTES:
            raise InvalidParams(f"module: larger than {MAX_MODULE_BYTES} bytes")
        return module


@dataclass(frozen=True, slots=True)
class ListParams:
    """``compute.list``: the newest ``limit`` tasks, optionally in one state."""

    limit: int = 50
    state: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIST:
            raise InvalidParams(f"limit: expected 1-{MAX_LIST}")


@dataclass(frozen=True, slots=True)
class WatchParams:
    """``compute.watch``: state changes after sequence number ``after`` (of one task)."""

    task: str | None = None
    after: int = 0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.after < 0:
            raise InvalidParams("after: expected a sequence number (integer >= 0)")
        if self.timeout_s < 0:
            raise InvalidParams("timeout_s: expected seconds (number >= 0)")


# --- views -------------------------------------------------------------------------------------


def result_view(res: TaskResult) -> dict[str, Any]:
    return {
        "state": res.state.value,
        "executor": res.executor,
        "fuel_used": res.fuel_used,
        "exit_code": res.exit_code,
        "message": res.message,
        "stdout": res.stdout.decode(errors="replace"),
        "stderr": res.stderr.decode(errors="replace"),
        "stdout_truncated": res.stdout_truncated,
        "stderr_truncated": res.stderr_truncated,
        "outputs": [{"name": n, "blob": h.hex()} for n, h in res.output_blobs],
        "started_at": res.started_at,
        "finished_at": res.finished_at,
        "attempt": res.attempt,
    }


def _timings(rec: TaskRecord) -> dict[str, float]:
    """Seconds from submission to each milestone reached."""
    t0 = rec.submitted_at
    marks = {
        "negotiation_started": rec.negotiation_started_at,
        "claimed": rec.claimed_at,
        "started": rec.started_at,
        "finished": rec.finished_at,
    }
    return {k: round(v - t0, 4) for k, v in marks.items() if v is not None}


def task_view(rec: TaskRecord) -> dict[str, Any]:
    return {
        "task": rec.task_hash.hex(),
        "state": rec.state.value,
        "protocol": rec.spec.protocol,
        "attempt": rec.attempt,
        "executor": rec.executor,
        "reason": rec.reason or None,
        "offers": [o.to_dict(json_safe=True) for o in rec.offers],
        "declines": [{"executor": d, "why": why} for d, why in rec.declines],
        "timings": _timings(rec),
        "result": result_view(rec.result) if rec.result else None,
    }


def _submit(spec: TaskSpec, core: ComputeCore, now: float) -> list[Effect]:
    return core.submit(spec, now)


# --- handlers ----------------------------------------------------------------------------------


class ComputeRpc:
    def __init__(self, driver: ComputeDriver) -> None:
        self.driver = driver

    def register(self, rpc: RpcRegistry) -> None:
        rpc.register("compute.submit", self.submit)
        rpc.register("compute.status", self.status)
        rpc.register("compute.list", self.list)
        rpc.register("compute.result", self.result)
        rpc.register("compute.cancel", self.cancel)
        rpc.register("compute.watch", self.watch)
        rpc.register("compute.executors", self.executors)
        rpc.register("compute.verify", self.verify)

    def _record(self, params: dict[str, Any]) -> TaskRecord:
        text = params.get("task")
        if not isinstance(text, str) or not text:
            raise InvalidParams("task: expected a hex task hash (or a unique prefix)")
        t = text.strip().lower()
        try:
            prefix = bytes.fromhex(t[: len(t) - len(t) % 2])
        except ValueError:
            raise InvalidParams(f"task: not hex: {text!r}") from None
        store = self.driver.store
        keys = [k for k in store.find_prefix("tasks", prefix) if k.hex().startswith(t)]
        if not keys:
            raise RpcError(NO_SUCH_TASK, f"no task {text} on this node")
        if len(keys) > 1:
            raise RpcError(AMBIGUOUS_TASK, f"task prefix {text} is ambiguous; give more characters")
        return TaskRecord.from_dict(store.get("tasks", keys[0]))

    async def submit(self, params: dict[str, Any]) -> dict[str, Any]:
        d = self.driver
        p = parse(SubmitParams, params)
        module = p.module_bytes() if p.module else b""
        inputs = []
        for i, item in enumerate(p.inputs):
            h = item.blob_hash
            if not d.blobs.store.has(h) and not d.blobs.locations.holders(h):
                why = f"inputs[{i}]: no node is known to hold blob {h.hex()}"
                raise RpcError(UNKNOWN_BLOB, why)
            inputs.append((item.name or h.hex()[:16], h))
        code = None
        if p.module_blob is not None:
            code = parse_blob_id(p.module_blob)
            size = d.blobs.store.size(code)
            if size is None:
                raise RpcError(
                    UNKNOWN_BLOB,
                    f"module_blob: blob {code.hex()} is not held on this node (put it here "
                    "first: icnctl blob put FILE)",
                )
            if size > MAX_MODULE_BYTES:
                raise InvalidParams(
                    f"module_blob: {size} bytes, larger than the {MAX_MODULE_BYTES}-byte module "
                    "limit"
                )
        elif p.exec is None:
            code = await trio.to_thread.run_sync(d.blobs.store.put, module)
            d.blobs.added(code, len(module))
        group = os.urandom(16) if p.replicas > 1 else None
        specs = []
        try:
            for _ in range(p.replicas):
                specs.append(
                    TaskSpec(
                        code_blob=code,
                        runtime="exec" if p.exec is not None else "wasm",
                        submitter=d.did,
                        fuel=p.fuel,
                        nonce=os.urandom(16),
                        args=(*p.exec, *p.args) if p.exec is not None else p.args,
                        input_blobs=tuple(inputs),
                        profile=p.profile,
                        hints=p.hints,
                        max_cost=p.max_cost,
                        timeout_s=p.timeout_s,
                        created_at=d.now(),
                        group=group,
                        replicas=p.replicas,
                        wait_for_capacity=p.wait_for_capacity,
                    )
                )
        except IcnError as e:
            raise RpcError(INVALID_PARAMS, str(e)) from None
        for one in specs:
            await d.report(partial(_submit, one))
        spec = specs[0]
        log.info("task_submitted", task=spec.task_hash.hex(), protocol=spec.protocol)
        out: dict[str, Any] = {"task": spec.task_hash.hex(), "protocol": spec.protocol}
        if group is not None:
            out["group"] = group.hex()
            out["replicas"] = [s.task_hash.hex() for s in specs]
        return out

    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        return task_view(self._record(params))

    async def list(self, params: dict[str, Any]) -> dict[str, Any]:
        p = parse(ListParams, params)
        store = self.driver.store
        rows = [
            task_view(TaskRecord.from_dict(doc))
            for _, doc in store.scan("tasks", states=[p.state] if p.state else None, limit=p.limit)
        ]
        return {"tasks": rows, "counts": store.count("tasks")}

    async def result(self, params: dict[str, Any]) -> dict[str, Any]:
        rec = self._record(params)
        if rec.result is None:
            raise RpcError(
                NO_RESULT, f"task {rec.task_hash.hex()} has no result yet (state {rec.state.value})"
            )
        return result_view(rec.result)

    async def cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        rec = self._record(params)
        th = rec.task_hash
        if not rec.state.is_final:  # a final task has nothing to stop
            await self.driver.report(lambda core, now: core.cancel(th, now))
            rec = self._record({"task": th.hex()})
        return {"task": th.hex(), "state": rec.state.value}

    async def watch(self, params: dict[str, Any]) -> dict[str, Any]:
        p = parse(WatchParams, params)
        after, timeout = p.after, min(p.timeout_s, MAX_WATCH_WAIT_S)
        full = self._record(params).task_hash.hex() if p.task else None
        log_ = self.driver.watch

        def pick() -> list[dict[str, Any]]:
            return [
                e for e in log_.events if e["seq"] > after and (full is None or e["task"] == full)
            ]

        events = pick()
        if not events and full is not None and after == 0:
            if not any(e["task"] == full for e in log_.events):
                # Nothing in memory (e.g. after a restart): report the stored state once.
                rec = self._record(params)
                stored = {
                    "seq": 0,
                    "task": full,
                    "state": rec.state.value,
                    "old": None,
                    "executor": rec.executor,
                    "attempt": rec.attempt,
                    "reason": rec.reason or None,
                    "at": rec.updated_at,
                }
                return {"events": [stored], "next": log_.seq}
        if not events:
            with trio.move_on_after(timeout):
                while not events:
                    await log_.changed.wait()
                    events = pick()
        return {"events": events, "next": max([after, *(e["seq"] for e in events)])}

    async def verify(self, params: dict[str, Any]) -> dict[str, Any]:
        """A replicated task's group: every replica and the verdict on their results."""
        rec = self._record(params)
        group = rec.spec.group
        if group is None:
            raise RpcError(NOT_REPLICATED, f"task {rec.task_hash.hex()} was not replicated")
        members = [
            r
            for r in (TaskRecord.from_dict(doc) for _, doc in self.driver.store.scan("tasks"))
            if r.spec.group == group
        ]
        members.sort(key=lambda r: (r.submitted_at, r.task_hash))
        want = rec.spec.replicas
        v = verdict(want, members, len(members) - want < MAX_EXTRA)
        return {
            "group": group.hex(),
            "want": want,
            "verdict": v.kind,
            "agree": v.agree,
            "minority": list(v.minority),
            "result": result_view(v.result) if v.result is not None else None,
            "replicas": [
                {
                    "task": r.task_hash.hex(),
                    "state": r.state.value,
                    "executor": r.executor,
                    "fuel_used": r.result.fuel_used if r.result else None,
                }
                for r in members
            ],
        }

    async def executors(self, params: dict[str, Any]) -> dict[str, Any]:
        now = self.driver.now()
        sub = self.driver.core.submitter
        rows = []
        for info in sub.registry.live(now):
            row = info.to_dict(json_safe=True)
            row["trust"] = sub.trust(info.did)
            row["effective_trust"] = round(sub.effective_trust(info.did, now), 4)
            rows.append(row)
        return {"executors": rows}


__all__ = ["ComputeRpc", "result_view", "task_view"]
