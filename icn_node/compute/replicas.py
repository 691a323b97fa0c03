"""Verifiable results, sans-IO: a task run on several distinct executors, accepted only when
their results agree.

WebAssembly under a fuel limit is deterministic: the same module, arguments and inputs give the
same outputs and use the same fuel on any honest executor (the sandbox offers no clock, no
randomness and no network; see docs/ARCHITECTURE.md). So ``icnctl compute submit --replicas N``
submits N replicas — specs equal but for their nonce, sharing a ``group`` id — which the
submitter places on N distinct executors, and accepts the group's result when they agree:

- all replicas finished and every completed one gives the same result (state, exit code,
  stdout, stderr, output blobs, fuel used), at least N of them: **agreed**;
- otherwise one more replica runs (at most :data:`MAX_EXTRA` extra), and a result given by a
  strict majority of at least two completed replicas wins: **majority** — the executors that
  reported something else are penalised (their effective trust drops);
- no majority after the extra replicas: **no agreement**, and nothing is accepted.

A replica that failed for a reason not its result's (lost, no executor) counts as missing, not
as a disagreement.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace

from icn_node.compute.records import TaskRecord
from icn_node.scheduler.tasks import TaskResult, TaskSpec, TaskState

__all__ = ["MAX_EXTRA", "Replicas", "Verdict", "signature", "verdict"]

MAX_EXTRA = 2
"""Replicas run beyond the ``replicas`` asked for, to settle a disagreement."""

Signature = tuple[object, ...]


def signature(result: TaskResult) -> Signature:
    """What two honest runs of the same task must agree on."""
    return (
        result.state.value,
        result.exit_code,
        result.stdout,
        result.stderr,
        result.output_blobs,
        result.fuel_used,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """``kind``: ``pending`` (replicas still running), ``agreed``, ``majority``, ``more``
    (a disagreement or too few results: run another replica) or ``no_agreement``.
    ``result``: the accepted result; ``minority``: executors whose completed result differs;
    ``agree``: how many replicas gave the accepted (or most common) result."""

    kind: str
    result: TaskResult | None = None
    minority: tuple[str, ...] = ()
    agree: int = 0


def verdict(want: int, records: list[TaskRecord], extra_left: bool) -> Verdict:
    """The group's verdict from its replicas' records (``want`` agreeing results needed)."""
    if any(not r.state.is_final for r in records):
        return Verdict("pending")
    done = [r for r in records if r.state is TaskState.COMPLETED and r.result is not None]
    counts = Counter(signature(r.result) for r in done if r.result is not None)
    if not counts:
        return Verdict("more" if extra_left else "no_agreement")
    (best, n), *rest = counts.most_common()
    second = rest[0][1] if rest else 0
    result = next(r.result for r in done if r.result is not None and signature(r.result) == best)
    minority = tuple(
        sorted(
            r.result.executor for r in done if r.result is not None and signature(r.result) != best
        )
    )
    if n >= want and not minority:
        return Verdict("agreed", result, (), n)
    if n >= 2 and n > second and (n >= want or not extra_left):
        return Verdict("majority", result, minority, n)
    if extra_left:
        return Verdict("more", None, (), n)
    return Verdict("no_agreement", None, (), n)


@dataclass(slots=True)
class _Group:
    want: int
    members: list[bytes]
    finals: dict[bytes, TaskRecord] = field(default_factory=dict)
    base: TaskSpec | None = None
    settled: bool = False

    @property
    def extra(self) -> int:
        return len(self.members) - self.want


class Replicas:
    """The replica groups this submitter has in flight (settled groups are forgotten)."""

    def __init__(self) -> None:
        self._groups: dict[bytes, _Group] = {}

    def track(self, spec: TaskSpec) -> None:
        """A replica submitted (or restored)."""
        if spec.group is None:
            return
        g = self._groups.setdefault(spec.group, _Group(spec.replicas, []))
        if spec.task_hash not in g.members:
            g.members.append(spec.task_hash)
        if g.base is None:
            g.base = spec

    def finished(self, rec: TaskRecord) -> None:
        """A replica reached its final state (or was restored final)."""
        g = self._groups.get(rec.spec.group) if rec.spec.group is not None else None
        if g is not None and rec.task_hash in g.members:
            g.finals[rec.task_hash] = rec

    def siblings(self, spec: TaskSpec) -> list[bytes]:
        """The other replicas of ``spec``'s group."""
        if spec.group is None or spec.group not in self._groups:
            return []
        return [h for h in self._groups[spec.group].members if h != spec.task_hash]

    def final(self, task_hash: bytes, group: bytes) -> TaskRecord | None:
        g = self._groups.get(group)
        return None if g is None else g.finals.get(task_hash)

    def decide(self, group: bytes) -> tuple[Verdict, TaskSpec | None]:
        """The group's verdict once every replica is final, and the spec of one more replica
        to run when it says ``more``. A settled group is forgotten."""
        g = self._groups.get(group)
        if g is None or g.settled or len(g.finals) < len(g.members):
            return Verdict("pending"), None
        v = verdict(g.want, [g.finals[h] for h in g.members], g.extra < MAX_EXTRA)
        if v.kind == "more":
            assert g.base is not None
            nonce = hashlib.sha256(group + len(g.members).to_bytes(2, "big")).digest()[:16]
            extra = replace(g.base, nonce=nonce)
            return v, extra
        g.settled = True
        del self._groups[group]
        return v, None
