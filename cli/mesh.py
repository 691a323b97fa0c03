"""``icnctl mesh …``: the gossip mesh, for operators debugging it."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import call, emit, short_did

app = typer.Typer(
    help="The gossip mesh: peers, publish, subscribe, received.\n\nExample: icnctl mesh peers",
    no_args_is_help=True,
    add_completion=False,
)


def _rtt(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f}ms"


def _since(seconds: float) -> str:
    s = int(seconds)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@app.command()
def peers(ctx: typer.Context) -> None:
    """Linked peers: DID, address, direction, state, connected-for, messages in/out.

    Example: icnctl mesh peers
    """
    res = call(ctx, "mesh.peers")
    rows = res["peers"]
    header = (
        f"{'DID':<24} {'ADDRESS':<22} {'DIR':<3} {'STATE':<10} {'FOR':>9} {'IN':>7} {'OUT':>7}"
        f" {'RTT':>8}"
    )
    lines = [f"mesh {res['address']}  {len(rows)} link(s)", header]
    for p in rows:
        lines.append(
            f"{short_did(p['did']):<24} {p['address']:<22} {p['direction']:<3} {p['state']:<10} "
            f"{_since(p['connected_s']):>9} {p['messages_in']:>7} {p['messages_out']:>7}"
            f" {_rtt(p.get('rtt_ms')):>8}"
        )
    emit(ctx, res, "\n".join(lines))


@app.command()
def publish(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic to publish on.")],
    text: Annotated[str, typer.Argument(help="Message text (UTF-8).")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Publish it N times.")] = 1,
) -> None:
    """Sign and publish TEXT on TOPIC.

    Example: icnctl mesh publish chat "hello, mesh" --count 3
    """
    res = call(ctx, "mesh.publish", {"topic": topic, "text": text, "count": count})
    emit(ctx, res, f"published {res['published']} on {topic} ({res['sends']} link sends)")


@app.command()
def subscribe(
    ctx: typer.Context, topic: Annotated[str, typer.Argument(help="Topic to record.")]
) -> None:
    """Subscribe the node to TOPIC and keep its last deliveries (see `received`).

    Example: icnctl mesh subscribe chat
    """
    res = call(ctx, "mesh.subscribe", {"topic": topic})
    emit(ctx, res, f"recording {topic}")


@app.command()
def received(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="A recorded topic.")],
    limit: Annotated[int, typer.Option("--limit", min=0, max=1000)] = 20,
) -> None:
    """The last messages delivered on TOPIC.

    Example: icnctl mesh received chat --limit 5
    """
    res = call(ctx, "mesh.received", {"topic": topic, "limit": limit})
    if not res["recording"]:
        emit(ctx, res, f"not recording {topic}; run `icnctl mesh subscribe {topic}` first")
        return
    lines = [f"{res['delivered_total']} delivered, {res['duplicates']} duplicate copies"]
    for m in res["messages"]:
        body = m.get("text", m.get("base64", ""))
        lines.append(f"{short_did(m['origin'])} seq={m['seq']} {body[:80]}")
    emit(ctx, res, "\n".join(lines))
