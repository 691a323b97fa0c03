"""``icnctl node …``: the node's identity, health and capacity."""

from __future__ import annotations

import typer

from .common import call, emit

app = typer.Typer(
    help="This node: status and capacity.\n\nExample: icnctl node status",
    no_args_is_help=True,
    add_completion=False,
)


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if d or h:
        parts.append(f"{h}h")
    if d or h or m:
        parts.append(f"{m}m")
    parts.append(f"{s}s")
    return " ".join(parts)


@app.command()
def status(ctx: typer.Context) -> None:
    """DID, version, uptime, region, listen addresses and peer count.

    Example: icnctl --json node status
    """
    st = call(ctx, "node.status")
    listen = ", ".join(f"{k}={v}" for k, v in sorted(st["listen"].items())) or "-"
    human = "\n".join(
        [
            f"did:      {st['did']}",
            f"version:  {st['version']}",
            f"uptime:   {_duration(st['uptime_s'])}",
            f"region:   {st['region'] or '-'}",
            f"listen:   {listen}",
            f"peers:    {st['peers']}",
        ]
    )
    emit(ctx, st, human)


@app.command()
def capacity(ctx: typer.Context) -> None:
    """What this node offers: CPU, memory, storage, network and GPUs.

    Example: icnctl node capacity
    """
    cap = call(ctx, "node.capacity")
    lines = [
        f"cpu_cores_available:  {cap['cpu_cores_available']:g}",
        f"memory_mb_available:  {cap['memory_mb_available']}",
        f"storage_mb_available: {cap['storage_mb_available']}",
        f"network_mbps:         {cap['network_mbps']:g}",
    ]
    gpus = cap.get("gpu_devices") or []
    if not gpus:
        lines.append("gpu_devices:          none")
    for g in gpus:
        lines.append(
            f"gpu {g['device_id']}: {g['device_name']}, {g['memory_gb']} GB, "
            f"{g['compute_capability']}, {'available' if g.get('available', True) else 'busy'}"
        )
    emit(ctx, cap, "\n".join(lines))
