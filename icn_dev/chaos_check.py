"""The history check of a chaos run, in the spirit of Jepsen: what the nodes themselves recorded,
read back after the run, against what the driver was told when it submitted.

Inputs are plain data, so the check runs the same on a real run and on a hand-made history
(``tests/test_chaos_check.py`` feeds it broken ones):

* ``acked``: every task whose ``compute.submit`` answered, with its submitter and argument;
  ``indeterminate``: submissions whose answer never came (the node died under them). Their task
  may or may not exist; one that shows up in the records is counted, never called lost.
* ``records``: each submitter's own task rows (``compute.list``, the views ``icnctl`` prints).
* ``watch``: the state changes each submitter reported through ``compute.watch`` while the run
  went on (a log in the submitter's memory: changes made between the last poll and a crash of
  that submitter are not seen; the final state is then read from ``records``).
* ``jobs``: each executor's job rows (its SQLite ``jobs`` table, decoded as ``JobRecord``),
  read after the executors stopped; ``caps``: each executor's advertised cores and memory;
  ``deaths``: when each executor process died (SIGKILL, or the final stop), on the driver's
  wall clock, which is the clock the daemons stamp records with.

What it finds:

* **lost**: an acknowledged task its submitter has no record of;
* **stuck**: a task not in a final state at the end;
* **completed twice**: a task whose submitter reported more than one change into a final state,
  a change out of a final state, or that two submitters both hold;
* **wrong results**: a completed task whose output is not the expected one, or whose result
  names an executor that has no finished, completed job for it (a result without a run);
* **duplicate runs**: more than one executor finished a completed run of one task. Expected when
  the submitter gave up on an executor (lease lapse, claim timeout, abandon) and claimed
  another: every executor it claimed is in the record's ``claimed``. Counted apart; a completed
  run by an executor the submitter never claimed, or two runs when it claimed only one, is a
  violation (unexplained);
* **capacity violations**: at some instant the firm reservations (jobs reserved or running) of
  an executor held more cores or memory than it advertised. Each job is an interval from
  ``accepted_at`` to the end of its reservation: the result's ``finished_at`` for a finished
  job, else the first death of the executor after ``accepted_at`` (an ``abandoned`` row is
  written at the restart, after the reservation died with the process), capped by the row's
  ``updated_at``. Limits: one row per (executor, task), so an earlier job of the same task on
  the same executor is overwritten (a lost executor is excluded from the task's later rounds,
  so this should not happen); the run's ``finished_at`` is stamped a moment before the
  reservation is released (overlaps shorter than that are missed, never invented); tentative
  reservations (offers in flight) are not persisted and not checked.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from icn_node.compute.records import JobRecord, JobState
from icn_node.scheduler.tasks import TaskState

FINAL = frozenset(s.value for s in TaskState if s.is_final)
EPS = 1e-9
EXAMPLES = 5  # violations listed by name per kind


@dataclass(frozen=True)
class Submission:
    submitter: str
    n: int
    at: float
    task: str | None = None  # None: the answer never came


@dataclass(frozen=True)
class Cap:
    cpu_cores: float
    memory_mb: int


@dataclass
class Report:
    tasks: int = 0  # acknowledged submissions
    indeterminate: int = 0
    indeterminate_found: int = 0  # of those, tasks the submitter did record
    states: Counter[str] = field(default_factory=Counter)
    failed_reasons: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    completed_twice: list[str] = field(default_factory=list)
    wrong_results: list[str] = field(default_factory=list)
    duplicate_runs: int = 0  # completed runs beyond the first, over all tasks
    unexplained_duplicates: list[str] = field(default_factory=list)
    replaced: int = 0  # tasks claimed from more than one executor
    capacity_violations: list[str] = field(default_factory=list)
    peak_cores: dict[str, float] = field(default_factory=dict)
    job_states: Counter[str] = field(default_factory=Counter)
    watch_events: int = 0
    watch_gaps: int = 0  # state changes the watch log dropped before they were read

    @property
    def violations(self) -> dict[str, list[str]]:
        return {
            "lost": self.lost,
            "stuck": self.stuck,
            "completed twice": self.completed_twice,
            "wrong results": self.wrong_results,
            "unexplained duplicate runs": self.unexplained_duplicates,
            "capacity violations": self.capacity_violations,
        }

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


def check(
    submissions: Sequence[Submission],
    records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    watch: Mapping[str, Sequence[Mapping[str, Any]]],
    jobs: Mapping[str, Sequence[JobRecord]],
    caps: Mapping[str, Cap],
    deaths: Mapping[str, Sequence[float]],
    dids: Mapping[str, str],
    expected_stdout: Callable[[int], str],
) -> Report:
    """The report of one run (see the module docstring); ``dids`` maps DID → executor name."""
    r = Report()
    holders: dict[str, list[str]] = defaultdict(list)
    for submitter, rows in records.items():
        for task in rows:
            holders[task].append(submitter)
    acked = {s.task: s for s in submissions if s.task is not None}
    r.tasks = len(acked)

    for task, s in acked.items():
        if s.submitter not in holders.get(task, ()):
            r.lost.append(f"{task[:16]} (submitted to {s.submitter} at {s.at:.3f})")
    lost_args = {(s.submitter, s.n) for s in submissions if s.task is None}
    r.indeterminate = len(lost_args)
    seen_args = {
        (sub, _arg(row))
        for sub, rows in records.items()
        for task, row in rows.items()
        if task not in acked
    }
    r.indeterminate_found = len(lost_args & seen_args)

    runs = _completed_runs(jobs)
    for task, where in holders.items():
        if len(where) > 1:
            r.completed_twice.append(f"{task[:16]} held by {', '.join(sorted(where))}")
        row = records[where[0]][task]
        state = row["state"]
        r.states[state] += 1
        claimed = {dids.get(d, d) for d in row.get("claimed", ())}
        if len(claimed) > 1:
            r.replaced += 1
        if state not in FINAL:
            r.stuck.append(f"{task[:16]} {state} on {where[0]}")
            continue
        if state != "completed":
            res = row.get("result") or {}
            r.failed_reasons[row.get("reason") or res.get("message") or state] += 1
        else:
            _check_result(r, task, row, runs, dids, expected_stdout)
        ran = runs.get(task, set())
        r.duplicate_runs += max(0, len(ran) - 1)
        if ran - claimed or (len(ran) > 1 and len(claimed) < 2):
            r.unexplained_duplicates.append(
                f"{task[:16]}: completed runs on {', '.join(sorted(ran))}, "
                f"claimed {', '.join(sorted(claimed)) or 'none'}"
            )

    for task, events in watch.items():
        r.watch_events += len(events)
        into = [e for e in events if e["state"] in FINAL]
        out_of = [e for e in events if e.get("old") in FINAL]
        if len(into) > 1 or out_of:
            seq = " → ".join(f"{e.get('old')}→{e['state']}" for e in events)
            r.completed_twice.append(f"{task[:16]}: {seq}")

    for name, held in jobs.items():
        r.job_states.update(job.state.value for job in held)
        cap = caps.get(name)
        if cap is not None:
            _check_capacity(r, name, held, cap, sorted(deaths.get(name, ())))
    return r


def _arg(row: Mapping[str, Any]) -> int | None:
    return row.get("n")


def _completed_runs(jobs: Mapping[str, Sequence[JobRecord]]) -> dict[str, set[str]]:
    """Task → executors holding a finished job with a completed result for it."""
    out: dict[str, set[str]] = defaultdict(set)
    for name, rows in jobs.items():
        for job in rows:
            if job.state is JobState.FINISHED and job.result is not None:
                if job.result.state is TaskState.COMPLETED:
                    out[job.task_hash.hex()].add(name)
    return out


def _check_result(
    r: Report,
    task: str,
    row: Mapping[str, Any],
    runs: Mapping[str, set[str]],
    dids: Mapping[str, str],
    expected_stdout: Callable[[int], str],
) -> None:
    res = row.get("result") or {}
    n = _arg(row)
    if n is not None and res.get("stdout") != expected_stdout(n):
        r.wrong_results.append(f"{task[:16]}: stdout {res.get('stdout')!r} for N = {n}")
    executor = dids.get(res.get("executor", ""))
    if executor is not None and executor not in runs.get(task, ()):
        r.wrong_results.append(f"{task[:16]}: result from {executor}, which has no completed run")


def _check_capacity(
    r: Report, name: str, rows: Sequence[JobRecord], cap: Cap, deaths: Sequence[float]
) -> None:
    points: list[tuple[float, int, float, int, str]] = []
    for job in rows:
        if job.reservation is None:
            continue
        start = job.accepted_at
        death = next((t for t in deaths if t >= start), math.inf)
        if job.state is JobState.FINISHED and job.result is not None and job.result.finished_at:
            end = job.result.finished_at
        elif job.state in (JobState.RESERVED, JobState.RUNNING):
            end = death  # held until the process died (or still held)
        else:  # abandoned: at the restart, or given back while the process lived
            end = min(death, job.updated_at)
        profile = job.reservation.profile
        cores = profile.cpu_cores or 0.0
        mem = profile.memory_mb or 0
        task = job.task_hash.hex()[:16]
        points.append((start, 1, cores, mem, task))
        points.append((max(end, start), 0, -cores, -mem, task))
    points.sort()  # at one instant, ends (0) before starts (1)
    cores_now, mem_now, peak = 0.0, 0, 0.0
    open_: set[str] = set()
    for t, kind, dc, dm, task in points:
        cores_now += dc
        mem_now += dm
        if kind:
            open_.add(task)
        else:
            open_.discard(task)
        peak = max(peak, cores_now)
        if cores_now > cap.cpu_cores + EPS or mem_now > cap.memory_mb:
            if len(r.capacity_violations) < 10 * EXAMPLES:
                r.capacity_violations.append(
                    f"{name} at {t:.3f}: {cores_now:g} cores / {mem_now} MB held "
                    f"(cap {cap.cpu_cores:g} / {cap.memory_mb}) by {', '.join(sorted(open_))}"
                )
    r.peak_cores[name] = peak


__all__ = ["Cap", "Report", "Submission", "check"]
