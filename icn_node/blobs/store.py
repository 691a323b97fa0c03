"""Content-addressed blob storage: task code, inputs and outputs, named by their SHA-256.

A blob lives at ``<data_dir>/blobs/<hh>/<hash hex>``. Writes go to a temporary file in the same
directory tree, are fsynced and renamed into place, so a crash leaves either the whole blob or
nothing; the hash is checked before the rename, so a stored blob is always the bytes its name
says. Two writers take blobs in pieces, never whole in memory: :class:`BlobWriter` (a blob of
known name and size, from a peer) verifies the whole before it becomes visible, and
:class:`BlobSink` (bytes of a name not yet known, from a local client) names the blob by the
hash of what it was given. :class:`BlobReader` reads a blob back in pieces and checks its hash
at the end.

Quota: the store keeps a running total of the bytes it holds (counted once at start, then
kept up to date by every publish and delete) and of the bytes transfers in progress have
reserved; a write that would take both past ``quota_bytes`` raises :class:`QuotaExceeded`
naming the quota and the sizes. Blocking and thread-safe; drivers call it from worker threads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import IcnError

HASH_BYTES = 32
COPY_CHUNK = 1 << 20
MB = 1 << 20


class BlobError(IcnError):
    """A blob is missing, malformed or does not match its hash."""


class QuotaExceeded(BlobError):
    """Storing a blob would take the store past ``blobs.quota_mb``."""


def blob_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def parse_blob_id(text: str) -> bytes:
    """A 64-character hex blob id → 32 bytes; BlobError naming the problem otherwise."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise BlobError(f"a blob id is 64 hex characters, got {text!r}") from None
    if len(raw) != HASH_BYTES:
        raise BlobError(f"a blob id is 64 hex characters, got {len(text.strip())}")
    return raw


def _check(h: bytes) -> bytes:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_BYTES:
        raise BlobError("a blob hash is 32 bytes")
    return bytes(h)


