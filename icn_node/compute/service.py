"""The compute driver: joins the placement cores to the mesh, the stores, the sandbox and RPC.

Everything the protocol decides comes from the pure cores (:class:`SubmitterCore`,
:class:`ExecutorCore`, :class:`ExecutorRegistry`). This module only moves things:

* incoming mesh deliveries are decoded (``icn_node.wire``) and turned into core events, with
  the sender taken from the delivery's authenticated origin, never from a field;
* the actions the cores return are executed in order: ``Persist`` is written to SQLite before
  the next action runs, messages go out through the mesh (or straight back into this node's
  own cores when addressed to itself), ``StartRun`` starts a sandbox, metrics are counted;
* one timer task sleeps until the cores' earliest deadline and calls ``on_timer(now)``;
* an announcer gossips this executor's capacity every ``compute.announce_interval_s`` and
  early on a significant change.

Time for the cores is ``now()``: the trio clock shifted to wall-clock seconds at start, so
records persisted by one process stay meaningful to the next and ``MockClock`` still drives it.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import random
import shutil
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..blobs import BlobError, BlobStore, parse_blob_id
from ..blobs.driver import BlobService
from ..errors import CodecError, IcnError, RpcError
from ..logs import get_logger
from ..rpc.protocol import INVALID_PARAMS, InvalidParams
from ..runner import ExecJob, ExecRun, RunResult, WasmJob, WasmRun, list_outputs
from ..scheduler import (
    DefaultPlacementPolicy,
    LocalityContext,
    LocalityHint,
    Reservation,
    ResourceProfile,
)
from ..store import NodeStore
from ..wire import (
    COMPUTE_DIRECT_TOPIC,
    COMPUTE_TOPIC,
    AbandonMsg,
    ClaimMsg,
    ClaimReplyMsg,
    ClaimRequestMsg,
    DeclineMsg,
    ExecutorAnnounceMsg,
    GrantMsg,
    Message,
    PlacementOfferMsg,
    PlacementRequestMsg,
    RefuseMsg,
    ResultAckMsg,
    TaskCancelMsg,
    TaskClaimedMsg,
    TaskHeartbeatMsg,
    TaskResultMsg,
    TaskSubmittedMsg,
    decode_message,
    encode_message,
)
from . import actions as A
from .executor import ExecutorCore
from .registry import ExecutorRegistry
from .submitter import SubmitterCore
from .tasks import JobRecord, TaskRecord, TaskResult, TaskSpec, TaskState

log = get_logger("icn.compute")

MB = 1024 * 1024
MAX_MODULE_BYTES = 16 * MB
MAX_OUTPUT_BYTES = 64 * 1024
WATCH_EVENTS = 10_000
MAX_WATCH_WAIT_S = 30.0
MAX_TASK_LOCATIONS = 10_000
# Early announcements (on a significant capacity change): at least this far apart, and at
# least half an announce interval.
MIN_ANNOUNCE_GAP_S = 1.0
FINAL = {
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.FUEL_EXHAUSTED,
    TaskState.TIMED_OUT,
    TaskState.CANCELLED,
}


class ComputeMetrics:
    """The seed's seven placement metrics plus task counters; no per-task or per-peer labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "icn_compute_placement_"
        self.requests_received = Counter(
            p + "requests_received_total",
            "Placement requests this executor received.",
            registry=registry,
        )
        self.offers_sent = Counter(
            p + "offers_sent_total", "Placement offers this executor sent.", registry=registry
        )
        self.offers_received = Counter(
            p + "offers_received_total",
            "Placement offers this submitter received in time.",
            registry=registry,
        )
        self.wins = Counter(p + "wins_total", "Placements this executor won.", registry=registry)
        self.losses = Counter(
            p + "losses_total", "Placements this executor offered on and lost.", registry=registry
        )
        self.score = Histogram(
            p + "score",
            "Scores this executor offered with.",
            buckets=[i / 10 for i in range(1, 11)],
            registry=registry,
        )
        self.duration = Histogram(
            p + "duration_seconds",
            "Placement latency at the submitter: request to claim accepted.",
            buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            registry=registry,
        )
        self.submitted = Counter(
            "icn_compute_tasks_submitted_total",
            "Tasks submitted here, by protocol.",
            ["protocol"],
            registry=registry,
        )
        self.finished = Counter(
            "icn_compute_tasks_finished_total",
            "Tasks submitted here that ended, by final state.",
            ["state"],
            registry=registry,
        )
        self.fuel = Counter(
            "icn_compute_fuel_used_total",
            "Fuel used by finished tasks submitted here.",
            registry=registry,
        )
        self.running = Gauge(
            "icn_compute_runs_active", "Sandboxes running on this executor.", registry=registry
        )
        self.dropped = Counter(
            "icn_compute_messages_dropped_total",
            "Compute messages refused at decode.",
            registry=registry,
        )


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


