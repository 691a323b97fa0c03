"""The WebAssembly sandbox: every outcome state, the limits, and the file mounts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from icn_node.runner import RunControl, TaskState, WasmJob, WasmRun, run_wasm, run_wasm_blocking

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FUEL = 1_000_000
BIG_FUEL = 10**15  # never the limit within a test's real-time budget

# Shared WASI imports for the inline test modules.
WASI = """
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
"""


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def module(body: str, imports: str = "") -> bytes:
    """A test module: the shared WASI imports, then ``imports``, one page of memory, ``body``."""
    return f'(module {WASI} {imports} (memory (export "memory") 1) {body})'.encode()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def job(source: bytes, out: Path, **kw) -> WasmJob:
    kw.setdefault("fuel", FUEL)
    return WasmJob(module=source, output_dir=out, **kw)


# ------------------------------------------------------------------------------ completed


def test_sum_completes_with_its_stdout(out):
    r = run_wasm_blocking(job(example("sum.wat"), out))
    assert r.state is TaskState.COMPLETED, r.message
    assert (r.stdout, r.stderr, r.exit_code, r.message) == (b"5050\n", b"", 0, "")
    assert 0 < r.fuel_used < FUEL
    assert not r.stdout_truncated and r.outputs == ()


def test_sum_takes_n_from_argv(out):
    r = run_wasm_blocking(job(example("sum.wat"), out, args=("1000",)))
    assert r.stdout == b"500500\n"


def test_fuel_used_is_exact_and_repeatable(tmp_path):
    runs = [
        run_wasm_blocking(job(example("sum.wat"), tmp_path / f"out{i}", args=("1000",)))
        for i in range(2)
    ]
    assert runs[0].fuel_used == runs[1].fuel_used > 0
    # Fuel is checked at function entries and loop back-edges, so the work after the last
    # check is charged but cannot trap: fuel_used is enough, a little less may be too.
    used = runs[0].fuel_used
    assert (
        run_wasm_blocking(job(example("sum.wat"), tmp_path / "a", args=("1000",), fuel=used)).state
        is TaskState.COMPLETED
    )
    assert (
        run_wasm_blocking(
            job(example("sum.wat"), tmp_path / "b", args=("1000",), fuel=used // 2)
        ).state
        is TaskState.FUEL_EXHAUSTED
    )


def test_wordcount_reads_an_input_and_writes_an_output(tmp_path, out):
    blob = tmp_path / "blob"
    blob.write_bytes(b"hello world\n  two\tlines here\n")
    r = run_wasm_blocking(
        job(example("wordcount.wat"), out, args=("text", "counts.txt"), inputs={"text": blob})
    )
    assert r.state is TaskState.COMPLETED, (r.message, r.stderr)
    assert r.stdout == b"2 5 29\n"
    assert r.outputs == (out / "counts.txt",)
    assert (out / "counts.txt").read_bytes() == b"2 5 29\n"
    assert blob.read_bytes() == b"hello world\n  two\tlines here\n"


def test_outputs_are_sorted_regular_files_without_symlinks(out):
    imports = """
      (import "wasi_snapshot_preview1" "path_create_directory"
        (func $mkdir (param i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_symlink"
        (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
    """
    src = module(
        r"""
      (data (i32.const 100) "b.txt")
      (data (i32.const 110) "sub")
      (data (i32.const 120) "sub/a.txt")
      (data (i32.const 140) "link")
      (func $create (param $p i32) (param $n i32)
        (if (call $path_open (i32.const 4) (i32.const 0) (local.get $p) (local.get $n)
              (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0))
          (then (call $proc_exit (i32.const 1)))))
      (func (export "_start")
        (call $create (i32.const 100) (i32.const 5))
        (if (call $mkdir (i32.const 4) (i32.const 110) (i32.const 3))
          (then (call $proc_exit (i32.const 2))))
        (call $create (i32.const 120) (i32.const 9))
        (if (call $symlink (i32.const 100) (i32.const 5) (i32.const 4) (i32.const 140)
              (i32.const 4))
          (then (call $proc_exit (i32.const 3)))))
    """,
        imports,
    )
    r = run_wasm_blocking(job(src, out))
    assert r.state is TaskState.COMPLETED, r.message
    assert (out / "link").is_symlink()
    assert r.outputs == (out / "b.txt", out / "sub" / "a.txt")


# ------------------------------------------------------------------------------ failed


def test_nonzero_exit_fails_with_code_and_stderr(out):
    r = run_wasm_blocking(job(example("sum.wat"), out, args=("12x",)))
    assert r.state is TaskState.FAILED
    assert r.exit_code == 2
    assert r.message == "exited with code 2"
    assert r.stderr == b"sum: N must be a decimal number\n"


def test_unreachable_trap_fails_with_the_trap_message(out):
    r = run_wasm_blocking(job(module('(func (export "_start") unreachable)'), out))
    assert r.state is TaskState.FAILED
    assert r.exit_code is None
    assert r.message.startswith("trap (unreachable):")
    assert "unreachable" in r.message and "backtrace" not in r.message


def test_module_that_does_not_compile_fails_naming_the_problem(out):
    r = run_wasm_blocking(job(b'(module (func (export "_start") (result i32)))', out))
    assert r.state is TaskState.FAILED
    assert r.message.startswith("module does not compile:")
    assert "type mismatch" in r.message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (b"\0asm\x01\0\0\0garbage", "module does not compile:"),
        (b"(module (func", "module is not valid WAT:"),
        (b"\xff\xfe not text", "neither binary wasm"),
    ],
)
def test_bad_modules_fail_and_never_raise(out, source, expected):
    r = run_wasm_blocking(job(source, out))
    assert r.state is TaskState.FAILED
    assert expected in r.message


def test_module_without_start_fails(out):
    r = run_wasm_blocking(job(b'(module (func (export "main")))', out))
    assert (r.state, r.message) == (TaskState.FAILED, "module has no _start function to run")


def test_unknown_import_fails_naming_it(out):
    src = b'(module (import "env" "launch_missiles" (func)) (func (export "_start")))'
    r = run_wasm_blocking(job(src, out))
    assert r.state is TaskState.FAILED
    assert "launch_missiles" in r.message


def test_inputs_are_read_only(tmp_path, out):
    blob = tmp_path / "blob"
    blob.write_bytes(b"original")
    # Open the existing input for writing; then try to create a new file next to it.
    # Exit code = the WASI errno (0 would mean the sandbox let it through).
    src = module(r"""
      (data (i32.const 100) "data")
      (data (i32.const 110) "new")
      (data (i32.const 120) "PWNED")
      (func (export "_start") (local $e i32)
        (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 4)
                        (i32.const 8) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0)))
        (if (i32.eqz (local.get $e)) (then
          (i32.store (i32.const 8) (i32.const 120)) (i32.store (i32.const 12) (i32.const 5))
          (drop (call $fd_write (i32.load (i32.const 0)) (i32.const 8) (i32.const 1)
                  (i32.const 16)))
          (call $proc_exit (i32.const 0))))
        (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 110) (i32.const 3)
                        (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0)))
        (call $proc_exit (if (result i32) (local.get $e) (then (local.get $e))
                                                         (else (i32.const 100)))))
    """)
    r = run_wasm_blocking(job(src, out, inputs={"data": blob}))
    assert r.state is TaskState.FAILED
    assert r.exit_code not in (0, 100)  # both writes refused with an errno
    assert blob.read_bytes() == b"original"


def test_missing_input_fails_naming_it(tmp_path, out):
    r = run_wasm_blocking(
        job(example("wordcount.wat"), out, args=("x",), inputs={"x": tmp_path / "nope"})
    )
    assert r.state is TaskState.FAILED
    assert r.message.startswith("input 'x': cannot read")


def test_output_dir_must_start_empty(out):
    out.mkdir()
    (out / "stale").write_bytes(b"")
    r = run_wasm_blocking(job(example("sum.wat"), out))
    assert r.state is TaskState.FAILED
    assert "not empty" in r.message
    assert r.outputs == ()


# ------------------------------------------------------------------------------ memory

GROW_16_PAGES = module("""
  (func (export "_start")
    (if (i32.lt_s (memory.grow (i32.const 16)) (i32.const 0))
      (then (call $proc_exit (i32.const 12)))))
