"""``icnctl blob …``: put files into the node's blob store, get them back, list them; see who
holds what across the cooperative (``locate``, ``list --all``) and keep a replica (``fetch``)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import call, emit

app = typer.Typer(
    help="Content-addressed blobs: put, get, list, locate, fetch.", no_args_is_help=True
)


def _is_hash(text: str) -> bool:
    t = text.strip().lower()
    return len(t) == 64 and all(c in "0123456789abcdef" for c in t)


def put_file(ctx: typer.Context, path: Path) -> str:
    data = path.read_bytes()
    out = call(ctx, "blob.put", {"data": base64.b64encode(data).decode()})
    return out["blob"]


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
    """Store a file; prints its blob hash."""
    blob = put_file(ctx, file)
    emit(ctx, {"blob": blob, "size": file.stat().st_size}, blob)


@app.command()
def get(
    ctx: typer.Context,
    blob: str,
    output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None,  # noqa: UP045
) -> None:
    """Fetch a blob (from this node, or from a peer that announced it)."""
    if not _is_hash(blob):
        raise typer.BadParameter(f"expected a 64-hex blob hash, got {blob!r}", param_hint="BLOB")
    out = call(ctx, "blob.get", {"blob": blob.lower()})
    data = base64.b64decode(out["data"])
    if output is None:
        typer.echo(data.decode(errors="replace"), nl=False)
    else:
        output.write_bytes(data)
        emit(ctx, {"blob": blob, "size": len(data), "path": str(output)}, str(output))


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", help="The cooperative's blobs, with holder counts.")
    ] = False,
    limit: Annotated[int, typer.Option(help="With --all: at most this many, by hash.")] = 1000,
) -> None:
    """Blobs this node holds (--all: every blob the cooperative announced)."""
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

    When no other holder is known, the cooperative is asked first (a few seconds)."""
    out = call(ctx, "blob.locate", {"blob": _blob_arg(blob)})
    lines = [
        f"{h['did']}  {out['size']}  {h['age_s']:.0f} s ago{'  (this node)' if h['self'] else ''}"
        for h in out["holders"]
    ]
    emit(ctx, out, "\n".join(lines) or "(no holder known)")


@app.command()
def fetch(ctx: typer.Context, blob: str) -> None:
    """Keep a replica of a blob here, fetched from its holders (prints the hash)."""
    out = call(ctx, "blob.fetch", {"blob": _blob_arg(blob)})
    emit(ctx, out, out["blob"])
