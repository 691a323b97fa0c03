"""``icnctl``: the operator's command line, speaking JSON-RPC to a local icnd.

Global options live on the root callback and travel on ``ctx.obj``; each command group is its
own Typer app in its own module. The helpers the groups share are in :mod:`.common`; usage
errors keep Click's exit code 2.

A call imports only the group it runs: :class:`LazyGroups` turns a group's Typer app into its
Click command when the group is named on the command line (``--help`` and shell completion,
which list them all, load them all). A group module's import and Typer's walk over its
commands cost about 20 ms together, a sixth of a call (docs/PERFORMANCE.md, "CLI start-up").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core
import typer.main

from .common import DEFAULT_SOCKET, Ctx, default_socket


def _node() -> typer.Typer:
    from . import node

    return node.app


def _compute() -> typer.Typer:
    from . import compute

    return compute.app


def _blob() -> typer.Typer:
    from . import blob

    return blob.app


def _mesh() -> typer.Typer:
    from . import mesh

    return mesh.app


def _topology() -> typer.Typer:
    from . import topology

    return topology.app


# Name → the function that imports the group's module; in the order --help lists them.
GROUPS: dict[str, Callable[[], typer.Typer]] = {
    "node": _node,
    "compute": _compute,
    "blob": _blob,
    "mesh": _mesh,
    "topology": _topology,
}


class LazyGroups(typer.core.TyperGroup):
    """The root command: the groups of :data:`GROUPS` are loaded when first asked for
    (Click's lazy-loading pattern: ``list_commands`` names them, ``get_command`` loads).

    Contexts and commands are typed ``Any``: Typer vendors Click under a private name since
    0.26 and imports the real one before, and both are allowed."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*GROUPS, *(n for n in super().list_commands(ctx) if n not in GROUPS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in GROUPS and cmd_name not in self.commands:
            command = typer.main.get_command(GROUPS[cmd_name]())
            command.name = cmd_name
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in GROUPS:
            # Not a group's name (a typo): load them all, so that Typer's "Did you mean"
            # suggestions see them.
            for name in GROUPS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="icnctl",
    cls=LazyGroups,
    help="Control a local icnd node.\n\nExample: icnctl node status",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
