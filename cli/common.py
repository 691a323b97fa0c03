"""What every ``icnctl`` command group shares: the context, the daemon call, output helpers.

Domain errors are translated once, in :func:`call`, into ``Error: …`` on stderr and exit code 1.
This module imports none of the command modules; ``main`` and the sub-apps both import it.

Every ``icnctl`` call imports this module, so it imports only the light client side of the RPC
package (no server code, no logging), and ``--config`` reads the two keys that name the socket,
not the whole schema (see docs/PERFORMANCE.md, "CLI start-up").
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from icn_node.errors import ConfigError, RpcError
from icn_node.rpc.client import DaemonUnavailable, RpcClient
from icn_node.rpc.codes import INTERNAL_ERROR

DEFAULT_SOCKET = "/var/lib/icn/icnd.sock"


@dataclass
class Ctx:
    socket: str
    json: bool
    timeout: float


def fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


def call(
    ctx: typer.Context,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    fds: Sequence[int] = (),
    on_notify: Callable[[str, Any], None] | None = None,
) -> Any:
    """Call the daemon (``fds`` travel with the request, notifications go to ``on_notify``);
    any failure becomes ``Error: …`` and exit 1."""
    obj: Ctx = ctx.obj
    try:
        with RpcClient(obj.socket, timeout=obj.timeout) as client:
            return client.call(method, params, fds=fds, on_notify=on_notify)
    except DaemonUnavailable as e:
        raise fail(str(e)) from None
    except RpcError as e:
        raise fail(explain(e)) from None


def explain(e: RpcError) -> str:
    """An error icnd answered, as icnctl prints it (after ``Error: ``): its message, which
    names the parameter, the limit or the permission at fault; a bug in icnd says so."""
    if e.code == INTERNAL_ERROR:
        return f"{e} (a bug in icnd; its log has the details)"
    return str(e)


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


def default_socket(config: Path | None) -> str:
    env = os.environ.get("ICN_SOCKET")
    if env:
        return env
    if config is not None:
        return socket_from_config(config)
    return DEFAULT_SOCKET


def socket_from_config(path: Path, environ: Mapping[str, str] | None = None) -> str:
    """The socket icnd takes from the config at ``path``: ``rpc.socket``, else
    ``<node.data_dir>/icnd.sock``, each overridden by ``ICN_RPC_SOCKET`` / ``ICN_NODE_DATA_DIR``.

    Read from those two keys alone: loading the whole schema costs each call ~55 ms. Anything
    unusual about the file or the two keys goes through icnd's own ``load_config``, so the
    error reads as icnd's would. The other keys are not checked here (``icnd check-config``
    does); ``tests/test_cli_startup.py`` holds the answer equal to ``load_config``'s.
    """
    environ = os.environ if environ is None else environ
    keys = _socket_keys(path, environ)
    if keys is not None:
        data_dir, socket = keys
        return str(Path(socket)) if socket else str(Path(data_dir) / "icnd.sock")
    from icn_node.config import load_config  # the whole schema, for its error

    try:
        return str(load_config(path, env=environ).rpc_socket)
    except ConfigError as e:
        raise fail(str(e)) from None


_SOCKET_KEYS = {("node", "data_dir"): "/var/lib/icn", ("rpc", "socket"): ""}  # icnd's defaults
_MAX_CONFIG_BYTES = 1 << 20


def _socket_keys(path: Path, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(data_dir, socket) as icnd would read them, or None where icnd might refuse them."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_CONFIG_BYTES + 1)
        doc = tomllib.loads(data.decode("utf-8")) if len(data) <= _MAX_CONFIG_BYTES else None
    except (OSError, ValueError, RecursionError):  # TOML and UTF-8 errors are ValueErrors
        return None
    if doc is None:
        return None
    values = []
    for (section, key), default in _SOCKET_KEYS.items():
        body = doc.get(section, {})
        value = body.get(key, default) if isinstance(body, dict) else None
        for var, text in environ.items():  # as load_config matches ICN_<SECTION>_<KEY>
            if var.startswith("ICN_") and var[4:].lower() == f"{section}_{key}":
                value = text
        if not isinstance(value, str):
            return None
        values.append(value)
    data_dir, socket = values
    return (data_dir, socket) if data_dir else None


def short_did(did: str | None) -> str:
    """A DID cut to fit a 24-column table cell; ``-`` for none."""
    if not did:
        return "-"
    return did if len(did) <= 24 else f"{did[:16]}…{did[-6:]}"
