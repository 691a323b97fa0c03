"""``icnctl compute …``: submit tasks, follow them, fetch results, cancel.

Options are turned into a resource profile and locality hints here, with the scheduler's own
types, so a bad value is a usage error (exit 2) naming the option before anything is sent.
The scheduler is imported by the functions that build them, not by this module: every
``icnctl`` call imports this module, and only ``submit`` needs the scheduler.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from icn_node.scheduler import ResourceProfile

from .blob import get_to_file, put_file, resolve_blob
from .common import call, emit, short_did

app = typer.Typer(
    help="Compute tasks: submit, status, list, result, cancel, watch.\n\n"
    "Example: icnctl compute submit examples/sum.wat --arg 1000 --cpu 1 --wait",
    no_args_is_help=True,
    add_completion=False,
)

PROFILES = {"minimal", "compute-heavy", "gpu"}


def _bad(option: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=option)


def _hash_arg(value: str, option: str) -> str:
    v = value.strip().lower()
    if not v or len(v) > 64 or any(c not in "0123456789abcdef" for c in v):
        raise _bad(option, f"expected a hex task or blob hash, got {value!r}")
    return v


def build_profile(
    profile: str | None,
    cpu: float | None,
    memory: int | None,
    storage: int | None,
    network: float | None,
    gpu_memory: float | None,
    gpu_cc: str | None,
    gpu_count: int | None,
    duration: float | None,
) -> ResourceProfile | None:
    """The resource profile the options describe, or None (the legacy protocol)."""
    from icn_node.errors import ResourceError
    from icn_node.scheduler import ComputeCapability, GpuSpec, ResourceProfile

    if profile is not None and profile not in PROFILES:
        raise _bad("--profile", f"one of {', '.join(sorted(PROFILES))}; got {profile!r}")
    fields: dict[str, Any] = {}
    if profile == "minimal":
        fields = ResourceProfile.minimal().to_dict()
    elif profile == "compute-heavy":
        fields = ResourceProfile.compute_heavy(4.0, 8192).to_dict()
    elif profile == "gpu":
        fields = ResourceProfile.gpu(24, "sm_70").to_dict()
    explicit = {
        "cpu_cores": cpu,
        "memory_mb": memory,
        "storage_mb": storage,
        "network_mbps": network,
        "duration_estimate": duration,
    }
    fields.update({k: v for k, v in explicit.items() if v is not None})
    gpu_given = [x is not None for x in (gpu_memory, gpu_cc, gpu_count)]
    if any(gpu_given):
        base = fields.get("gpu_spec") or {}
        mem = gpu_memory if gpu_memory is not None else base.get("memory_gb")
        cc = gpu_cc if gpu_cc is not None else base.get("compute_capability")
        if mem is None or cc is None:
            raise _bad("--gpu-memory/--gpu-cc", "a GPU need takes both --gpu-memory and --gpu-cc")
        try:
            spec = GpuSpec(
                float(mem),
                ComputeCapability.parse(cc),
                gpu_count if gpu_count is not None else base.get("device_count", 1),
            )
        except (ResourceError, ValueError) as e:
            raise _bad("--gpu-*", str(e)) from None
        fields["gpu_spec"] = spec.to_dict()
    if not fields:
        return None
    try:
        return ResourceProfile.from_dict(fields)
    except ResourceError as e:
        raise _bad("--profile/--cpu/--memory/…", str(e)) from None


def build_hints(
    ctx: typer.Context,
    prefer: list[str],
    avoid: list[str],
    region: str | None,
    require_region: str | None,
    data: list[str],
    colocate: str | None,
    max_rtt: float | None,
    min_bandwidth: float | None,
    max_transfer: int | None = None,
) -> list[dict[str, Any]]:
    from icn_node.errors import ResourceError
    from icn_node.scheduler import (
        AvoidDid,
        ColocateWith,
        DataLocality,
        MinimizeTransfer,
        PreferDid,
        PreferHighBandwidth,
        PreferLowLatency,
        PreferRegion,
        RequireRegion,
    )

    hints: list[Any] = []
    try:
        hints += [PreferDid(d) for d in prefer]
        hints += [AvoidDid(d) for d in avoid]
        if region:
            hints.append(PreferRegion(region))
        if require_region:
            hints.append(RequireRegion(require_region))
        blobs = tuple(bytes.fromhex(resolve_blob(ctx, d)[1]) for d in data)
        if blobs:
            hints.append(DataLocality(blobs))
        if max_transfer is not None:
            # Covers the task's module and inputs too (the request carries them as its data).
            hints.append(MinimizeTransfer(blobs, max_transfer))
        if colocate:
            hints.append(ColocateWith(bytes.fromhex(_hash_arg(colocate, "--colocate").zfill(64))))
        if max_rtt is not None:
            hints.append(PreferLowLatency(max_rtt))
        if min_bandwidth is not None:
            hints.append(PreferHighBandwidth(min_bandwidth))
    except (ResourceError, ValueError) as e:
        raise _bad("locality hint", str(e)) from None
    return [h.to_dict(json_safe=True) for h in hints]


def _progress(event: dict[str, Any]) -> str:
    state = event["state"]
    if state == "claiming" and event.get("executor"):
        return f"claiming {short_did(event['executor'])}"
    if state == "running" and event.get("executor"):
        return f"running on {short_did(event['executor'])}"
    return state


def wait_for(ctx: typer.Context, task: str, quiet: bool = False) -> dict[str, Any]:
    """Follow a task's state changes until it is final; returns its status."""
    from icn_node.scheduler.tasks import FINAL_STATES

    final = {s.value for s in FINAL_STATES}
    after = 0
    shown: list[str] = []
    tty = sys.stderr.isatty()
    while True:
        page = call(ctx, "compute.watch", {"task": task, "after": after, "timeout_s": 10})
        after = page["next"]
        for ev in page["events"]:
            step = _progress(ev)
            if not shown or shown[-1] != step:
                shown.append(step)
                if not quiet:
                    if tty:
                        sys.stderr.write("\r\033[K" + " → ".join(shown))
                    else:
                        sys.stderr.write(("→ " if len(shown) > 1 else "") + step + "\n")
                    sys.stderr.flush()
            if ev["state"] in final:
                if tty and not quiet:
                    sys.stderr.write("\n")
                return call(ctx, "compute.status", {"task": task})


