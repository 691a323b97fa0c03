"""The chaos run's history check (``icn_dev.chaos_check``) finds what it claims to find: each
kind of violation, planted in an otherwise clean hand-made history, is reported, and the clean
history passes. A checker that never fails proves nothing."""

from __future__ import annotations

from typing import Any

from icn_dev.chaos_check import Cap, Submission, check
from icn_node.compute.records import JobRecord, JobState
from icn_node.scheduler import ResourceProfile
from icn_node.scheduler.resources import Reservation
from icn_node.scheduler.tasks import TaskState
from tests.compute.builders import did, result, spec

EXECUTORS = {did("A"): "a", did("B"): "b"}
CAPS = {"a": Cap(2.0, 512), "b": Cap(2.0, 512)}


def stdout(n: int) -> str:
    return f"{n}!\n"


class History:
    """A clean history of tasks t0.. submitted to ``sub``, each run once on ``a``, in turn.
    Specs beyond ``count`` (t3, t4, ...) belong to other submitters' tasks, for jobs that only
    take capacity."""

    def __init__(self, count: int = 3) -> None:
        self.specs = [spec(f"t{k}") for k in range(count + 3)]
        self.ids = [s.task_hash.hex() for s in self.specs[:count]]
        self.submissions = [Submission("sub", k, float(k), self.ids[k]) for k in range(count)]
        self.rows: dict[str, dict[str, dict[str, Any]]] = {
            "sub": {
                t: {
                    "task": t,
                    "state": "completed",
                    "attempt": 1,
                    "n": k,
                    "claimed": [did("A")],
                    "result": {"executor": did("A"), "stdout": stdout(k)},
                }
                for k, t in enumerate(self.ids)
            }
        }
        self.jobs: dict[str, list[JobRecord]] = {"a": [], "b": []}
        for k in range(count):
            self.add_job("a", k, start=10.0 * k, end=10.0 * k + 5)
        self.watch: dict[str, list[dict[str, Any]]] = {
            t: [{"state": "negotiating", "old": None}, {"state": "completed", "old": "running"}]
            for t in self.ids
        }
        self.deaths: dict[str, list[float]] = {"a": [1000.0], "b": [1000.0]}

    def add_job(
        self,
        executor: str,
        k: int,
        start: float,
        end: float,
        state: JobState = JobState.FINISHED,
        cores: float = 1.0,
    ) -> None:
        finished = state is JobState.FINISHED
        res = result(next(d for d, n in EXECUTORS.items() if n == executor), t0=start, t1=end)
        profile = ResourceProfile(cpu_cores=cores, memory_mb=64)
        self.jobs[executor].append(
            JobRecord(
                spec=self.specs[k],
                attempt=1,
                state=state,
                reservation=Reservation(k, profile),
                result=res if finished else None,
                accepted_at=start,
                updated_at=end,
            )
        )

    def check(self):
        return check(
            self.submissions,
            self.rows,
            self.watch,
            self.jobs,
            CAPS,
            self.deaths,
            EXECUTORS,
            stdout,
        )


def only(report, kind: str) -> list[str]:
    """The violations of ``kind``, after checking that no other kind was reported."""
    others = {k: v for k, v in report.violations.items() if v and k != kind}
    assert not others, others
    return report.violations[kind]


def test_a_clean_history_passes():
    r = History().check()
    assert r.ok, r.violations
    assert r.tasks == 3 and r.states == {"completed": 3}
    assert r.peak_cores == {"a": 1.0, "b": 0.0}


def test_an_acknowledged_task_missing_from_its_submitter_is_lost():
    h = History()
    del h.rows["sub"][h.ids[1]]
    del h.watch[h.ids[1]]
    assert len(only(h.check(), "lost")) == 1


def test_a_task_left_running_is_stuck():
    h = History()
    h.rows["sub"][h.ids[0]]["state"] = "running"
    assert len(only(h.check(), "stuck")) == 1


def test_two_changes_into_a_final_state_are_completed_twice():
    h = History()
    h.watch[h.ids[0]].append({"state": "failed", "old": "negotiating"})
    assert len(only(h.check(), "completed twice")) == 1


def test_leaving_a_final_state_is_completed_twice():
    h = History()
    h.watch[h.ids[2]].append({"state": "negotiating", "old": "completed"})
    assert len(only(h.check(), "completed twice")) == 1


def test_one_task_held_by_two_submitters_is_completed_twice():
    h = History()
    h.rows["other"] = {h.ids[0]: dict(h.rows["sub"][h.ids[0]])}
    assert len(only(h.check(), "completed twice")) == 1


def test_a_wrong_output_and_a_result_without_a_run_are_wrong_results():
    h = History()
    h.rows["sub"][h.ids[0]]["result"]["stdout"] = "41\n"
    h.rows["sub"][h.ids[1]]["result"]["executor"] = did("B")  # b never ran it
    assert len(only(h.check(), "wrong results")) == 2


def test_a_second_run_is_explained_only_when_the_submitter_claimed_both():
    h = History()
    h.add_job("b", 0, start=0.0, end=4.0)
    h.add_job("b", 1, start=10.0, end=14.0)
    h.rows["sub"][h.ids[0]]["claimed"] = [did("A"), did("B")]  # lost a, then claimed b
    r = h.check()
    assert r.duplicate_runs == 2
    assert r.replaced == 1
    assert len(only(r, "unexplained duplicate runs")) == 1
    assert h.ids[1][:16] in r.unexplained_duplicates[0]


def test_overlapping_reservations_beyond_the_cap_are_violations():
    h = History()
    h.add_job("a", 1, start=2.0, end=3.0, cores=1.5)  # beside t0's 1 core on a 2-core cap
    violations = only(h.check(), "capacity violations")
    assert violations and violations[0].startswith("a at 2.000: 2.5 cores")


def test_a_job_abandoned_at_restart_ends_when_its_process_died():
    """The abandoned row is written at the restart (updated_at 20), but the reservation died
    with the process at 6: a job accepted at 8 does not overlap it."""
    h = History()
    h.add_job("b", 3, start=0.0, end=20.0, state=JobState.ABANDONED, cores=1.0)
    h.add_job("b", 4, start=8.0, end=9.0, cores=2.0)
    h.deaths["b"] = [6.0, 1000.0]
    assert h.check().ok
    h.deaths["b"] = [1000.0]  # had it lived until the restart, they would overlap
    assert only(h.check(), "capacity violations")


def test_a_job_still_running_at_the_end_holds_until_the_last_stop():
    h = History()
    h.add_job("b", 3, start=0.0, end=0.0, state=JobState.RUNNING, cores=1.5)
    h.add_job("b", 4, start=50.0, end=51.0, cores=1.0)
    assert only(h.check(), "capacity violations")


def test_an_unanswered_submission_that_was_recorded_is_counted_not_lost():
    h = History()
    h.submissions[2] = Submission("sub", 2, 2.0)  # the answer never came
    r = h.check()
    assert r.ok, r.violations
    assert (r.tasks, r.indeterminate, r.indeterminate_found) == (2, 1, 1)


def test_failures_are_counted_by_reason():
    h = History()
    h.rows["sub"][h.ids[0]].update(state="failed", reason="no_executor", result=None)
    h.jobs["a"].pop(0)
    h.rows["sub"][h.ids[1]].update(state="fuel_exhausted", reason=None)
    h.rows["sub"][h.ids[1]]["result"]["message"] = "fuel limit of 5 exhausted"
    r = h.check()
    assert r.ok, r.violations
    assert r.failed_reasons == {"no_executor": 1, "fuel limit of 5 exhausted": 1}
    assert TaskState.COMPLETED.value in r.states