""")


def test_memory_limit_makes_grow_fail(out, tmp_path):
    assert run_wasm_blocking(job(GROW_16_PAGES, tmp_path / "free")).state is TaskState.COMPLETED
    r = run_wasm_blocking(job(GROW_16_PAGES, out, memory_limit_bytes=4 * 65536))
    # The guest sees memory.grow return -1 and decides; this one exits with code 12.
    assert (r.state, r.exit_code) == (TaskState.FAILED, 12)


def test_memory_limit_below_initial_memory_fails_at_instantiation(out):
    src = b'(module (memory 100) (func (export "_start")))'
    r = run_wasm_blocking(job(src, out, memory_limit_bytes=1 << 20))
    assert r.state is TaskState.FAILED
    assert "memory" in r.message and "limit" in r.message


# ------------------------------------------------------------------------------ output caps


def test_stdout_is_capped_and_flagged(out):
    # Writes 100 bytes 50 times.
    src = module("""
      (func (export "_start") (local $i i32)
        (i32.store (i32.const 8) (i32.const 1024)) (i32.store (i32.const 12) (i32.const 100))
        (loop $again
          (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const 50)))))
    """)
    r = run_wasm_blocking(job(src, out, stdout_cap=1234))
    assert r.state is TaskState.COMPLETED
    assert len(r.stdout) == 1234 and r.stdout_truncated
    assert r.stderr == b"" and not r.stderr_truncated


# ------------------------------------------------------------------------------ fuel, time, cancel


def test_infinite_loop_exhausts_its_fuel(out):
    r = run_wasm_blocking(job(example("infinite.wat"), out, fuel=10_000))
    assert r.state is TaskState.FUEL_EXHAUSTED
    assert r.fuel_used == 10_000
    assert r.message == "fuel limit of 10000 exhausted"


def test_blocking_core_enforces_the_timeout_itself(out):
    r = run_wasm_blocking(job(example("infinite.wat"), out, fuel=BIG_FUEL, timeout_s=0.2))
    assert r.state is TaskState.TIMED_OUT
    assert 0.2 <= r.wall_time_s < 1.0


def test_sleeping_guest_cannot_block_the_worker(out):
    # poll_oneoff with a 30 s clock subscription: stubbed to ENOTSUP (58) at once.
    poll = """
      (import "wasi_snapshot_preview1" "poll_oneoff"
        (func $poll (param i32 i32 i32 i32) (result i32)))
    """
    src = module(
        """
      (func (export "_start")
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 30000000000))
        (call $proc_exit
          (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256))))
    """,
        poll,
    )
    started = time.monotonic()
    r = run_wasm_blocking(job(src, out))
    assert (r.state, r.exit_code) == (TaskState.FAILED, 58)
    assert time.monotonic() - started < 1.0


def test_control_stopped_before_the_run_gives_that_state(out):
    control = RunControl()
    control.stop(TaskState.CANCELLED)
    control.stop(TaskState.TIMED_OUT)  # the first reason wins
    r = run_wasm_blocking(job(example("sum.wat"), out), control)
    assert (r.state, r.fuel_used, r.stdout) == (TaskState.CANCELLED, 0, b"")


async def test_trio_driver_times_out_a_real_deadline(out):
    r = await run_wasm(job(example("infinite.wat"), out, fuel=BIG_FUEL, timeout_s=0.2))
    assert r.state is TaskState.TIMED_OUT
    assert r.message == "wall-clock limit of 0.2 s reached"
    assert 0.2 <= r.wall_time_s < 1.0


async def test_trio_driver_completes(out):
    r = await run_wasm(job(example("sum.wat"), out, timeout_s=5))
    assert (r.state, r.stdout) == (TaskState.COMPLETED, b"5050\n")


async def test_cancel_handle_stops_one_task_and_reports_cancelled(tmp_path):
    doomed = WasmRun(job(example("infinite.wat"), tmp_path / "a", fuel=BIG_FUEL))
    other = WasmRun(job(example("infinite.wat"), tmp_path / "b", fuel=BIG_FUEL, timeout_s=0.3))
    results = {}

    async def keep(name, run):
        results[name] = await run.run()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep, "doomed", doomed)
        nursery.start_soon(keep, "other", other)
        await trio.sleep(0.1)
        doomed.cancel()
    assert results["doomed"].state is TaskState.CANCELLED
    assert results["other"].state is TaskState.TIMED_OUT  # untouched by the other's cancel


async def test_cancel_before_run_returns_cancelled(out):
    run = WasmRun(job(example("sum.wat"), out))
    run.cancel()
    r = await run.run()
    assert r.state is TaskState.CANCELLED


async def test_caller_cancellation_stops_the_thread_then_raises(out):
    run = WasmRun(job(example("infinite.wat"), out, fuel=BIG_FUEL))
    with trio.move_on_after(0.1) as scope:
        await run.run()
        pytest.fail("run() returned under a cancelled scope")
    assert scope.cancelled_caught
    assert run.done  # the worker was stopped and joined before Cancelled propagated


async def test_run_in_an_already_cancelled_scope_returns_promptly(out):
    run = WasmRun(job(example("infinite.wat"), out, fuel=BIG_FUEL))
    started = trio.current_time()
    with trio.CancelScope() as scope:
        scope.cancel()
        await run.run()
    assert run.done and trio.current_time() - started < 1.0


def test_scratch_dir_is_always_removed(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    for source, fuel in ((example("sum.wat"), FUEL), (example("infinite.wat"), 1000)):
        run_wasm_blocking(
            job(source, tmp_path / f"out{fuel}", fuel=fuel, inputs={"b": blob}),
            scratch_root=scratch,
        )
    assert list(scratch.iterdir()) == []


async def test_a_run_runs_once(out):
    run = WasmRun(job(example("sum.wat"), out))
    await run.run()
    with pytest.raises(RuntimeError):
        await run.run()


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("module", b""),
        ("module", "text"),
        ("fuel", 0),
        ("fuel", 2**64),
        ("fuel", True),
        ("memory_limit_bytes", 0),
        ("timeout_s", 0),
        ("timeout_s", float("inf")),
        ("args", "not-a-tuple"),
        ("args", ("a\0b",)),
        ("inputs", {"../x": Path("/etc/hosts")}),
        ("inputs", {"a/b": Path("/etc/hosts")}),
        ("stdout_cap", -1),
        ("stderr_cap", 1.5),
        ("env", {"A=B": "c"}),
        ("env", {"A": 1}),
        ("output_dir", 42),
    ],
)
def test_job_validation_names_the_field(tmp_path, field, value):
    kw = {"module": b"(module)", "fuel": 1, "output_dir": tmp_path}
    kw[field] = value
    with pytest.raises(ValueError, match=f"^{field}:"):
        WasmJob(**kw)


def test_job_freezes_its_mappings(tmp_path):
    env = {"A": "1"}
    j = WasmJob(module=b"(module)", fuel=1, output_dir=str(tmp_path), env=env, args=["x"])
    env["B"] = "2"
    assert dict(j.env) == {"A": "1"} and j.args == ("x",) and j.output_dir == tmp_path
    with pytest.raises(TypeError):
        j.env["C"] = "3"


# ------------------------------------------------------------------------- deterministic runs


CLOCK = """(import "wasi_snapshot_preview1" "clock_time_get"
  (func $clock (param i32 i64 i32) (result i32)))