def _render_status(st: dict[str, Any]) -> str:
    lines = [
        f"task:      {st['task']}",
        f"state:     {st['state']}" + (f" ({st['reason']})" if st.get("reason") else ""),
        f"protocol:  {st['protocol']}",
        f"attempt:   {st['attempt']}",
        f"executor:  {st.get('executor') or '-'}",
    ]
    for off in st.get("offers") or []:
        lines.append(
            f"  offer    {short_did(off['executor'])}  score {off['score']:.3f}  "
            f"cost {off.get('cost', '-')}"
        )
    for dec in st.get("declines") or []:
        lines.append(f"  declined {short_did(dec['executor'])}  {dec['why']}")
    timings = st.get("timings") or {}
    if timings:
        lines.append("timings:   " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    res = st.get("result")
    if res:
        lines.append(
            f"result:    {res['state']}, fuel {res['fuel_used']}, "
            f"exit {res.get('exit_code')}" + (f", {res['message']}" if res.get("message") else "")
        )
    return "\n".join(lines)


@app.command()
def submit(
    ctx: typer.Context,
    module: Annotated[
        Path | None,
        typer.Argument(help="A .wasm or .wat module.", exists=True, dir_okay=False, readable=True),
    ] = None,
    exec_: Annotated[
        str | None,
        typer.Option(
            "--exec",
            help="Instead of a module: run this host command (absolute path) on an executor "
            "whose operator allows it (compute.exec_allowlist).",
        ),
    ] = None,
    fuel: Annotated[
        int, typer.Option(help="Fuel limit (wasm instructions, roughly).", min=1)
    ] = 10_000_000,
    arg: Annotated[
        list[str] | None, typer.Option("--arg", help="An argument for the task (repeat).")
    ] = None,  # noqa: UP045
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="Input: HASH, FILE or NAME=HASH|FILE (repeat); read-only under /inputs.",
        ),
    ] = None,  # noqa: UP045
    profile: Annotated[Optional[str], typer.Option(help="minimal, compute-heavy or gpu.")] = None,  # noqa: UP045
    cpu: Annotated[Optional[float], typer.Option(help="CPU cores.")] = None,  # noqa: UP045
    memory: Annotated[
        int | None, typer.Option(help="Memory in MB (also the sandbox's memory cap).")
    ] = None,  # noqa: UP045
    storage: Annotated[Optional[int], typer.Option(help="Storage in MB.")] = None,  # noqa: UP045
    network: Annotated[Optional[float], typer.Option(help="Network in Mbps.")] = None,  # noqa: UP045
    gpu_memory: Annotated[Optional[float], typer.Option(help="GPU memory in GB.")] = None,  # noqa: UP045
    gpu_cc: Annotated[
        str | None, typer.Option(help="Minimum compute capability, e.g. sm_70.")
    ] = None,  # noqa: UP045
    gpu_count: Annotated[Optional[int], typer.Option(help="Number of GPUs.")] = None,  # noqa: UP045
    duration: Annotated[
        float | None, typer.Option(help="Expected duration (s); also the run's deadline.")
    ] = None,  # noqa: UP045
    max_cost: Annotated[
        int | None, typer.Option(help="Highest cost (credits per 1,000 fuel).", min=0)
    ] = None,  # noqa: UP045
    prefer: Annotated[Optional[list[str]], typer.Option(help="Prefer this executor DID.")] = None,  # noqa: UP045
    avoid: Annotated[Optional[list[str]], typer.Option(help="Never this executor DID.")] = None,  # noqa: UP045
    region: Annotated[Optional[str], typer.Option(help="Prefer this region.")] = None,  # noqa: UP045
    require_region: Annotated[Optional[str], typer.Option(help="Only this region.")] = None,  # noqa: UP045
    data: Annotated[
        list[str] | None,
        typer.Option(
            help="Also run near this blob the task fetches itself (HASH or FILE); "
            "its module and --input blobs count already."
        ),
    ] = None,  # noqa: UP045
    max_transfer: Annotated[
        int | None,
        typer.Option(
            help="Never place where more than this many MiB of the task's data must be fetched.",
            min=0,
        ),
    ] = None,  # noqa: UP045
    colocate: Annotated[Optional[str], typer.Option(help="Run beside this task.")] = None,  # noqa: UP045
    max_rtt: Annotated[
        float | None, typer.Option(help="Prefer executors within this RTT (ms).")
    ] = None,  # noqa: UP045
    min_bandwidth: Annotated[
        float | None, typer.Option(help="Prefer executors with this bandwidth (Mbps).")
    ] = None,  # noqa: UP045
    replicas: Annotated[
        int,
        typer.Option(
            help="Run on this many distinct executors; accept the result only when they agree "
            "(see: icnctl compute verify TASK).",
            min=1,
            max=7,
        ),
    ] = 1,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the task and print its result.")
    ] = False,
    wait_for_capacity: Annotated[
        bool,
        typer.Option(
            "--wait-for-capacity",
            help="Stay pending until some executor could fit it, instead of failing at once "
            "when none of those known can.",
        ),
    ] = False,
) -> None:
    """Submit a task: a WebAssembly MODULE, or with --exec a host command that executors'
    operators allow. With a resource profile it is placed by negotiation; without, by the
    legacy first-claim protocol.

    Example: icnctl compute submit examples/sum.wat --arg 1000 --cpu 1 --wait
    """
    prof = build_profile(
        profile, cpu, memory, storage, network, gpu_memory, gpu_cc, gpu_count, duration
    )
    hints = build_hints(
        ctx,
        prefer or [],
        avoid or [],
        region,
        require_region,
        data or [],
        colocate,
        max_rtt,
        min_bandwidth,
        max_transfer,
    )
    if hints and prof is None:
        raise typer.BadParameter(
            "locality hints need a resource profile (add --profile, --cpu or --memory)"
        )
    inputs = []
    for spec in input_ or []:
        name, blob = resolve_blob(ctx, spec)
        inputs.append({"name": name, "blob": blob})
    if (module is None) == (exec_ is None):
        raise typer.BadParameter("give a MODULE or --exec COMMAND (one of them)")
    if exec_ is not None and not exec_.startswith("/"):
        raise _bad("--exec", f"expected an absolute command path, got {exec_!r}")
    code: dict[str, Any]
    if exec_ is not None:
        code = {"exec": [exec_]}
    else:
        assert module is not None  # exactly one of them, checked above
        # Put as a blob first (streamed through a file descriptor, no line limit), then
        # submitted by hash: modules up to the daemon's 16 MiB limit pass.
        code = {"module_blob": put_file(ctx, module), "module_name": module.name}
    params = {
        **code,
        "fuel": fuel,
        "args": list(arg or []),
        "inputs": inputs,
        "profile": prof.to_dict() if prof is not None else None,
        "hints": hints,
        "max_cost": max_cost,
        "timeout_s": duration,
        **({"replicas": replicas} if replicas > 1 else {}),
        **({"wait_for_capacity": True} if wait_for_capacity else {}),
    }
    out = call(ctx, "compute.submit", params)
    if not wait:
        text = f"{out['task']}  ({out['protocol']})"
        if "group" in out:
            text += f"\nreplicas: {' '.join(out['replicas'])}"
            text += f"\n(check them: icnctl compute verify {out['task'][:16]})"
        emit(ctx, out, text)
        return
    if not ctx.obj.json:
        typer.echo(f"{out['task']}  ({out['protocol']})")
    st = wait_for(ctx, out["task"], quiet=ctx.obj.json)
    res = st.get("result")
    if res is None:  # ended without running, e.g. failed: no_executor
        emit(ctx, {"status": st, "result": None}, _render_status(st))
    else:
        emit(ctx, {"status": st, "result": res}, _render_result(res))
    if st["state"] != "completed":
        raise typer.Exit(1)