class ComputeService:
    def __init__(self, node) -> None:
        cfg = node.config
        self.node = node
        self.config = cfg
        self.did = node.did
        self.mesh = node.mesh
        self._offset = time.time() - trio.current_time()
        data = cfg.data_dir
        self.store = NodeStore(data / "node.db")
        self.blobs = BlobStore(data / "blobs")
        self.runs_dir = data / "runs"
        self.blobnet = BlobService(self.did, self.blobs, self.mesh, self.now)
        self.metrics = ComputeMetrics(node.metrics.registry)
        self.rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        c = cfg.compute
        window_s = c.offer_window_ms / 1000.0
        self.registry = ExecutorRegistry(c.announce_interval_s)
        self.submitter = SubmitterCore(
            self.did,
            self.trust,
            self.registry,
            offer_window_s=window_s,
            max_attempts=c.max_attempts,
            max_negotiating=c.max_negotiating,
            min_trust=c.min_trust_execute,
            lease_timeout_s=c.lease_timeout_s,
            claim_timeout_s=c.claim_timeout_s,
            rng=self.rng,
        )
        self.executor: ExecutorCore | None = None
        if c.executor:
            self.executor = ExecutorCore(
                self.did,
                node.capacity,
                DefaultPlacementPolicy(jitter=self.rng),
                self.trust,
                min_trust=c.min_trust_execute,
                runtimes=("wasm", "exec") if c.exec_allowlist else ("wasm",),
                deliberation_s=c.deliberation_ms / 1000.0,
                offer_window_s=window_s,
                heartbeat_interval_s=c.heartbeat_interval_s,
                result_resend_s=c.result_resend_s,
            )
        self._runs: dict[bytes, WasmRun] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=WATCH_EVENTS)
        self._seq = 0
        self._changed = trio.Event()
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        # Which task runs where (from task_claimed), for ColocateWith; bounded, oldest dropped.
        self._task_locations: OrderedDict[bytes, str] = OrderedDict()
        self._finished: list[bytes] = []

    # --- time and trust ----------------------------------------------------------------------

    def now(self) -> float:
        return trio.current_time() + self._offset

    def trust(self, did: str) -> float:
        """This node's trust in ``did``: the configured table; a node trusts itself fully."""
        return 1.0 if did == self.did else self.config.trust_in(did)

    # --- service -----------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        gossip = self.mesh.subscribe(COMPUTE_TOPIC, buffer=4096)
        direct = self.mesh.subscribe(COMPUTE_DIRECT_TOPIC, buffer=4096)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.blobnet.serve)
                await self._restore()
                nursery.start_soon(self._receive, gossip)
                nursery.start_soon(self._receive, direct)
                nursery.start_soon(self._timer_loop)
                if self.executor is not None:
                    nursery.start_soon(self._announce_loop)
                task_status.started()
        finally:
            self.store.close()

    async def _restore(self) -> None:
        # No run survives a restart (the executor core gives those tasks back), so whatever a
        # crash left in runs/ is garbage.
        await trio.to_thread.run_sync(lambda: shutil.rmtree(self.runs_dir, ignore_errors=True))
        now = self.now()
        unfinished = [s.value for s in TaskState if s not in FINAL]
        records = [
            TaskRecord.from_dict(doc) for _, doc in self.store.scan("tasks", states=unfinished)
        ]
        acts = self.submitter.restore(records, now)
        if self.executor is not None:
            jobs = [JobRecord.from_dict(doc) for _, doc in self.store.scan("jobs")]
            acts += self.executor.restore(jobs, now)
        if records:
            log.info("compute_restored", tasks=len(records))
        await self._execute(acts)

    # --- incoming ----------------------------------------------------------------------------

    async def _receive(self, inbox) -> None:
        async for delivery in inbox:
            try:
                msg = decode_message(delivery.payload)
            except CodecError as e:
                self.metrics.dropped.inc()
                log.warning("compute_message_dropped", origin=delivery.origin, reason=str(e))
                continue
            try:
                await self.dispatch(msg, delivery.origin)
            except IcnError as e:
                # A well-formed message the cores refused (e.g. a domain check): the sender's
                # fault; logged and dropped, the node goes on.
                self.metrics.dropped.inc()
                log.warning(
                    "compute_message_refused", origin=delivery.origin, tag=msg.TAG, reason=str(e)
                )

    async def dispatch(self, msg: Message, sender: str) -> None:
        """Turn one decoded message from ``sender`` into core events and run their actions."""
        now = self.now()
        ex = self.executor
        acts: list[A.Action] = []
        match msg:
            case PlacementRequestMsg():
                if ex is not None:
                    req = msg.parsed
                    if req.submitter != sender:
                        raise IcnError("placement request submitter is not its origin")
                    acts = ex.on_request(
                        req,
                        msg.attempt,
                        now,
                        self._context(),
                        self.node.host_load,
                        window_s=msg.window_s,
                        excluded=msg.excluded,
                    )
            case TaskSubmittedMsg():
                if ex is not None:
                    spec = msg.parsed
                    if spec.submitter != sender:
                        raise IcnError("task submitter is not its origin")
                    acts = ex.on_task_submitted(
                        spec, msg.attempt, now, window_s=msg.window_s, excluded=msg.excluded
                    )
            case TaskClaimedMsg():
                self._task_locations[msg.task] = msg.winner
                self._task_locations.move_to_end(msg.task)
                if len(self._task_locations) > MAX_TASK_LOCATIONS:
                    self._task_locations.popitem(last=False)
                if ex is not None:
                    acts = ex.on_task_claimed(msg.task, msg.winner, msg.attempt, now)
            case TaskCancelMsg():
                if ex is not None:
                    acts = ex.on_cancel(msg.task, sender, now, msg.attempt)
            case ExecutorAnnounceMsg():
                info = msg.parsed
                if info.did != sender:
                    raise IcnError("executor announcement for another DID")
                self.registry.announce(info, now)
            case PlacementOfferMsg():
                offer = msg.parsed
                acts = self.submitter.on_offer(offer, sender, msg.attempt, now)
            case DeclineMsg():
                acts = self.submitter.on_decline(msg.task, sender, msg.attempt, msg.reason, now)
            case ClaimMsg():
                if ex is not None:
                    acts = ex.on_claim(msg.task, sender, msg.attempt, msg.parsed, now)
                else:
                    await self._send_msg(
                        sender, ClaimReplyMsg(msg.task, msg.attempt, False, "not_an_executor")
                    )
            case ClaimReplyMsg():
                acts = self.submitter.on_claim_reply(
                    msg.task, sender, msg.attempt, msg.accepted, msg.reason, now
                )
            case ClaimRequestMsg():
                acts = self.submitter.on_claim_request(msg.task, sender, msg.attempt, now)
            case GrantMsg():
                if ex is not None:
                    acts = ex.on_grant(msg.task, sender, msg.attempt, msg.parsed, now)
            case RefuseMsg():
                if ex is not None:
                    acts = ex.on_refuse(msg.task, sender, msg.attempt, now)
            case TaskHeartbeatMsg():
                acts = self.submitter.on_heartbeat(msg.task, sender, msg.attempt, now)
            case TaskResultMsg():
                acts = self.submitter.on_result(msg.parsed, sender, msg.task, now)
            case ResultAckMsg():
                if ex is not None:
                    acts = ex.on_result_ack(msg.task, sender, now, msg.attempt)
            case AbandonMsg():
                acts = self.submitter.on_abandon(msg.task, sender, msg.attempt, msg.reason, now)
            case _:
                log.debug("compute_message_unexpected", tag=msg.TAG, origin=sender)
        await self._execute(acts)

    def _context(self) -> LocalityContext:
        return LocalityContext(
            region=self.config.node.region or None,
            blobs=self.blobnet.locations.snapshot(),
            rtt_ms=self._rtts(),
            task_locations=self._task_locations,
        )

    def _rtts(self) -> dict[str, float]:
        rtt = getattr(self.mesh, "rtt_ms", None)
        return rtt() if callable(rtt) else {}

    # --- actions -----------------------------------------------------------------------------

    async def _execute(self, acts: list[A.Action]) -> None:
        for act in acts:
            await self._do(act)
        # A finished task lives on in SQLite (status, result, watch); the core forgets it so
        # its timers and lookups only ever see tasks in flight.
        while self._finished:
            th = self._finished.pop()
            rec = self.submitter.record(th)
            if rec is not None and rec.state in FINAL:
                self.submitter.forget(th)
        if acts:
            self._wakeup.set()

    async def _do(self, act: A.Action) -> None:
        m = self.metrics
        match act:
            case A.Persist(record=TaskRecord() as rec):
                self.store.put(
                    "tasks", rec.task_hash, rec.state.value, rec.updated_at, rec.to_dict()
                )
            case A.Persist(record=JobRecord() as job):
                self.store.put(
                    "jobs", job.task_hash, job.state.value, job.updated_at, job.to_dict()
                )
            case A.StateChanged():
                self._event(act)
                if act.new in FINAL:
                    self._finished.append(act.task_hash)
            case A.StartRun():
                assert self._nursery is not None
                self._nursery.start_soon(self._run_task, act.spec, act.attempt, act.reservation)
            case A.StopRun():
                run = self._runs.get(act.task_hash)
                if run is not None:
                    run.cancel()
            case A.PublishRequest():
                msg = PlacementRequestMsg(
                    act.request.to_dict(), act.attempt, act.window_s, tuple(act.excluded)
                )
                # Straight to the executors the core expects (announced, live, could fit)
                # rather than flooding every member; gossip when it expects none.
                if act.targets is not None:
                    await self._send_many(act.targets, msg)
                else:
                    await self._publish(msg)
            case A.PublishTaskSubmitted():
                msg = TaskSubmittedMsg(
                    act.spec.to_dict(), act.attempt, act.window_s, tuple(act.excluded)
                )
                await self._publish(msg)
            case A.PublishTaskClaimed():
                msg = TaskClaimedMsg(act.task_hash, act.winner, act.attempt)
                if act.targets is not None:
                    # The winner learns from its claim; the others release their reservations.
                    await self._send_many(act.targets, msg)
                else:
                    await self._publish(msg)
            case A.PublishCancel():
                await self._publish(TaskCancelMsg(act.task_hash, act.attempt))
            case A.SendOffer():
                m.offers_sent.inc()
                await self._send_msg(act.to, PlacementOfferMsg(act.offer.to_dict(), act.attempt))
            case A.SendDecline():
                await self._send_msg(
                    act.to, DeclineMsg(act.task_hash, act.attempt, act.reason, act.detail)
                )
            case A.SendClaim():
                await self._send_msg(
                    act.to, ClaimMsg(act.task_hash, act.attempt, act.spec.to_dict())
                )
            case A.SendClaimReply():
                await self._send_msg(
                    act.to, ClaimReplyMsg(act.task_hash, act.attempt, act.accepted, act.reason)
                )
            case A.SendClaimRequest():
                await self._send_msg(act.to, ClaimRequestMsg(act.task_hash, act.attempt))
            case A.SendGrant():
                await self._send_msg(
                    act.to, GrantMsg(act.task_hash, act.attempt, act.spec.to_dict())
                )
            case A.SendRefuse():
                await self._send_msg(act.to, RefuseMsg(act.task_hash, act.attempt))
            case A.SendHeartbeat():
                await self._send_msg(act.to, TaskHeartbeatMsg(act.task_hash, act.attempt))
            case A.SendResult():
                await self._send_msg(
                    act.to, TaskResultMsg(act.task_hash, act.attempt, act.result.to_dict())
                )
            case A.SendResultAck():
                await self._send_msg(act.to, ResultAckMsg(act.task_hash, act.attempt))
            case A.SendCancel():
                await self._send_msg(act.to, TaskCancelMsg(act.task_hash, act.attempt))
            case A.SendAbandon():
                await self._send_msg(act.to, AbandonMsg(act.task_hash, act.attempt, act.reason))
            case A.CountRequestReceived():
                m.requests_received.inc()
            case A.CountOfferReceived():
                m.offers_received.inc()
            case A.CountWin():
                m.wins.inc()
            case A.CountLoss():
                m.losses.inc()
            case A.ObserveScore():
                m.score.observe(act.score)
            case A.ObservePlacementDuration():
                m.duration.observe(act.seconds)
            case A.CountTaskSubmitted():
                m.submitted.labels(protocol=act.protocol).inc()
            case A.CountTaskFinished():
                m.finished.labels(state=act.state.value).inc()
                m.fuel.inc(act.fuel_used)
            case A.Ignored():
                log.debug(
                    "compute_event_ignored",
                    reason=act.reason,
                    task=act.task_hash.hex() if act.task_hash else None,
                    sender=act.sender,
                )
            case _:
                log.warning("compute_action_unknown", action=type(act).__name__)

    async def _publish(self, msg: Message) -> None:
        """Gossip to every member, and hand it to this node's own executor as well."""
        await self.mesh.publish(COMPUTE_TOPIC, encode_message(msg))
        if self.executor is not None:
            await self.dispatch(msg, self.did)

    async def _send_many(self, targets: frozenset[str], msg: Message) -> None:
        payload = encode_message(msg)
        for to in sorted(targets):
            if to == self.did:
                await self.dispatch(msg, self.did)
            else:
                await self.mesh.send_direct(to, COMPUTE_DIRECT_TOPIC, payload)

    async def _send_msg(self, to: str, msg: Message) -> None:
        if to == self.did:
            await self.dispatch(msg, self.did)
        else:
            await self.mesh.send_direct(to, COMPUTE_DIRECT_TOPIC, encode_message(msg))

    # --- timers and announcements ------------------------------------------------------------

    def _next_deadline(self) -> float:
        deadlines = [self.submitter.next_deadline()]
        if self.executor is not None:
            deadlines.append(self.executor.next_deadline())
        return min((d for d in deadlines if d is not None), default=float("inf"))

    async def _timer_loop(self) -> None:
        while True:
            deadline = self._next_deadline()
            with trio.move_on_at(
                deadline - self._offset if deadline != float("inf") else trio.current_time() + 3600
            ):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = self.now()
            if now >= self._next_deadline():
                acts = self.submitter.on_timer(now)
                if self.executor is not None:
                    acts += self.executor.on_timer(now)
                await self._execute(acts)

    async def _announce_loop(self) -> None:
        assert self.executor is not None
        interval = self.config.compute.announce_interval_s
        last = -float("inf")
        last_capacity = None
        announced_to = 0
        while True:
            now = self.now()
            cap = self.node.capacity
            if cap is not None and cap is not last_capacity:
                last_capacity = cap
                await self._execute(self.executor.update_capacity(cap, now))
            due = now - last >= interval
            # Submitters judge "could fit" against announced totals, so an early announcement
            # (capacity moved) is a courtesy: at most one per half interval.
            gap = max(MIN_ANNOUNCE_GAP_S, interval / 2)
            early = now - last >= gap and self.executor.significant_change(now)
            # A node that just joined (or a peer that just came back) has not heard us yet:
            # the first announcement at start usually goes out before any link is up.
            peers = self.mesh.peer_count()
            joined = peers > announced_to and now - last >= MIN_ANNOUNCE_GAP_S
            if due or early or joined:
                info = self.executor.announce_info(
                    now,
                    metrics=getattr(self.node, "load_metrics", None),
                    region=self.config.node.region or None,
                )
                self.registry.announce(info, now)
                await self.mesh.publish(
                    COMPUTE_TOPIC, encode_message(ExecutorAnnounceMsg(info.to_dict()))
                )
                last = now
                announced_to = peers
            elif peers < announced_to:
                announced_to = peers
            await trio.sleep(min(1.0, interval / 4))

    # --- running tasks -----------------------------------------------------------------------

    async def _run_task(
        self, spec: TaskSpec, attempt: int, reservation: Reservation | None = None
    ) -> None:
        assert self.executor is not None
        th = spec.task_hash
        started = self.now()
        run_dir = self.runs_dir / f"{th.hex()}-{attempt}"
        result: TaskResult
        try:
            await self._execute(self.executor.on_run_started(th, started))
            holders = [spec.submitter]
            try:
                if spec.code_blob is not None:
                    await self.blobnet.ensure(spec.code_blob, holders)
                for _name, h in spec.input_blobs:
                    await self.blobnet.ensure(h, holders)
            except BlobError as e:
                # Not the task's fault: give it back so it is placed elsewhere (or here again
                # once its blobs can be reached), instead of failing it.
                log.warning("task_blobs_unavailable", task=th.hex(), error=str(e))
                reason = f"blobs unavailable: {e}"[:200]
                await self._execute(self.executor.abandon(th, reason, self.now()))
                return
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            out_dir = run_dir / "out"
            gpus = reservation.gpu_device_ids if reservation is not None else ()
            run = await self._runner(spec, run_dir, out_dir, gpus)
            self._runs[th] = run
            self.metrics.running.inc()
            try:
                outcome: RunResult = await run.run()
            finally:
                self.metrics.running.dec()
                self._runs.pop(th, None)
            outputs = []
            produced = outcome.outputs if spec.runtime == "wasm" else list_outputs(out_dir)
            for path in produced:
                h, size = await trio.to_thread.run_sync(self.blobs.put_file, path)
                self.blobnet.added(h, size)
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
        await self._execute(self.executor.on_run_finished(th, result, self.now()))

    def _stage_exec(
        self, run_dir: Path, out_dir: Path, input_blobs: tuple[tuple[str, bytes], ...]
    ) -> Path:
        inputs = run_dir / "inputs"
        inputs.mkdir()
        for name, h in input_blobs:
            os.link(self.blobs.path(h), inputs / name)
        out_dir.mkdir()
        return inputs

    async def _runner(
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
                allowlist=frozenset(self.config.compute.exec_allowlist),
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
        job = WasmJob(
            module=module,
            fuel=spec.fuel,
            output_dir=out_dir,
            args=spec.args,
            memory_limit_bytes=memory,
            timeout_s=spec.timeout_s,
            inputs={name: self.blobs.path(h) for name, h in spec.input_blobs},
            stdout_cap=MAX_OUTPUT_BYTES,
            stderr_cap=MAX_OUTPUT_BYTES,
        )
        # Scratch (staged inputs) beside the blob store: inputs are hard-linked, not copied.
        return WasmRun(job, scratch_root=run_dir)

    # --- watchers ----------------------------------------------------------------------------

    def _event(self, act: A.StateChanged) -> None:
        self._seq += 1
        rec = act.record
        self._events.append(
            {
                "seq": self._seq,
                "task": act.task_hash.hex(),
                "state": act.new.value,
                "old": act.old.value if act.old is not None else None,
                "executor": rec.executor,
                "attempt": rec.attempt,
                "reason": rec.reason or None,
                "at": self.now(),
            }
        )
        self._changed.set()
        self._changed = trio.Event()

    # --- RPC ---------------------------------------------------------------------------------

    def register_rpc(self, rpc) -> None:
        rpc.register("compute.submit", self.rpc_submit)
        rpc.register("compute.status", self.rpc_status)
        rpc.register("compute.list", self.rpc_list)
        rpc.register("compute.result", self.rpc_result)
        rpc.register("compute.cancel", self.rpc_cancel)
        rpc.register("compute.watch", self.rpc_watch)
        rpc.register("compute.executors", self.rpc_executors)

    def _record(self, params: dict[str, Any]) -> TaskRecord:
        text = params.get("task")
        if not isinstance(text, str) or not text:
            raise InvalidParams("task: expected a hex task hash (or a unique prefix)")
        t = text.strip().lower()
        try:
            prefix = bytes.fromhex(t[: len(t) - len(t) % 2])
        except ValueError:
            raise InvalidParams(f"task: not hex: {text!r}") from None
        keys = [k for k in self.store.find_prefix("tasks", prefix) if k.hex().startswith(t)]
        if not keys:
            raise RpcError(-32004, f"no task {text} on this node")
        if len(keys) > 1:
            raise RpcError(-32005, f"task prefix {text} is ambiguous; give more characters")
        return TaskRecord.from_dict(self.store.get("tasks", keys[0]))

    def _view(self, rec: TaskRecord) -> dict[str, Any]:
        d = rec.to_dict(json_safe=True)
        view = {
            "task": rec.task_hash.hex(),
            "state": rec.state.value,
            "protocol": rec.spec.protocol,
            "attempt": rec.attempt,
            "executor": rec.executor,
            "reason": rec.reason or None,
            "offers": d.get("offers", []),
            "timings": self._timings(rec),
            "result": self._result_view(rec.result) if rec.result else None,
        }
        return view

    @staticmethod
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

    @staticmethod
    def _result_view(res: TaskResult) -> dict[str, Any]:
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

    async def rpc_submit(self, params: dict[str, Any]) -> dict[str, Any]:
        exec_argv = params.get("exec")
        module = b""
        if exec_argv is not None:
            if params.get("module"):
                raise InvalidParams("give either module or exec, not both")
            if (
                not isinstance(exec_argv, list)
                or not exec_argv
                or not all(isinstance(a, str) for a in exec_argv)
                or not exec_argv[0].startswith("/")
            ):
                raise InvalidParams("exec: expected [absolute command path, args...]")
        else:
            try:
                module = base64.b64decode(params.get("module") or "", validate=True)
            except (binascii.Error, TypeError):
                raise InvalidParams("module: expected base64") from None
            if not module:
                raise InvalidParams("module: empty (or give exec)")
            if len(module) > MAX_MODULE_BYTES:
                raise InvalidParams(f"module: larger than {MAX_MODULE_BYTES} bytes")
        fuel = params.get("fuel")
        if not isinstance(fuel, int) or isinstance(fuel, bool) or fuel <= 0:
            raise InvalidParams("fuel: expected a positive integer")
        args = params.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise InvalidParams("args: expected a list of strings")
        inputs = []
        for i, item in enumerate(params.get("inputs") or []):
            if not isinstance(item, dict):
                raise InvalidParams(f"inputs[{i}]: expected {{name, blob}}")
            try:
                h = parse_blob_id(str(item.get("blob", "")))
            except BlobError as e:
                raise InvalidParams(f"inputs[{i}].blob: {e}") from None
            if not self.blobs.has(h) and not self.blobnet.locations.holders(h):
                raise RpcError(-32006, f"inputs[{i}]: no node is known to hold blob {h.hex()}")
            inputs.append((str(item.get("name") or h.hex()[:16]), h))
        try:
            profile = (
                ResourceProfile.from_dict(params["profile"])
                if params.get("profile") is not None
                else None
            )
            hints = tuple(LocalityHint.from_dict(h) for h in params.get("hints") or [])
            if exec_argv is None:
                code = self.blobs.put(module)
                self.blobnet.added(code, len(module))
            spec = TaskSpec(
                code_blob=None if exec_argv is not None else code,
                runtime="exec" if exec_argv is not None else "wasm",
                submitter=self.did,
                fuel=fuel,
                nonce=os.urandom(16),
                args=tuple(exec_argv + args if exec_argv is not None else args),
                input_blobs=tuple(inputs),
                profile=profile,
                hints=hints,
                max_cost=params.get("max_cost"),
                timeout_s=params.get("timeout_s"),
                created_at=self.now(),
            )
        except IcnError as e:
            raise RpcError(INVALID_PARAMS, str(e)) from None
        await self._execute(self.submitter.submit(spec, self.now()))
        log.info("task_submitted", task=spec.task_hash.hex(), protocol=spec.protocol)
        return {"task": spec.task_hash.hex(), "protocol": spec.protocol}

    async def rpc_status(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._view(self._record(params))

    async def rpc_list(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = params.get("limit") or 50
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidParams("limit: expected 1-10000")
        state = params.get("state")
        states = [state] if state else None
        rows = [
            self._view(TaskRecord.from_dict(doc))
            for _, doc in self.store.scan("tasks", states=states, limit=limit)
        ]
        return {"tasks": rows, "counts": self.store.count("tasks")}

    async def rpc_result(self, params: dict[str, Any]) -> dict[str, Any]:
        rec = self._record(params)
        if rec.result is None:
            raise RpcError(
                -32007, f"task {rec.task_hash.hex()} has no result yet (state {rec.state.value})"
            )
        return self._result_view(rec.result)

    async def rpc_cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        rec = self._record(params)
        if rec.state in FINAL:  # nothing to stop (and the core no longer holds it)
            return {"task": rec.task_hash.hex(), "state": rec.state.value}
        await self._execute(self.submitter.cancel(rec.task_hash, self.now()))
        after = self._record({"task": rec.task_hash.hex()})
        return {"task": rec.task_hash.hex(), "state": after.state.value}

    async def rpc_watch(self, params: dict[str, Any]) -> dict[str, Any]:
        task = params.get("task")
        after = params.get("after") or 0
        timeout = params.get("timeout_s") or 10
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidParams("after: expected a sequence number (integer >= 0)")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
            raise InvalidParams("timeout_s: expected seconds (number >= 0)")
        timeout = min(float(timeout), MAX_WATCH_WAIT_S)
        if task is not None and not isinstance(task, str):
            raise InvalidParams("task: expected a hex task hash")
        full = self._record(params).task_hash.hex() if task else None

        def pick() -> list[dict[str, Any]]:
            return [
                e for e in self._events if e["seq"] > after and (full is None or e["task"] == full)
            ]

        events = pick()
        if not events and full is not None and not any(e["task"] == full for e in self._events):
            # Nothing in memory (e.g. after a restart): report the stored state once.
            rec = self._record(params)
            if after == 0:
                return {
                    "events": [
                        {
                            "seq": 0,
                            "task": full,
                            "state": rec.state.value,
                            "old": None,
                            "executor": rec.executor,
                            "attempt": rec.attempt,
                            "reason": rec.reason or None,
                            "at": rec.updated_at,
                        }
                    ],
                    "next": self._seq,
                }
        if not events:
            with trio.move_on_after(timeout):
                while not events:
                    await self._changed.wait()
                    events = pick()
        return {"events": events, "next": max([after, *(e["seq"] for e in events)])}

    async def rpc_executors(self, params: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        return {"executors": [info.to_dict(json_safe=True) for info in self.registry.live(now)]}


__all__ = ["FINAL", "ComputeMetrics", "ComputeService"]
