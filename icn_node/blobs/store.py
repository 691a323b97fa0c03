"""Content-addressed blob storage: task code, inputs and outputs, named by their SHA-256.

A blob lives at ``<data_dir>/blobs/<hh>/<hash hex>``. Writes go to a temporary file in the same
directory tree, are fsynced and renamed into place, so a crash leaves either the whole blob or
nothing; the hash is checked before the rename, so a stored blob is always the bytes its name
says. A chunked writer (:meth:`BlobStore.writer`) receives blobs from peers piece by piece and
verifies the whole before it becomes visible. Blocking; drivers call it from a worker thread for
large blobs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import IcnError

HASH_BYTES = 32
COPY_CHUNK = 1 << 20


class BlobError(IcnError):
    """A blob is missing, malformed or does not match its hash."""


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


class BlobWriter:
    """Receives one blob in pieces; :meth:`commit` verifies size and hash, then publishes it."""

    def __init__(self, store: BlobStore, expected: bytes, size: int) -> None:
        self.store = store
        self.expected = _check(expected)
        self.size = size
        self.received = 0
        self._hasher = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="in-")
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)

    def write(self, offset: int, data: bytes) -> None:
        if offset != self.received:
            raise BlobError(f"chunk at offset {offset}, expected {self.received}")
        if self.received + len(data) > self.size:
            raise BlobError(f"chunks exceed the announced size {self.size}")
        self._file.write(data)
        self._hasher.update(data)
        self.received += len(data)

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def commit(self) -> Path:
        try:
            if self.received != self.size:
                raise BlobError(f"blob incomplete: {self.received} of {self.size} bytes")
            if self._hasher.digest() != self.expected:
                raise BlobError(f"blob {self.expected.hex()} failed verification")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            return self.store._publish(self._tmp, self.expected)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of writes a crash interrupted.
        for stale in self.tmp_dir.iterdir():
            stale.unlink(missing_ok=True)

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

    def _publish(self, tmp: Path, h: bytes) -> Path:
        dest = self.path(h)
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
        return dest

    def put(self, data: bytes) -> bytes:
        """Store ``data``; returns its hash (idempotent)."""
        h = blob_hash(data)
        if self.has(h):
            return h
        w = BlobWriter(self, h, len(data))
        w.write(0, data)
        w.commit()
        return h

    def put_file(self, src: Path) -> tuple[bytes, int]:
        """Copy a file in, hashing as it streams; returns (hash, size)."""
        hasher = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="file-")
        tmp = Path(name)
        size = 0
        try:
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                while chunk := fin.read(COPY_CHUNK):
                    hasher.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            h = hasher.digest()
            if self.has(h):
                tmp.unlink()
            else:
                self._publish(tmp, h)
            return h, size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

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

    def writer(self, h: bytes, size: int) -> BlobWriter:
        return BlobWriter(self, h, size)

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

    def delete(self, h: bytes) -> None:
        self.path(h).unlink(missing_ok=True)
