"""``icnctl blob …``: put files into the node's blob store, get them back, list and remove
them; see who holds what across the cooperative (``locate``, ``list --all``) and keep a
replica (``fetch``).

Files travel as open file descriptors sent with the request (SCM_RIGHTS): icnctl opens the file
(so icnd touches only what the caller could open) and icnd reads or writes it a chunk at a time,
so any size passes. A progress bar shows on a terminal for transfers over a second.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import call, emit, fail
from .progress import progress_bar

app = typer.Typer(
    help="Content-addressed blobs: put, get, list, rm, locate, fetch.\n\n"
    "Example: BLOB=$(icnctl blob put model.bin)",
    no_args_is_help=True,
    add_completion=False,
)


def _is_hash(text: str) -> bool:
    t = text.strip().lower()
    return len(t) == 64 and all(c in "0123456789abcdef" for c in t)


def put_path(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """Put a file: icnd reads it through the descriptor opened here; returns blob and size."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror}") from None
    with f, progress_bar(ctx, f"put {path.name}") as bar:
        params = {"fd": 0, "progress": True}
        out: dict[str, Any] = call(ctx, "blob.put", params, fds=[f.fileno()], on_notify=bar)
    return out


def put_file(ctx: typer.Context, path: Path) -> str:
    return str(put_path(ctx, path)["blob"])


def get_to_file(ctx: typer.Context, blob: str, path: Path) -> dict[str, Any]:
    """Get a blob into ``path``: icnd writes it through the descriptor opened here. A failed
    get leaves no file behind."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except OSError as e:
        raise fail(f"cannot write {path}: {e.strerror}") from None
    try:
        with progress_bar(ctx, f"get {path.name}") as bar:
            params = {"blob": blob, "fd": 0, "progress": True}
            out: dict[str, Any] = call(ctx, "blob.get", params, fds=[fd], on_notify=bar)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return out


def resolve_blob(ctx: typer.Context, spec: str) -> tuple[str, str]:
    """``HASH``, ``FILE`` or ``NAME=HASH|FILE`` → (name, blob hex); a FILE is put first."""
    name, sep, ref = spec.partition("=")
    if not sep:
        name, ref = "", spec
    if _is_hash(ref):
        return (name or ref.lower()[:16]), ref.lower()
    path = Path(ref)
    if not path.is_file():
        raise typer.BadParameter(
            f"{ref!r} is neither a 64-hex blob hash nor a readable file", param_hint="blob"
        )
    return (name or path.name), put_file(ctx, path)


@app.command()
def put(
    ctx: typer.Context, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
) -> None:
    """Store a file (any size); prints its blob hash.

    Example: BLOB=$(icnctl blob put model.bin)
    """
    out = put_path(ctx, file)
    emit(ctx, {"blob": out["blob"], "size": out["size"]}, out["blob"])


@app.command()
def get(
    ctx: typer.Context,
    blob: str,
    output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None,  # noqa: UP045
) -> None:
    """Fetch a blob (from this node, or from a peer that announced it) into a file, or to
    standard output.

    Example: icnctl blob get "$BLOB" -o model.bin
    """
    if not _is_hash(blob):
        raise typer.BadParameter(f"expected a 64-hex blob hash, got {blob!r}", param_hint="BLOB")
    blob = blob.lower()
    if output is not None:
        out = get_to_file(ctx, blob, output)
        emit(ctx, {"blob": blob, "size": out["size"], "path": str(output)}, str(output))
        return
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, io.UnsupportedOperation):  # stdout is not a file (a test runner)
        data = base64.b64decode(call(ctx, "blob.get", {"blob": blob})["data"])
        typer.echo(data.decode(errors="replace"), nl=False)
        return
    sys.stdout.flush()
    # The daemon writes straight into our standard output; no bar when that is the terminal.
    with progress_bar(ctx, f"get {blob[:12]}", allowed=not os.isatty(fd)) as bar:
        params = {"blob": blob, "fd": 0, "progress": True}
        call(ctx, "blob.get", params, fds=[fd], on_notify=bar)


@app.command()
def rm(ctx: typer.Context, blob: str) -> None:
    """Remove a blob from this node (refused while a task here needs it).

    Example: icnctl blob rm "$BLOB"
    """
    if not _is_hash(blob):
        raise typer.BadParameter(f"expected a 64-hex blob hash, got {blob!r}", param_hint="BLOB")
    out = call(ctx, "blob.rm", {"blob": blob.lower()})
    emit(ctx, out, f"removed {out['blob']} ({out['size']} bytes)")


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", help="The cooperative's blobs, with holder counts.")
    ] = False,
    limit: Annotated[int, typer.Option(help="With --all: at most this many, by hash.")] = 1000,
) -> None:
    """Blobs this node holds (--all: every blob the cooperative announced).

    Example: icnctl blob list --all --limit 20
    """
    if all_:
        list_all(ctx, limit)
        return
    out = call(ctx, "blob.list")
    emit(ctx, out, "\n".join(f"{b['blob']}  {b['size']}" for b in out["blobs"]) or "(none)")


# --- the cooperative's blobs ------------------------------------------------------------------


def _blob_arg(blob: str) -> str:
    if not _is_hash(blob):
        raise typer.BadParameter(f"expected a 64-hex blob hash, got {blob!r}", param_hint="BLOB")
    return blob.strip().lower()


def list_all(ctx: typer.Context, limit: int) -> None:
    out = call(ctx, "blob.list", {"all": True, "limit": limit})
    rows = [f"{b['blob']}  {b['size']:>12}  {b['holders']} holder(s)" for b in out["blobs"]]
    more = out["known"] - len(out["blobs"])
    if more > 0:
        rows.append(f"… and {more} more (--limit)")
    emit(ctx, out, "\n".join(rows) or "(none known)")


@app.command()
def locate(ctx: typer.Context, blob: str) -> None:
    """Every node known to hold a blob, with its size and the age of each announcement.

    When no other holder is known, the cooperative is asked first (a few seconds).

    Example: icnctl blob locate "$BLOB"
    """
    out = call(ctx, "blob.locate", {"blob": _blob_arg(blob)})
    lines = [
        f"{h['did']}  {out['size']}  {h['age_s']:.0f} s ago{'  (this node)' if h['self'] else ''}"
        for h in out["holders"]
    ]
    emit(ctx, out, "\n".join(lines) or "(no holder known)")


@app.command()
def fetch(ctx: typer.Context, blob: str) -> None:
    """Keep a replica of a blob here, fetched from its holders (prints the hash).

    Example: icnctl blob fetch "$BLOB"
    """
    out = call(ctx, "blob.fetch", {"blob": _blob_arg(blob)})
    emit(ctx, out, out["blob"])
