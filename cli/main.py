"""``icnctl``: the operator's command line, speaking JSON-RPC to a local icnd.

Global options live on the root callback and travel on ``ctx.obj``; each command group is its
own Typer app, joined here. The helpers the groups share are in :mod:`.common`; usage errors
keep Click's exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import blob, compute, mesh, node, topology
from .common import DEFAULT_SOCKET, Ctx, default_socket

app = typer.Typer(
    name="icnctl",
    help="Control a local icnd node.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(node.app, name="node")
app.add_typer(compute.app, name="compute")
app.add_typer(blob.app, name="blob")
app.add_typer(mesh.app, name="mesh")
app.command(name="topology")(topology.topology)


@app.callback()
def root(
    ctx: typer.Context,
    socket: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--socket",
            "-s",
            help="icnd's RPC socket (default: $ICN_SOCKET, the "
            f"config's rpc.socket, else {DEFAULT_SOCKET}).",
        ),
    ] = None,
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--config",
            "-c",
            help="Read the socket path from this icnd config.",
            envvar="ICN_CONFIG",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for icnd.")] = 30.0,
) -> None:
    ctx.obj = Ctx(socket=socket or default_socket(config), json=as_json, timeout=timeout)


def main() -> None:
    app()