(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))"""


def test_a_deterministic_run_refuses_clocks_and_randomness(out):
    src = module('(func (export "_start"))', CLOCK)
    r = run_wasm_blocking(job(src, out, deterministic=True))
    assert r.state is TaskState.FAILED
    assert r.message == (
        "a replicated task must be deterministic; the module imports clock_time_get, random_get"
    )
    # The same module runs when determinism is not asked for.
    assert run_wasm_blocking(job(src, out)).state is TaskState.COMPLETED


def test_a_deterministic_run_of_an_honest_module_repeats_exactly(tmp_path):
    runs = [
        run_wasm_blocking(job(example("sum.wat"), tmp_path / f"o{k}", deterministic=True))
        for k in range(3)
    ]
    assert {(r.stdout, r.fuel_used, r.state) for r in runs} == {
        (runs[0].stdout, runs[0].fuel_used, TaskState.COMPLETED)
    }


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "/etc/passwd", "../outputs/x"])
def test_paths_outside_the_mounts_are_refused(out, path):
    """``path_open`` relative to the inputs directory (fd 3) cannot climb out of it: WASI
    refuses with an error, which the module turns into its exit code."""
    data = path.encode()
    body = f"""
      (data (i32.const 64) "{data.decode()}")
      (func (export "_start")
        (call $proc_exit
          (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const {len(data)})
            (i32.const 0) (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 200))))"""
    r = run_wasm_blocking(job(module(body), out))
    assert r.state is TaskState.FAILED and r.exit_code not in (None, 0), r
    assert r.outputs == ()