def _render_result(res: dict[str, Any]) -> str:
    lines = [
        f"state: {res['state']}  fuel_used: {res['fuel_used']}  exit_code: {res.get('exit_code')}"
    ]
    if res.get("message"):
        lines.append(f"message: {res['message']}")
    lines.append(f"executor: {res.get('executor') or '-'}")
    if res.get("stdout"):
        lines.append("--- stdout ---")
        lines.append(res["stdout"].rstrip("\n"))
    if res.get("stderr"):
        lines.append("--- stderr ---")
        lines.append(res["stderr"].rstrip("\n"))
    for out in res.get("outputs") or []:
        lines.append(f"output {out['name']}: {out['blob']}")
    return "\n".join(lines)


@app.command()
def status(ctx: typer.Context, task: str) -> None:
    """State, attempts, executor, offers with scores, timings and result of a task.

    Example: icnctl compute status 3f2a9c
    """
    st = call(ctx, "compute.status", {"task": _hash_arg(task, "TASK")})
    emit(ctx, st, _render_status(st))


@app.command()
def executors(ctx: typer.Context) -> None:
    """Executors this node knows as live: announced free capacity, queue, the trust it has in
    them and their effective trust here (lowered by penalties for lies, overruns, wrong
    results and lost tasks).

    Example: icnctl compute executors
    """
    out = call(ctx, "compute.executors", {})
    lines = [f"{'EXECUTOR':20}  {'TRUST':>5}  {'EFFECTIVE':>9}  {'FREE CORES':>10}  {'QUEUE':>5}"]
    for r in out["executors"]:
        cap = r.get("capacity", {})
        free = f"{cap.get('cpu_cores_available', 0):g}/{cap.get('cpu_cores_total', 0):g}"
        lines.append(
            f"{short_did(r['did']):20}  {r['trust']:>5.2f}  {r['effective_trust']:>9.2f}  "
            f"{free:>10}  {r.get('queue_depth', 0):>5}"
        )
    emit(ctx, out, "\n".join(lines))


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[Optional[str], typer.Option(help="Only tasks in this state.")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """Tasks this node submitted, newest first.

    Example: icnctl compute list --state running --limit 10
    """
    rows = call(ctx, "compute.list", {"state": state, "limit": limit})
    lines = [f"{'TASK':16}  {'STATE':15}  {'PROTOCOL':9}  {'ATT':3}  EXECUTOR"]
    for r in rows["tasks"]:
        lines.append(
            f"{r['task'][:16]}  {r['state']:15}  {r['protocol']:9}  {r['attempt']:>3}  "
            f"{short_did(r.get('executor'))}"
        )
    emit(ctx, rows, "\n".join(lines))


@app.command()
def result(
    ctx: typer.Context,
    task: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write output files here.")
    ] = None,  # noqa: UP045
) -> None:
    """A finished task's result; with --output, also its output files.

    Example: icnctl compute result 3f2a9c -o results/
    """
    res = call(ctx, "compute.result", {"task": _hash_arg(task, "TASK")})
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for out in res.get("outputs") or []:
            # Streamed into the file like `blob get -o` (a base64 reply stops at 16 MiB).
            get_to_file(ctx, out["blob"], output / Path(out["name"]).name)
    emit(ctx, res, _render_result(res))


