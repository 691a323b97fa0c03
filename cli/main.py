"""``icnctl``: the operator's command line, speaking JSON-RPC to a local icnd.

Global options live on the root callback and travel on ``ctx.obj``; each command group is its
own Typer app. Domain errors are translated once, in :func:`call`, into ``Error: …`` on stderr
and exit code 1; usage errors keep Click's exit code 2.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from icn_node.config import load_config
from icn_node.errors import ConfigError, RpcError
from icn_node.rpc.client import DaemonUnavailable, RpcClient

DEFAULT_SOCKET = "/var/lib/icn/icnd.sock"


@dataclass
class Ctx:
    socket: str
    json: bool
    timeout: float


def fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


def call(ctx: typer.Context, method: str, params: dict[str, Any] | None = None) -> Any:
    """Call the daemon; any failure becomes ``Error: …`` and exit 1."""
    obj: Ctx = ctx.obj
    try:
        with RpcClient(obj.socket, timeout=obj.timeout) as client:
            return client.call(method, params)
    except DaemonUnavailable as e:
        raise fail(str(e)) from None
    except RpcError as e:
        raise fail(str(e)) from None


def emit(ctx: typer.Context, data: Any, human: str | None = None) -> None:
    """Print ``data`` as JSON with --json, else ``human`` (or a key: value rendering)."""
    if ctx.obj.json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    elif human is not None:
        typer.echo(human)
    else:
        typer.echo(render(data))


def render(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for k, v in data.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(render(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(lines)
    if isinstance(data, list):
        lines = []
        for item in data:
            if isinstance(item, dict):
                body = render(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return f"{pad}{_scalar(data)}"


def _scalar(v: Any) -> str:
    if v is None or v == [] or v == {}:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _default_socket(config: Path | None) -> str:
    env = os.environ.get("ICN_SOCKET")
    if env:
        return env
    if config is not None:
        try:
            return str(load_config(config).rpc_socket)
        except ConfigError as e:
            raise fail(str(e)) from None
    return DEFAULT_SOCKET


app = typer.Typer(
    name="icnctl",
    help="Control a local icnd node.",
    no_args_is_help=True,
    add_completion=False,
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
    ctx.obj = Ctx(socket=socket or _default_socket(config), json=as_json, timeout=timeout)


from . import blob as _blob  # noqa: E402  (sub-apps register against `app`)
from . import compute as _compute  # noqa: E402
from . import mesh as _mesh  # noqa: E402
from . import node as _node  # noqa: E402

app.add_typer(_node.app, name="node")
app.add_typer(_compute.app, name="compute")
app.add_typer(_blob.app, name="blob")
app.add_typer(_mesh.app, name="mesh")


def main() -> None:
    app()
