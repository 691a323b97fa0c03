"""The opt-in host-command driver: allowlist, rlimits, GPUs, deadline, cancel."""

from __future__ import annotations

import pytest
import trio

from icn_node.errors import IcnError
from icn_node.runner.exec import (
    ExecJob,
    ExecRefusedError,
    ExecRun,
    resolve_command,
    run_exec,
)
from icn_node.runner.result import TaskState

ECHO, ENV, SH = "/bin/echo", "/usr/bin/env", "/bin/sh"
ALLOWED = frozenset({ECHO, ENV, SH})


def job(*argv: str, **kw) -> ExecJob:
    kw.setdefault("allowlist", ALLOWED)
    return ExecJob(argv=argv, **kw)


# ------------------------------------------------------------------------------ the allowlist


async def test_command_outside_the_allowlist_is_refused():
    with pytest.raises(ExecRefusedError, match="/bin/cat.*not in the operator allowlist"):
        await run_exec(job("/bin/cat", "/etc/passwd"))


async def test_empty_allowlist_means_the_driver_is_disabled():
    with pytest.raises(ExecRefusedError, match="disabled"):
        await run_exec(job(ECHO, "hi", allowlist=frozenset()))


def test_refusal_is_an_icn_error():
    assert issubclass(ExecRefusedError, IcnError)


def test_resolution_rules():
    allow = frozenset({"/bin/echo"})
    assert resolve_command("/bin/echo", allow, "/bin") == "/bin/echo"
    assert resolve_command("/bin/../bin/echo", allow, "/bin") == "/bin/echo"
    assert resolve_command("echo", allow, "/bin") == "/bin/echo"
    with pytest.raises(ExecRefusedError, match="relative path"):
        resolve_command("./echo", allow, "/bin")
    with pytest.raises(ExecRefusedError, match="not on PATH"):
        resolve_command("no-such-command-here", allow, "/bin")
    # Same file, different name: refused (multi-call binaries make symlink targets unsafe).
    with pytest.raises(ExecRefusedError, match="not in the operator allowlist"):
        resolve_command("/usr/bin/echo", allow, "/bin")


# ------------------------------------------------------------------------------ running


async def test_allowed_echo_runs_and_completes():
    r = await run_exec(job(ECHO, "hello", "world"))
    assert r.state is TaskState.COMPLETED, r.message
    assert (r.stdout, r.exit_code, r.fuel_used) == (b"hello world\n", 0, 0)


async def test_nonzero_exit_fails():
    r = await run_exec(job(SH, "-c", "echo oops >&2; exit 3"))
    assert (r.state, r.exit_code, r.message) == (TaskState.FAILED, 3, "exited with code 3")
    assert r.stderr == b"oops\n"


async def test_cuda_visible_devices_is_the_reserved_gpus():
    r = await run_exec(job(ENV, gpu_ids=("0", "2"), env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}))
    lines = r.stdout.decode().splitlines()
    assert "CUDA_VISIBLE_DEVICES=0,2" in lines
    r = await run_exec(job(ENV, env={"FOO": "bar"}))
    lines = r.stdout.decode().splitlines()
    assert "CUDA_VISIBLE_DEVICES=" in lines and "FOO=bar" in lines
    assert not any(line.startswith("HOME=") for line in lines)  # nothing inherited


async def test_rlimits_are_applied():
    r = await run_exec(
        job(
            SH,
            "-c",
            "ulimit -t; ulimit -v; ulimit -n; ulimit -c",
            cpu_seconds=7,
            memory_bytes=512 << 20,
            max_open_files=64,
        )
    )
    assert r.state is TaskState.COMPLETED, (r.message, r.stderr)
    assert r.stdout.decode().split() == ["7", str(512 << 10), "64", "0"]


async def test_timeout_kills_the_whole_process_group():
    started = trio.current_time()
    # The background sleep keeps stdout open: without the group kill the drain would hang.
    r = await run_exec(job(SH, "-c", "sleep 5 & sleep 5", timeout_s=0.2))
    assert r.state is TaskState.TIMED_OUT
    assert r.message == "wall-clock limit of 0.2 s reached"
    assert trio.current_time() - started < 1.0


async def test_stdout_is_capped():
    r = await run_exec(job(SH, "-c", "head -c 100000 /dev/zero", stdout_cap=1000))
    assert r.state is TaskState.COMPLETED
    assert (len(r.stdout), r.stdout_truncated) == (1000, True)


async def test_cancel_handle_reports_cancelled():
    run = ExecRun(job(SH, "-c", "sleep 5"))
    async with trio.open_nursery() as nursery:
        results = []

        async def keep():
            results.append(await run.run())

        nursery.start_soon(keep)
        await trio.sleep(0.1)
        run.cancel()
    assert results[0].state is TaskState.CANCELLED


async def test_caller_cancellation_kills_and_raises():
    with trio.move_on_after(0.1) as scope:
        await run_exec(job(SH, "-c", "sleep 5"))
    assert scope.cancelled_caught


async def test_allowlisted_but_missing_program_fails():
    r = await run_exec(job("/nonexistent/tool", allowlist=frozenset({"/nonexistent/tool"})))
    assert r.state is TaskState.FAILED
    assert r.message.startswith("cannot start /nonexistent/tool")


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("argv", ()),
        ("argv", "echo hi"),
        ("allowlist", "/bin/echo"),
        ("allowlist", frozenset({"echo"})),
        ("cpu_seconds", 0),
        ("memory_bytes", -1),
        ("timeout_s", -1),
        ("gpu_ids", ("0,1",)),
        ("env", {"": "x"}),
        ("stdout_cap", -1),
        ("max_open_files", 1),
    ],
)
def test_job_validation_names_the_field(field, value):
    kw = {"argv": (ECHO,), "allowlist": ALLOWED}
    kw[field] = value
    with pytest.raises(ValueError, match=f"^{field}:"):
        ExecJob(**kw)