class _Spool:
    """A temporary file in the store, hashed as it is written, with the quota room it holds."""

    def __init__(self, store: BlobStore, prefix: str, reserve: int = 0) -> None:
        self.store = store
        self.received = 0
        self._reserved = 0
        self._reserve(reserve)
        self._hasher = hashlib.sha256()
        try:
            fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix=prefix)
        except BaseException:
            self._release()
            raise
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)

    def _reserve(self, n: int) -> None:
        self.store._reserve(n, self.received)
        self._reserved += n

    def _release(self) -> None:
        self.store._release(self._reserved)
        self._reserved = 0

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._hasher.update(data)
        self.received += len(data)

    def _publish(self, h: bytes) -> Path:
        """fsync, then rename into place as blob ``h`` (dropped if the store has it already)."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            dest = self.store._publish(self._tmp, h, self.received, self._reserved)
            self._reserved = 0
            return dest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)
        self._release()


class BlobWriter(_Spool):
    """Receives one blob in pieces; :meth:`commit` verifies size and hash, then publishes it.
    The whole ``size`` counts against the quota from the start."""

    def __init__(self, store: BlobStore, expected: bytes, size: int) -> None:
        self.expected = _check(expected)
        self.size = size
        super().__init__(store, "in-", reserve=size)

    def write(self, offset: int, data: bytes) -> None:
        if offset != self.received:
            raise BlobError(f"chunk at offset {offset}, expected {self.received}")
        if self.received + len(data) > self.size:
            raise BlobError(f"chunks exceed the announced size {self.size}")
        self._append(data)

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def commit(self) -> Path:
        if self.received != self.size:
            self.abort()
            raise BlobError(f"blob incomplete: {self.received} of {self.size} bytes")
        if self._hasher.digest() != self.expected:
            self.abort()
            raise BlobError(f"blob {self.expected.hex()} failed verification")
        return self._publish(self.expected)


class BlobSink(_Spool):
    """Takes a blob of unknown name in order; :meth:`commit` names it by its hash. Each piece
    counts against the quota as it comes."""

    def __init__(self, store: BlobStore) -> None:
        super().__init__(store, "put-")

    def write(self, data: bytes) -> None:
        self._reserve(len(data))
        self._append(data)

    def commit(self) -> tuple[bytes, int]:
        h = self._hasher.digest()
        self._publish(h)
        return h, self.received


class BlobReader:
    """A stored blob read in order; :meth:`verify` after the last piece checks its hash (the
    bytes on disk may have rotted since they were stored)."""

    def __init__(self, store: BlobStore, h: bytes) -> None:
        self.blob = _check(h)
        try:
            self._file = open(store.path(h), "rb")
        except FileNotFoundError:
            raise BlobError(f"no blob {self.blob.hex()}") from None
        self.size = os.fstat(self._file.fileno()).st_size
        self._hasher = hashlib.sha256()

    def read(self, n: int = COPY_CHUNK) -> bytes:
        data = self._file.read(n)
        self._hasher.update(data)
        return data

    def verify(self) -> None:
        if self._hasher.digest() != self.blob:
            raise BlobError(f"blob {self.blob.hex()} is corrupt on disk")

    def close(self) -> None:
        self._file.close()


class BlobStore:
    def __init__(self, root: Path, quota_bytes: int = 0) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of writes a crash interrupted.
        for stale in self.tmp_dir.iterdir():
            stale.unlink(missing_ok=True)
        self.quota_bytes = quota_bytes
        self._lock = threading.Lock()
        self._reserved = 0  # bytes transfers in progress hold against the quota
        self._stored = sum(size for _, size in self.items())

    @property
    def stored_bytes(self) -> int:
        """Bytes of every blob held (kept as a running total, not measured on each call)."""
        return self._stored

    def path(self, h: bytes) -> Path:
        hx = _check(h).hex()
        return self.root / hx[:2] / hx

    def has(self, h: bytes) -> bool:
        return self.path(h).is_file()

    def size(self, h: bytes) -> int | None:
        try:
            return self.path(h).stat().st_size
        except FileNotFoundError:
            return None

    # --- quota --------------------------------------------------------------------------------

    def check_room(self, n: int) -> None:
        """QuotaExceeded if a blob of ``n`` more bytes would not fit now (nothing is reserved)."""
        with self._lock:
            self._refuse_over(n, 0)

    def _reserve(self, n: int, so_far: int) -> None:
        with self._lock:
            self._refuse_over(n, so_far)
            self._reserved += n

    def _refuse_over(self, n: int, so_far: int) -> None:
        """QuotaExceeded unless ``n`` more bytes fit; ``so_far``: what the asking transfer has
        already reserved (so the message can tell its share from others')."""
        quota = self.quota_bytes
        if quota and self._stored + self._reserved + n > quota:
            others = self._reserved - so_far
            raise QuotaExceeded(
                f"blob store quota exceeded: blobs.quota_mb is {quota / MB:g} MB ({quota} "
                f"bytes); {self._stored} bytes are stored"
                + (f", {others} reserved by other transfers" if others > 0 else "")
                + f", and this blob needs {so_far + n}"
                + (" bytes and more (it is still arriving)" if so_far else " bytes")
            )

    def _release(self, n: int) -> None:
        with self._lock:
            self._reserved -= n

    def _publish(self, tmp: Path, h: bytes, size: int, reserved: int) -> Path:
        """Rename ``tmp`` into place as blob ``h`` (or drop it: the store has ``h`` already),
        moving its ``reserved`` room into the stored total in one step."""
        dest = self.path(h)
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        with self._lock:
            if dest.is_file():
                tmp.unlink()
            else:
                os.replace(tmp, dest)
                self._stored += size
            self._reserved -= reserved
        return dest

    # --- writing ------------------------------------------------------------------------------

    def put(self, data: bytes) -> bytes:
        """Store ``data``; returns its hash (idempotent)."""
        h = blob_hash(data)
        if self.has(h):
            return h
        w = BlobWriter(self, h, len(data))
        w.write(0, data)
        w.commit()
        return h

    def put_stream(self, readable: BinaryIO, chunk: int = COPY_CHUNK) -> tuple[bytes, int]:
        """Store what ``readable`` gives until its end, ``chunk`` bytes at a time; (hash, size)."""
        sink = self.sink()
        try:
            while piece := readable.read(chunk):
                sink.write(piece)
        except BaseException:
            sink.abort()
            raise
        return sink.commit()

    def put_file(self, src: Path) -> tuple[bytes, int]:
        """Copy a file in, hashing as it streams; returns (hash, size)."""
        with open(src, "rb") as fin:
            return self.put_stream(fin)

    def sink(self) -> BlobSink:
        return BlobSink(self)

    def writer(self, h: bytes, size: int) -> BlobWriter:
        return BlobWriter(self, h, size)

    # --- reading ------------------------------------------------------------------------------

    def reader(self, h: bytes) -> BlobReader:
        return BlobReader(self, h)

    def get(self, h: bytes) -> bytes:
        """The blob's bytes, verified against its name."""
        try:
            data = self.path(h).read_bytes()
        except FileNotFoundError:
            raise BlobError(f"no blob {bytes(h).hex()}") from None
        if blob_hash(data) != h:
            raise BlobError(f"blob {bytes(h).hex()} is corrupt on disk")
        return data

    def read_chunk(self, h: bytes, offset: int, length: int) -> bytes:
        try:
            with open(self.path(h), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise BlobError(f"no blob {bytes(h).hex()}") from None

    def copy_to(self, h: bytes, dest: Path) -> None:
        src = self.path(h)
        if not src.is_file():
            raise BlobError(f"no blob {bytes(h).hex()}")
        shutil.copyfile(src, dest)

    def items(self) -> Iterator[tuple[bytes, int]]:
        """(hash, size) of every stored blob."""
        for sub in sorted(self.root.iterdir()):
            if sub == self.tmp_dir or not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                try:
                    yield bytes.fromhex(f.name), f.stat().st_size
                except (ValueError, FileNotFoundError):
                    continue

    def delete(self, h: bytes) -> int | None:
        """Remove blob ``h``; its size, or None when it was not here."""
        path = self.path(h)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return None
            self._stored -= size
        return size
