"""``icnd``: the daemon's entry point (``init``, ``run``, ``check-config``, ``version``).

Exit codes: 0 success, 1 a runtime failure, 2 bad configuration, key or usage. On SIGTERM or
SIGINT the node's nursery is cancelled; services close their sockets in ``finally`` blocks and
the process exits 0 within the shutdown grace period.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import trio
import typer

from . import __version__
from .config import BIND_ADDRESS_KEYS, PEER_ADDRESS_KEYS, Config, address_errors, load_config
from .errors import ConfigError, IcnError, IdentityError
from .identity import KEY_FILE, NodeIdentity, init_data_dir
from .logs import configure_logging, get_logger

SHUTDOWN_GRACE_S = 5.0

app = typer.Typer(
    name="icnd",
    help="Node daemon for cooperative compute networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = get_logger("icn.daemon")


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def _check_addresses(cfg: Config, keys: tuple[str, ...]) -> None:
    """Exit 2 listing every host name among ``keys`` that does not resolve."""
    errors = address_errors(cfg, keys)
    for e in errors[:-1]:
        typer.echo(f"Error: {e}", err=True)
    if errors:
        raise _fail(str(errors[-1]), 2)


ConfigOpt = Annotated[
    Optional[Path],  # noqa: UP045 (typer needs Optional here)
    typer.Option("--config", "-c", help="TOML config file.", envvar="ICN_CONFIG"),
]


def _load(
    config: Path | None, data_dir: Path | None = None, log: dict[str, str] | None = None
) -> Config:
    overrides: dict[str, dict[str, str]] = {}
    if data_dir:
        overrides["node"] = {"data_dir": str(data_dir)}
    if log:
        overrides["log"] = log
    try:
        return load_config(config, overrides=overrides)
    except ConfigError as e:
        raise _fail(str(e), 2) from None


@app.command()
def init(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the node keeps its state.")],
) -> None:
    """Create the data directory and a new Ed25519 node key; print the node's DID."""
    try:
        ident = init_data_dir(data_dir)
    except IdentityError as e:
        raise _fail(str(e), 1) from None
    except OSError as e:
        raise _fail(f"{data_dir}: {e.strerror}", 1) from None
    typer.echo(ident.did)


@app.command("check-config")
def check_config(
    config: ConfigOpt = None,
    resolve: Annotated[
        bool,
        typer.Option(
            "--resolve/--no-resolve",
            help="Look up the host names in addresses (--no-resolve: syntax only, as at boot, "
            "where `icnd run` resolves what it binds and only warns about peers).",
        ),
    ] = True,
) -> None:
    """Validate a config file (and ICN_* overrides) without starting anything; host names in
    addresses are resolved unless --no-resolve."""
    cfg = _load(config)
    if resolve:
        _check_addresses(cfg, BIND_ADDRESS_KEYS + PEER_ADDRESS_KEYS)
    typer.echo(f"{cfg.source}: ok")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def run(
    config: ConfigOpt = None,
    data_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--data-dir", help="Override node.data_dir."),
    ] = None,
    log_format: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--log-format", help="auto, console or json (overrides log.format)."),
    ] = None,
    log_level: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--log-level", help="debug, info, warning or error (overrides log.level)."),
    ] = None,
) -> None:
    """Run the node in the foreground until SIGTERM or SIGINT."""
    log_overrides = {k: v for k, v in (("format", log_format), ("level", log_level)) if v}
    cfg = _load(config, data_dir, log_overrides)
    _check_addresses(cfg, BIND_ADDRESS_KEYS)
    configure_logging(cfg.log.level, cfg.log.format)
    for e in address_errors(cfg, PEER_ADDRESS_KEYS):
        log.warning("address_unresolved", key=e.key, source=e.source, error=str(e))
    try:
        identity = NodeIdentity.load(cfg.data_dir / KEY_FILE)
    except IdentityError as e:
        raise _fail(str(e), 2) from None
    try:
        trio.run(_serve, cfg, identity)
    except BaseExceptionGroup as group:
        expected = _expected_failure(group)
        if expected is None:
            raise
        log.error("node_failed", error=str(expected))
        raise _fail(str(expected), 1) from None
    except (IcnError, OSError) as e:
        log.error("node_failed", error=str(e))
        raise _fail(str(e), 1) from None


def _expected_failure(group: BaseExceptionGroup) -> BaseException | None:
    """The first IcnError or OSError inside trio's (nested) exception groups, if any."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _expected_failure(exc)
            if found is not None:
                return found
        elif isinstance(exc, (IcnError, OSError)):
            return exc
    return None


async def _serve(cfg: Config, identity: NodeIdentity) -> None:
    from .node import Node

    if cfg.mesh.open:
        log.warning("mesh_open", detail="mesh.open = true admits any DID; for development only")
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            node = Node(cfg, identity)
            await nursery.start(node.run)
            async for signum in signals:
                log.info("shutting_down", signal=signal.Signals(signum).name)
                break
            # Services get the grace period to close; then everything is cancelled.
            nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE_S
            await node.shutdown()
            nursery.cancel_scope.cancel()
    log.info("stopped")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
