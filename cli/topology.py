"""``icnctl topology``: the network map as this node sees it, and RTT estimates between nodes."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .common import call, emit, short_did


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms"


def _mbps(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _age(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}s" if v < 3600 else f"{v / 3600:.1f}h"


def _coord(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    x, y = c["vec"]
    return f"({x:.1f}, {y:.1f}) h={c['height']:.1f} err={c['error']:.2f}"


def _table(res: dict[str, Any]) -> str:
    me = res["coordinate"]
    lines = [
        f"this node {short_did(res['did'])}  coordinate {_coord(me)}  ({res['updates']} updates)",
        f"probe bytes {res['probe_bytes']} of {res['mesh_bytes']} mesh bytes",
        f"{'DID':<24} {'LINK':<4} {'RTT':>9} {'EST':>9} {'MBIT/S':>9} {'BW AGE':>7} "
        f"{'SOURCE':<8} COORDINATE",
    ]
    for n in res["nodes"]:
        lines.append(
            f"{short_did(n['did']):<24} {'yes' if n['linked'] else 'no':<4} "
            f"{_ms(n['rtt_ms']):>9} {_ms(n['rtt_estimated_ms']):>9} "
            f"{_mbps(n['bandwidth_mbps']):>9} {_age(n['bandwidth_age_s']):>7} "
            f"{n['bandwidth_source'] or '-':<8} {_coord(n['coordinate'])}"
        )
    return "\n".join(lines)


# One command, no group: Typer makes this app the command ``icnctl topology`` itself.
app = typer.Typer(add_completion=False)


@app.command()
def topology(
    ctx: typer.Context,
    estimate: Annotated[
        Optional[tuple[str, str]],  # noqa: UP045
        typer.Option(
            "--estimate",
            metavar="DID DID",
            help="Print the RTT (ms) the two nodes' coordinates predict.",
        ),
    ] = None,
) -> None:
    """Peers with measured RTT, bandwidth and network coordinates; this node's coordinate.

    Example: icnctl topology --estimate "$DID_A" "$DID_B"
    """
    if estimate is not None:
        a, b = estimate
        res = call(ctx, "netmap.estimate", {"a": a, "b": b})
        emit(ctx, res, f"{res['rtt_ms']:.1f}")
        return
    res = call(ctx, "netmap.topology")
    emit(ctx, res, _table(res))