@app.command()
def verify(ctx: typer.Context, task: str) -> None:
    """The verdict on a replicated task: every replica, and whether their results agree.

    Example: icnctl compute verify 3f2a9c
    """
    out = call(ctx, "compute.verify", {"task": _hash_arg(task, "TASK")})
    lines = [
        f"group {out['group'][:16]}…  wants {out['want']} agreeing  verdict: {out['verdict']}"
        + (f" ({out['agree']} agree)" if out["agree"] else "")
    ]
    for r in out["replicas"]:
        mark = "  ← outvoted" if r["executor"] in out["minority"] else ""
        lines.append(
            f"  {r['task'][:16]}…  {r['state']:<12} on {short_did(r['executor'])}  "
            f"fuel {r['fuel_used'] if r['fuel_used'] is not None else '-'}{mark}"
        )
    if out["result"] is not None:
        lines.append("accepted stdout: " + out["result"]["stdout"].strip()[:200])
    emit(ctx, out, "\n".join(lines))


@app.command()
def cancel(ctx: typer.Context, task: str) -> None:
    """Stop a task's negotiation or run and free its capacity.

    Example: icnctl compute cancel 3f2a9c
    """
    out = call(ctx, "compute.cancel", {"task": _hash_arg(task, "TASK")})
    emit(ctx, out, f"{out['task']}  {out['state']}")


@app.command()
def watch(
    ctx: typer.Context,
    task: Annotated[Optional[str], typer.Argument(help="Only this task.")] = None,  # noqa: UP045
    count: Annotated[Optional[int], typer.Option(help="Stop after this many events.")] = None,  # noqa: UP045
) -> None:
    """Follow task state changes as they happen (Ctrl-C to stop).

    Example: icnctl compute watch --count 10
    """
    params: dict[str, Any] = {
        "task": _hash_arg(task, "TASK") if task else None,
        "after": 0,
        "timeout_s": 10,
    }
    seen = 0
    try:
        while count is None or seen < count:
            page = call(ctx, "compute.watch", params)
            params["after"] = page["next"]
            for ev in page["events"]:
                seen += 1
                if ctx.obj.json:
                    emit(ctx, ev)
                else:
                    stamp = time.strftime("%H:%M:%S", time.localtime(ev["at"]))
                    typer.echo(
                        f"{stamp}  {ev['task'][:16]}  {_progress(ev)}"
                        + (f"  ({ev['reason']})" if ev.get("reason") else "")
                    )
                if count is not None and seen >= count:
                    break
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


__all__ = ["app", "build_profile"]
